"""VQA accuracy as GT-Vision-Lab's ``vqaEval.py`` computes it, in either of its two versions.

For a question with ten human answers, the machine answer ``m`` scores
``min(#{humans j != i : a_j = m} / 3, 1)`` for each of the ten leave-one-annotator-out
subsets ``i``, averaged; the overall, per-question-type and per-answer-type accuracies are
means of these per-question values, times 100.  Both versions share this rule and the two
normalisation steps below; they differ in *which answers* get normalised.

``version="2016"`` (default) -- ``vqaEval.py`` as released with VQA v1/v2 and used until
at least late 2017 (GT-Vision-Lab/VQA ``c4e6a0e``; the same flow as the EvalAI server code
of the VQA Challenge 2017, Cloud-CV/VQA-Challenge, and as LAVIS's copy):

* the machine answer always gets newlines/tabs -> spaces, strip, punctuation, digits and
  articles;
* the human answers get only the punctuation step, and only when the ten are not all
  identical (the annotation files are pre-normalised).

``version="current"`` -- today's ``vqaEval.py`` (GT-Vision-Lab/VQA ``a013f00``, the file
OpenFlamingo and lmms-eval copy):

* every answer, human and machine, gets newlines/tabs -> spaces and strip;
* then, only when the (stripped) human answers are not all identical, the human answers
  *and* the machine answer get punctuation, digits and articles;
* when the ten humans agree, nothing more is done: the comparison is exact and
  case-sensitive (the maintainers' rationale: unanimous answers are often text read off
  the image, which normalisation could corrupt).

Where they disagree (ten humans wrote ``"2"``): ``"Two"`` scores 100 under 2016 (-> ``"2"``)
and 0 under current (``"Two" != "2"``); likewise ``"Yes"`` / ``"yes."`` against ten
``"yes"``.  Against 2 x ``"Two"``, 1 x ``"2"``, 7 x ``"3"``, the answer ``"2"`` scores 30
under 2016 (humans keep ``"Two"``: one match) and 90 under current (humans -> ``"2"``:
three matches).  Against ten unnormalised ``"the cat"``, ``"the cat"`` scores 0 under 2016
(the machine's article is dropped, the humans' is not) and 100 under current.

**Why 2016 is the default**: it is the flow of the evaluation-server code published for
VQA v2 test-dev / test-std (Cloud-CV/VQA-Challenge, whose punctuation step is a regex
rewrite of the one below), the splits on which published VQA v2 numbers are reported; and
it scores what a generative model answers rather than how it capitalises or punctuates --
under ``current``, ``"Yes"`` earns 0 on every unanimous question, a large share of yes/no
questions.  It also keeps earlier results of this package comparable.  Use ``current`` to
compare with validation numbers from OpenFlamingo or lmms-eval-style code.  Select it with
``version=`` here, ``score_vqa_files(version=)``, or ``vqa_version:`` in the ``vqa``
runner's config (``cm3leon eval vqa ... vqa_version=current``).

The two normalisation steps (:func:`normalize_answer` applies both):

1. **punctuation** (:func:`process_punctuation`): each mark in :data:`PUNCTUATION` is
   deleted if it touches a space or if the answer contains a digit-comma-digit sequence
   (``1,000`` -> ``1000``), otherwise replaced by a space (``red/blue`` -> ``red blue``);
   then periods not followed by a digit are deleted (``3.5`` keeps its period) -- at most
   32 of them, because the official code passes ``re.UNICODE`` (= 32) as ``re.sub``'s
   ``count`` argument;
2. **digits and articles** (:func:`process_digit_article`): lower-cased words, number
   words ``zero..ten`` (and ``none``) become digits, ``a``/``an``/``the`` are dropped, and
   :data:`CONTRACTIONS` restores apostrophes (``dont`` -> ``don't``).

Human answers are told apart by position (the official code compares answer dicts, which
carry distinct ``answer_id`` s).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torchmetrics import Metric

from cm3leon.eval.formats import match_ids
from cm3leon.eval.metrics.records import decode_records, dedupe_records, encode_records, jsonable_id

__all__ = [
    "ARTICLES",
    "CONTRACTIONS",
    "DEFAULT_VQA_VERSION",
    "DIGIT_WORDS",
    "PUNCTUATION",
    "VQA_VERSIONS",
    "VQAAccuracy",
    "VQAResult",
    "check_vqa_version",
    "normalize_answer",
    "process_digit_article",
    "process_punctuation",
    "vqa_accuracy",
    "vqa_evaluate",
]

# The official tables (vqaEval.py), verbatim as data.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip
DIGIT_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")  # fmt: skip

# Official pattern, typo included: "(?!<=\d)" is a look-ahead, so it only requires that the
# period is not followed by a digit.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)  # passed positionally as `count` by vqaEval.py


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation`` (see the module docstring)."""
    out = text
    has_number_comma = _COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        if (mark + " " in text or " " + mark in text) or has_number_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower case, digits, no articles, contractions."""
    words = [DIGIT_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def _clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """Both normalisation steps, as the 2016 version applies them to a machine answer."""
    return process_digit_article(process_punctuation(_clean_whitespace(answer)))


def _answer_text(answer: Any) -> str:
    return answer["answer"] if isinstance(answer, Mapping) else str(answer)


def _normalise_2016(machine: str, humans: list[str]) -> tuple[str, list[str]]:
    if len(set(humans)) > 1:
        humans = [process_punctuation(h) for h in humans]
    return normalize_answer(machine), humans


def _normalise_current(machine: str, humans: list[str]) -> tuple[str, list[str]]:
    machine, humans = _clean_whitespace(machine), [_clean_whitespace(h) for h in humans]
    if len(set(humans)) > 1:
        humans = [process_digit_article(process_punctuation(h)) for h in humans]
        machine = process_digit_article(process_punctuation(machine))
    return machine, humans


_NORMALISERS = {"2016": _normalise_2016, "current": _normalise_current}
VQA_VERSIONS: tuple[str, ...] = tuple(_NORMALISERS)
DEFAULT_VQA_VERSION = "2016"


def check_vqa_version(version: str) -> str:
    """Return ``version`` if it names a ``vqaEval.py`` version, else raise.

    Raises:
        ValueError: an unknown name; the message lists :data:`VQA_VERSIONS`.
    """
    if version not in _NORMALISERS:
        valid = ", ".join(repr(v) for v in VQA_VERSIONS)
        raise ValueError(f"unknown VQA evaluation version {version!r}; valid versions: {valid}")
    return version


def vqa_accuracy(
    prediction: str, answers: Sequence[Any], *, version: str = DEFAULT_VQA_VERSION
) -> float:
    """Leave-one-out accuracy in ``[0, 1]`` of ``prediction`` against the human answers.

    Args:
        prediction: the machine answer.
        answers: strings or official answer dicts (``{"answer": ..., "answer_id": ...}``).
        version: ``"2016"`` or ``"current"`` (see the module docstring).

    Raises:
        ValueError: no human answer, or an unknown ``version``.
    """
    normalise = _NORMALISERS[check_vqa_version(version)]
    if not answers:
        raise ValueError("VQA accuracy needs at least one human answer")
    machine, humans = normalise(prediction, [_answer_text(a) for a in answers])
    accs = []
    for left_out in range(len(humans)):
        matches = sum(1 for j, h in enumerate(humans) if j != left_out and h == machine)
        accs.append(min(1.0, matches / 3.0))
    return sum(accs) / len(accs)


@dataclass(frozen=True)
class VQAResult:
    """Accuracies in percent (unrounded; the official script rounds to 2 decimals), and the
    ``vqaEval.py`` version that produced them."""

    overall: float
    per_question_type: dict[str, float] = field(default_factory=dict)
    per_answer_type: dict[str, float] = field(default_factory=dict)
    per_question: dict[str, float] = field(default_factory=dict)
    num_questions: int = 0
    version: str = DEFAULT_VQA_VERSION

    def to_dict(self, *, per_question: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accuracy": self.overall,
            "per_question_type": dict(self.per_question_type),
            "per_answer_type": dict(self.per_answer_type),
            "num_questions": self.num_questions,
            "version": self.version,
        }
        if per_question:
            out["per_question"] = dict(self.per_question)
        return out


def _mean100(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values)


def _aggregate(rows: Sequence[Mapping[str, Any]], version: str) -> VQAResult:
    by_qtype: dict[str, list[float]] = defaultdict(list)
    by_atype: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.get("qt") is not None:
            by_qtype[row["qt"]].append(row["acc"])
        if row.get("at") is not None:
            by_atype[row["at"]].append(row["acc"])
    return VQAResult(
        overall=_mean100([r["acc"] for r in rows]),
        per_question_type={k: _mean100(v) for k, v in by_qtype.items()},
        per_answer_type={k: _mean100(v) for k, v in by_atype.items()},
        per_question={str(r["id"]): 100.0 * r["acc"] for r in rows if "id" in r},
        num_questions=len(rows),
        version=version,
    )


def vqa_evaluate(
    predictions: Mapping[Any, str],
    annotations: Sequence[Mapping[str, Any]],
    *,
    partial: bool = False,
    version: str = DEFAULT_VQA_VERSION,
) -> VQAResult:
    """Score predictions against official-format annotations.

    Args:
        predictions: ``question_id -> answer``.
        annotations: records with ``question_id``, ``answers`` (ten dicts or strings) and
            optionally ``question_type`` / ``answer_type``.
        partial: score only annotated questions that have a prediction; by default every
            annotated question must be answered (the official ``loadRes`` check).
        version: ``"2016"`` (default) or ``"current"`` ``vqaEval.py`` (module docstring).

    Raises:
        FormatError: a prediction has no annotation, or an annotation no prediction (unless
            ``partial``); the message names the question ids
            (:func:`cm3leon.eval.formats.match_ids`).
        ValueError: no question to score, or an unknown ``version`` (the message lists the
            valid ones).
    """
    check_vqa_version(version)
    by_id = {str(a["question_id"]): a for a in annotations}
    preds = {str(k): v for k, v in predictions.items()}
    rows = []
    for qid in match_ids(preds, by_id, "question", partial):
        ann = by_id[qid]
        rows.append(
            {
                "id": qid,
                "acc": vqa_accuracy(preds[qid], ann["answers"], version=version),
                "qt": ann.get("question_type"),
                "at": ann.get("answer_type"),
            }
        )
    if not rows:
        raise ValueError("no question to score")
    return _aggregate(rows, version)


class VQAAccuracy(Metric):
    """VQA accuracy (percent) over all ranks, with per-question-type and per-answer-type means.

    ``update(predictions, answers, question_types=None, answer_types=None, ids=None)``
    scores each question immediately; ``compute()`` returns a dict with ``accuracy``
    (a tensor) and the breakdowns.  With ``ids``, duplicated questions count once.

    Args:
        version: ``"2016"`` (default) or ``"current"`` ``vqaEval.py`` (module docstring).
        **kwargs: torchmetrics ``Metric`` options.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, version: str = DEFAULT_VQA_VERSION, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = check_vqa_version(version)
        self.add_state("records", default=[], dist_reduce_fx="cat")

    def update(
        self,
        predictions: Sequence[str],
        answers: Sequence[Sequence[Any]],
        question_types: Sequence[str] | None = None,
        answer_types: Sequence[str] | None = None,
        ids: Sequence[Any] | None = None,
    ) -> None:
        n = len(predictions)
        for name, seq in (
            ("answers", answers),
            ("question_types", question_types),
            ("answer_types", answer_types),
            ("ids", ids),
        ):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} entries for {n} predictions")
        rows = []
        for i, pred in enumerate(predictions):
            row: dict[str, Any] = {"acc": vqa_accuracy(pred, answers[i], version=self.version)}
            if question_types is not None:
                row["qt"] = question_types[i]
            if answer_types is not None:
                row["at"] = answer_types[i]
            if ids is not None:
                row["id"] = jsonable_id(ids[i])
            rows.append(row)
        self.records.append(encode_records(rows))

    def result(self) -> VQAResult:
        """Full :class:`VQAResult` of the (gathered, deduplicated) records."""
        rows = dedupe_records(decode_records(self.records), "id")
        if not rows:
            raise ValueError("VQAAccuracy.compute() called before any update()")
        return _aggregate(rows, self.version)

    def compute(self) -> dict[str, Any]:
        res = self.result()
        return {
            "accuracy": torch.tensor(res.overall, dtype=torch.float64),
            "per_question_type": res.per_question_type,
            "per_answer_type": res.per_answer_type,
        }
