"""VQA accuracy: hand-worked cases for every normalisation rule, the leave-one-out mean, and
the two ``vqaEval.py`` versions ("2016", "current") where they disagree."""

from __future__ import annotations

import pytest

from cm3leon.eval.formats import FormatError
from cm3leon.eval.metrics.vqa import (
    DEFAULT_VQA_VERSION,
    VQA_VERSIONS,
    VQAAccuracy,
    check_vqa_version,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
    vqa_evaluate,
)
from tests.eval._helpers import two_rank_compute


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("  Yes\n", "yes"),  # newline/tab -> space, strip, lower case
        ("yes\tsir", "yes sir"),
        ("yes, it is", "yes it is"),  # a mark touching a space is deleted
        ("red/blue", "red blue"),  # a mark inside a word becomes a space
        ("black-and-white", "black and white"),
        (
            "(left)",
            "left",
        ),  # bracket at the edges: no space nearby -> spaces, then stripped by split
        ("1,000", "1000"),  # comma between digits: the comma is deleted...
        ("red/blue 1,2", "redblue 12"),  # ...and then every mark is deleted, not spaced
        ("dog.", "dog"),  # a period not followed by a digit is deleted
        ("3.5", "3.5"),  # a decimal point stays
        ("a.m.", "am"),
        ("don't", "don't"),  # apostrophes are not punctuation here
        ("Two", "2"),  # number words -> digits
        ("none", "0"),
        ("ten dogs", "10 dogs"),
        ("eleven", "eleven"),  # only zero..ten
        ("the dog", "dog"),  # articles removed
        ("an apple a day", "apple day"),
        ("a", ""),
        ("dont", "don't"),  # contractions restored
        ("isnt it", "isn't it"),
        ("Im", "im"),  # capitalised keys of the official table never match after lower()
        ("one the", "1"),
    ],
)
def test_normalisation_rules(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def test_period_stripping_stops_after_32() -> None:
    # vqaEval.py passes re.UNICODE (32) as re.sub's `count`: only 32 periods are removed.
    assert process_punctuation("x" + "." * 40) == "x" + "." * 8


def test_digit_article_step_alone() -> None:
    assert process_digit_article("The Three  Cats") == "3 cats"


@pytest.mark.parametrize(
    ("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]
)
def test_leave_one_out_average(matches: int, expected: float) -> None:
    # With m matching humans: dropping one of them leaves m-1, dropping another leaves m.
    # m=3: (3 * 2/3 + 7 * 1) / 10 = 0.9;  m=1: (1 * 0 + 9 * 1/3) / 10 = 0.3.
    answers = ["cat"] * matches + [f"other{i}" for i in range(10 - matches)]
    assert vqa_accuracy("cat", answers) == pytest.approx(expected)


def test_human_answers_get_punctuation_only_and_only_when_they_differ() -> None:
    # (the default, 2016 version)
    # Not all identical -> humans get processPunctuation: "yes." matches the machine's "yes".
    assert vqa_accuracy("Yes", ["yes."] * 3 + ["no"] * 7) == pytest.approx(0.9)
    # Humans are never digit-normalised: the machine's "two" becomes "2" ...
    assert vqa_accuracy("two", ["two"] * 9 + ["2"]) == pytest.approx(0.3)
    # ... and ten identical humans are not processed at all (official behaviour).
    assert vqa_accuracy("two", ["two"] * 10) == 0.0
    assert vqa_accuracy("2", ["2"] * 10) == 1.0
    # Official answer dicts work too (compared by position, as distinct answer_ids are).
    dicts = [{"answer": "blue", "answer_id": i} for i in range(1, 11)]
    assert vqa_accuracy("blue", dicts) == 1.0


# Hand-worked cases where the 2016 and the current vqaEval.py disagree.  Leave-one-out mean
# with m matching humans out of 10: m=0 -> 0, m=1 -> 0.3, m=2 -> 0.6, m=3 -> 0.9, m>=4 -> 1.
VERSION_CASES = [
    # ten humans "2": 2016 normalises the machine answer ("Two" -> "2": ten matches -> 1.0);
    # current leaves unanimous questions alone ("Two" != "2" -> 0.0)
    pytest.param("Two", ["2"] * 10, 1.0, 0.0, id="number-word-vs-unanimous-digit"),
    # capitals and a trailing period: 2016 lower-cases and strips it; current compares exactly
    pytest.param("Yes", ["yes"] * 10, 1.0, 0.0, id="capitalised-vs-unanimous"),
    pytest.param("yes.", ["yes"] * 10, 1.0, 0.0, id="period-vs-unanimous"),
    # humans that disagree: 2016 gives them punctuation only, so "Two" stays "Two" and only
    # the one "2" matches (m=1: 9 subsets keep it -> 9 * 1/3 / 10 = 0.3); current maps the
    # humans to 3 x "2" (m=3: 3 subsets drop one -> 3 * 2/3 + 7 * 1 = 9 -> 0.9)
    pytest.param("2", ["Two", "Two", "2"] + ["3"] * 7, 0.3, 0.9, id="3-of-10-after-digits"),
    # articles in disagreeing humans: 2016 keeps "the dog" (m=0); current drops "the" (m=3)
    pytest.param("dog", ["the dog"] * 3 + ["cat"] * 7, 0.0, 0.9, id="articles-in-humans"),
    # ten unnormalised humans "the cat": 2016 turns the machine's "the cat" into "cat" and
    # can never match; current compares "the cat" == "the cat" exactly
    pytest.param("the cat", ["the cat"] * 10, 0.0, 1.0, id="unanimous-article"),
    # current strips the humans' whitespace before the unanimity test; 2016 does not touch
    # unanimous humans, so "yes " never equals the stripped machine "yes"
    pytest.param("yes", ["yes "] * 10, 0.0, 1.0, id="human-trailing-space"),
    # 2 humans "Red" + 8 "blue": 2016 leaves "Red" capitalised (m=0); current lower-cases
    # the humans (m=2: 2 subsets drop one -> 2 * 1/3 + 8 * 2/3 = 6 -> 0.6)
    pytest.param("red", ["Red"] * 2 + ["blue"] * 8, 0.0, 0.6, id="capitalised-humans"),
]


@pytest.mark.parametrize(("prediction", "answers", "v2016", "current"), VERSION_CASES)
def test_versions_disagree_as_worked_out_by_hand(
    prediction: str, answers: list[str], v2016: float, current: float
) -> None:
    assert vqa_accuracy(prediction, answers) == pytest.approx(v2016)  # default
    assert vqa_accuracy(prediction, answers, version="2016") == pytest.approx(v2016)
    assert vqa_accuracy(prediction, answers, version="current") == pytest.approx(current)


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("Red.", ["red"] * 2 + ["blue"] * 8, 0.6),  # humans differ: both normalise "Red."
        ("two", ["2"] * 4 + ["3"] * 6, 1.0),  # m=4
        ("yes", ["yes"] * 10, 1.0),
        ("1,000", ["1000"] * 3 + ["999"] * 7, 0.9),
    ],
)
def test_versions_agree_on_normalised_annotations(
    prediction: str, answers: list[str], expected: float
) -> None:
    for version in VQA_VERSIONS:
        assert vqa_accuracy(prediction, answers, version=version) == pytest.approx(expected)


def test_unknown_version_lists_the_valid_ones() -> None:
    assert VQA_VERSIONS == ("2016", "current") and DEFAULT_VQA_VERSION == "2016"
    assert check_vqa_version("current") == "current"
    message = r"unknown VQA evaluation version '2017'; valid versions: '2016', 'current'"
    with pytest.raises(ValueError, match=message):
        vqa_accuracy("yes", ["yes"], version="2017")
    with pytest.raises(ValueError, match=message):
        vqa_evaluate({}, [], version="2017")
    with pytest.raises(ValueError, match=message):
        VQAAccuracy(version="2017")


ANNOTATIONS = [
    {
        "question_id": 1,
        "question_type": "what color",
        "answer_type": "other",
        "answers": ["red"] * 2 + ["blue"] * 8,
    },
    {"question_id": 2, "question_type": "is the", "answer_type": "yes/no", "answers": ["yes"] * 10},
    {
        "question_id": 3,
        "question_type": "how many",
        "answer_type": "number",
        "answers": ["2"] * 4 + ["3"] * 6,
    },
    {
        "question_id": 4,
        "question_type": "what color",
        "answer_type": "other",
        "answers": ["green"] * 10,
    },
]
PREDICTIONS = {1: "Red.", 2: "yes", 3: "two", 4: "a blue one"}
# Per question: 0.6, 1.0, 1.0 ("two" -> "2", 4 matches), 0.0.


def test_overall_and_breakdowns_hand_computed() -> None:
    res = vqa_evaluate(PREDICTIONS, ANNOTATIONS)
    assert res.overall == pytest.approx(100 * (0.6 + 1.0 + 1.0 + 0.0) / 4)
    assert res.per_question_type == pytest.approx(
        {"what color": 30.0, "is the": 100.0, "how many": 100.0}
    )
    assert res.per_answer_type == pytest.approx({"other": 30.0, "yes/no": 100.0, "number": 100.0})
    assert res.per_question == pytest.approx({"1": 60.0, "2": 100.0, "3": 100.0, "4": 0.0})


def test_overall_with_the_current_version_hand_computed() -> None:
    annotations = [
        {"question_id": 1, "question_type": "how many", "answer_type": "number",
         "answers": ["2"] * 10},
        {"question_id": 2, "question_type": "how many", "answer_type": "number",
         "answers": ["Two", "Two", "2"] + ["3"] * 7},
        {"question_id": 3, "question_type": "is the", "answer_type": "yes/no",
         "answers": ["yes"] * 3 + ["no"] * 7},
    ]  # fmt: skip
    predictions = {1: "Two", 2: "2", 3: "Yes"}
    # 2016: 1.0, 0.3, 0.9;  current: 0.0, 0.9, 0.9 ("Yes" -> "yes": humans differ)
    old = vqa_evaluate(predictions, annotations)
    new = vqa_evaluate(predictions, annotations, version="current")
    assert old.version == "2016" and new.version == "current"
    assert old.overall == pytest.approx(100 * (1.0 + 0.3 + 0.9) / 3)
    assert new.overall == pytest.approx(100 * (0.0 + 0.9 + 0.9) / 3)
    assert new.per_question_type == pytest.approx({"how many": 45.0, "is the": 90.0})
    assert new.per_question == pytest.approx({"1": 0.0, "2": 90.0, "3": 90.0})
    assert new.to_dict()["version"] == "current"
    metric = VQAAccuracy(version="current")
    rows = list(annotations)
    metric.update([predictions[a["question_id"]] for a in rows], [a["answers"] for a in rows])
    assert float(metric.compute()["accuracy"]) == pytest.approx(60.0)
    assert metric.result().version == "current"


def test_question_ids_must_match() -> None:
    """The one id check of every results file (``formats.match_ids``), FormatError included."""
    with pytest.raises(FormatError, match=r"1 predicted question ids have no reference: \['9'\]"):
        vqa_evaluate({**PREDICTIONS, 9: "x"}, ANNOTATIONS)
    with pytest.raises(FormatError, match=r"1 question ids have no prediction: \['4'\] \(use partial"):
        vqa_evaluate({k: v for k, v in PREDICTIONS.items() if k != 4}, ANNOTATIONS)
    partial = vqa_evaluate({1: "red"}, ANNOTATIONS, partial=True)
    assert partial.num_questions == 1 and partial.overall == pytest.approx(60.0)


def test_metric_two_ranks_equal_one_rank() -> None:
    def feed(ids):
        def run(m: VQAAccuracy) -> None:
            rows = [a for a in ANNOTATIONS if a["question_id"] in ids]
            m.update(
                [PREDICTIONS[a["question_id"]] for a in rows],
                [a["answers"] for a in rows],
                question_types=[a["question_type"] for a in rows],
                answer_types=[a["answer_type"] for a in rows],
                ids=[a["question_id"] for a in rows],
            )

        return run

    out = two_rank_compute(lambda **kw: VQAAccuracy(**kw), feed({1, 2}), feed({3, 4, 1}))
    assert float(out["accuracy"]) == pytest.approx(65.0)
    assert out["per_question_type"] == pytest.approx(
        {"what color": 30.0, "is the": 100.0, "how many": 100.0}
    )
    with pytest.raises(ValueError, match="answers has 1 entries for 2 predictions"):
        VQAAccuracy().update(["a", "b"], [["a"]])


def test_vqa_protocol_config_selects_the_version(tmp_path) -> None:
    import json

    from cm3leon.core.config import ConfigError, load_config
    from cm3leon.eval.protocols.vqa import VQAConfig, run_vqa

    # the config schema defaults to the module's default version
    assert VQAConfig().vqa_version == DEFAULT_VQA_VERSION
    res, ann = tmp_path / "res.json", tmp_path / "ann.json"
    res.write_text(json.dumps([{"question_id": 1, "answer": "Yes"}]))
    ann.write_text(json.dumps({"annotations": [{"question_id": 1, "answers": ["yes"] * 10}]}))

    def run(version: str) -> dict:
        data = {"predictions": str(res), "data": {"annotations": str(ann)}, "vqa_version": version}
        return run_vqa(load_config(VQAConfig, data=data), tmp_path)

    assert run("2016")["accuracy"] == pytest.approx(100.0)
    assert run("current")["accuracy"] == pytest.approx(0.0)
    assert json.loads((tmp_path / "results.json").read_text())["version"] == "current"
    with pytest.raises(ConfigError, match=r"vqa_version: .*valid versions: '2016', 'current'"):
        run("newest")
