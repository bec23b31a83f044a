"""cm3leon.core.formats.scienceqa: ``problems.json`` + ``pid_splits.json``."""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.formats.common import EntryError, load_json
from cm3leon.core.formats.scienceqa import (
    Problem,
    load_problems,
    parse_problem,
    problem_image,
    write_scienceqa,
)

PROBLEMS = {
    "1": Problem("Which is a mammal?", ("cat", "trout"), 0, "train", "image.png", hint="Look.", lecture="L",
                 solution="Cats are mammals.", task="closed choice", grade="grade3", subject="natural science",
                 topic="biology", category="Classify", skill="animals"),
    "2": Problem("Which is hot?", ("sun", "ice", "snow"), 0, "test"),
}  # fmt: skip


def test_round_trip(tmp_path: Path) -> None:
    write_scienceqa(tmp_path, PROBLEMS, {"train": ["1"], "val": [], "test": ["2"]})
    raw = load_problems(tmp_path / "problems.json")
    assert {pid: parse_problem(p, f"problem {pid!r}") for pid, p in raw.items()} == PROBLEMS
    assert problem_image("1", raw["1"]) == "train/1/image.png" and problem_image("2", raw["2"]) is None
    assert load_json(tmp_path / "pid_splits.json")["test"] == ["2"]


@pytest.mark.parametrize(("change", "pattern"), [
    ({"answer": 5}, "answer 5 is not an index of 2 choices"),
    ({"choices": ["only"]}, "'choices' must be at least two strings"),
    ({"split": 3}, "'split' must be str"),
])  # fmt: skip
def test_malformed_problem_names_file_and_problem(tmp_path: Path, change: dict, pattern: str) -> None:
    write_scienceqa(tmp_path, {"1": PROBLEMS["1"]}, {"train": ["1"]})
    file = tmp_path / "problems.json"
    problem = load_problems(file)["1"] | change
    with pytest.raises(EntryError, match=rf"{file}: problem '1': {pattern}"):
        parse_problem(problem, f"{file}: problem '1'")
