"""VQA accuracy: hand-worked cases for every normalisation rule and the leave-one-out mean."""

from __future__ import annotations

import pytest

from cm3leon.eval.vqa import (
    VQAAccuracy,
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


def test_question_ids_must_match() -> None:
    with pytest.raises(ValueError, match=r"not annotated: \['9'\]"):
        vqa_evaluate({**PREDICTIONS, 9: "x"}, ANNOTATIONS)
    with pytest.raises(ValueError, match=r"no prediction: \['4'\]"):
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
