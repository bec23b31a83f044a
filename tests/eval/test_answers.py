"""Short-answer extraction for each answer layout of Table 5's VQA templates."""

from __future__ import annotations

import pytest

from cm3leon.eval.answers import extract_short_answer


@pytest.mark.parametrize(
    ("generated", "answer"),
    [
        ("blue", "blue"),  # the infilled span alone
        (" blue", "blue"),  # the bare field task-aware SFT infills (its space included)
        (" blue. <break>", "blue"),  # "Answer: {answer}." -- the template's period ends it
        ("blue.", "blue"),
        ("The answer is blue.", "blue"),  # "The answer is {answer}." restated
        ("the answer is: two", "two"),
        ("Answer: yes. Question: is it red?", "yes"),  # a leading "Answer:" and a run-on
        ("  a red circle\nQuestion: what shape?", "a red circle"),  # "[newline] {answer}"
        ("It has sides. So the answer is 4.", "4"),  # ScienceQA's step-by-step layout
        ("2.5 metres. Then", "2.5 metres"),  # decimal points are not sentence ends
        ('"yes"!', "yes"),
        ("  many   spaces  here ", "many spaces here"),
        ("", ""),
        ("\nblue", "blue"),  # leading newlines are not the end of the answer
    ],
)
def test_extract_short_answer(generated: str, answer: str) -> None:
    assert extract_short_answer(generated) == answer
