"""VQA accuracy exactly as the official evaluation (GT-Vision-Lab/VQA ``vqaEval.py``).

For a question with ten human answers, the machine answer ``m`` (normalised) scores
``min(#{humans j ≠ i : a_j = m} / 3, 1)`` for each of the ten leave-one-annotator-out
subsets ``i``, averaged; the overall, per-question-type and per-answer-type accuracies are
means of these per-question values, times 100.

Normalisation of the machine answer: newlines/tabs -> spaces, strip, then

1. **punctuation**: each mark in :data:`PUNCTUATION` is deleted if it touches a space or if
   the answer contains a digit-comma-digit sequence (``1,000`` -> ``1000``), otherwise
   replaced by a space (``red/blue`` -> ``red blue``); then periods not followed by a
   digit are deleted (``3.5`` keeps its period) — at most 32 of them, because the official
   code passes ``re.UNICODE`` (= 32) as ``re.sub``'s ``count`` argument;
2. **digits and articles**: lower-cased words, number words ``zero..ten`` (and ``none``)
   become digits, ``a``/``an``/``the`` are dropped, and :data:`CONTRACTIONS` restores
   apostrophes (``dont`` -> ``don't``).

The human answers get only the punctuation step, and only when the ten answers are not all
identical — also as in the official code (official annotation files are pre-normalised).
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

from cm3leon.eval.records import decode_records, dedupe_records, encode_records, jsonable_id

__all__ = [
    "ARTICLES",
    "CONTRACTIONS",
    "DIGIT_WORDS",
    "PUNCTUATION",
    "VQAAccuracy",
    "VQAResult",
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


def normalize_answer(answer: str) -> str:
    """Normalise a machine answer like the official evaluation."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def _answer_text(answer: Any) -> str:
    return answer["answer"] if isinstance(answer, Mapping) else str(answer)


def vqa_accuracy(prediction: str, answers: Sequence[Any]) -> float:
    """Leave-one-out accuracy in ``[0, 1]`` of ``prediction`` against the human answers.

    ``answers`` are strings or official answer dicts (``{"answer": ..., "answer_id": ...}``).
    """
    if not answers:
        raise ValueError("VQA accuracy needs at least one human answer")
    humans = [_answer_text(a) for a in answers]
    if len(set(humans)) > 1:
        humans = [process_punctuation(h) for h in humans]
    machine = normalize_answer(prediction)
    accs = []
    for left_out in range(len(humans)):
        matches = sum(1 for j, h in enumerate(humans) if j != left_out and h == machine)
        accs.append(min(1.0, matches / 3.0))
    return sum(accs) / len(accs)


@dataclass(frozen=True)
class VQAResult:
    """Accuracies in percent (unrounded; the official script rounds to 2 decimals)."""

    overall: float
    per_question_type: dict[str, float] = field(default_factory=dict)
    per_answer_type: dict[str, float] = field(default_factory=dict)
    per_question: dict[str, float] = field(default_factory=dict)
    num_questions: int = 0

    def to_dict(self, *, per_question: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accuracy": self.overall,
            "per_question_type": dict(self.per_question_type),
            "per_answer_type": dict(self.per_answer_type),
            "num_questions": self.num_questions,
        }
        if per_question:
            out["per_question"] = dict(self.per_question)
        return out


def _mean100(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values)


def _aggregate(rows: Sequence[Mapping[str, Any]]) -> VQAResult:
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
    )


def vqa_evaluate(
    predictions: Mapping[Any, str],
    annotations: Sequence[Mapping[str, Any]],
    *,
    partial: bool = False,
) -> VQAResult:
    """Score predictions against official-format annotations.

    Args:
        predictions: ``question_id -> answer``.
        annotations: records with ``question_id``, ``answers`` (ten dicts or strings) and
            optionally ``question_type`` / ``answer_type``.
        partial: score only annotated questions that have a prediction; by default every
            annotated question must be answered (the official ``loadRes`` check).

    Raises:
        ValueError: a prediction has no annotation, an annotation no prediction (unless
            ``partial``), or the input is empty; the message names the question ids.
    """
    by_id = {str(a["question_id"]): a for a in annotations}
    preds = {str(k): v for k, v in predictions.items()}
    unknown = sorted(set(preds) - set(by_id))
    if unknown:
        raise ValueError(f"{len(unknown)} predicted question ids are not annotated: {unknown[:10]}")
    unanswered = sorted(set(by_id) - set(preds))
    if unanswered and not partial:
        raise ValueError(
            f"{len(unanswered)} annotated questions have no prediction: {unanswered[:10]}"
        )
    rows = []
    for qid, ann in by_id.items():
        if qid not in preds:
            continue
        rows.append(
            {
                "id": qid,
                "acc": vqa_accuracy(preds[qid], ann["answers"]),
                "qt": ann.get("question_type"),
                "at": ann.get("answer_type"),
            }
        )
    if not rows:
        raise ValueError("no question to score")
    return _aggregate(rows)


class VQAAccuracy(Metric):
    """VQA accuracy (percent) over all ranks, with per-question-type and per-answer-type means.

    ``update(predictions, answers, question_types=None, answer_types=None, ids=None)``
    scores each question immediately; ``compute()`` returns a dict with ``accuracy``
    (a tensor) and the breakdowns.  With ``ids``, duplicated questions count once.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
            row: dict[str, Any] = {"acc": vqa_accuracy(pred, answers[i])}
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
        return _aggregate(rows)

    def compute(self) -> dict[str, Any]:
        res = self.result()
        return {
            "accuracy": torch.tensor(res.overall, dtype=torch.float64),
            "per_question_type": res.per_question_type,
            "per_answer_type": res.per_answer_type,
        }
