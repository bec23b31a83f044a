"""ScienceQA reader on a ``problems.json`` + ``images/<split>/<pid>/image.png`` fixture."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cm3leon.tasks.readers.common import RecordError
from cm3leon.tasks.readers.scienceqa import read_scienceqa
from tests.tasks._helpers import colour_of, write_corrupt, write_image, write_json

RED = (200, 30, 30)


def _problem(split: str, image: str | None, **kw) -> dict:
    return {"question": "Which animal is shown?", "choices": ["cat", "dog", "fish"], "answer": 1,
            "hint": "Look closely.", "image": image, "task": "closed choice", "grade": "grade2",
            "subject": "natural science", "topic": "biology", "category": "animals", "skill": "x",
            "lecture": "Animals differ.", "solution": "It barks.", "split": split, **kw}  # fmt: skip


@pytest.fixture
def sqa(tmp_path: Path) -> Path:
    root = tmp_path / "ScienceQA"
    write_json(root / "data" / "scienceqa" / "problems.json", {
        "1": _problem("train", "image.png"), "2": _problem("train", None),
        "3": _problem("val", "image.png"), "4": _problem("train", "image.png", hint="")})  # fmt: skip
    for split, pid in (("train", "1"), ("val", "3"), ("train", "4")):
        write_image(root / "images" / split / pid / "image.png", RED)
    return root / "data" / "scienceqa"


def test_scienceqa_records(sqa: Path) -> None:
    stats: Counter = Counter()
    records = list(read_scienceqa(sqa, split="train", stats=stats))
    assert [r["id"] for r in records] == ["1", "4"]
    r = records[0]
    assert (r["question"], r["choices"], r["answer"], r["context"], r["explanation"]) == (
        "Which animal is shown?", ["cat", "dog", "fish"], 1, "Look closely.", "It barks.")
    assert colour_of(r["image"]) == RED and records[1]["context"] == ""
    assert stats == {"records": 2, "filtered": 1, "filtered.no_image": 1}
    assert len(list(read_scienceqa(sqa / "problems.json"))) == 3


@pytest.mark.parametrize(("change", "reason", "pattern"), [
    ({"answer": 3}, "wrong_type", "answer 3 is not an index of 3 choices"),
    ({"answer": "B"}, "wrong_type", "'answer' must be int"),
    ({"choices": "cat"}, "wrong_type", "'choices' must be list"),
    ({"question": None}, "wrong_type", "'question' must be str"),
])  # fmt: skip
def test_scienceqa_malformed(sqa: Path, change: dict, reason: str, pattern: str) -> None:
    file = sqa / "problems.json"
    data = json.loads(file.read_text())
    data["1"].update(change)
    file.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=f"problem '1'.*{pattern}"):
        list(read_scienceqa(sqa, split="train"))
    stats: Counter = Counter()
    assert [r["id"] for r in read_scienceqa(sqa, split="train", skip_bad=True, stats=stats)] == ["4"]
    assert stats[f"skipped.{reason}"] == 1


def test_scienceqa_bad_images(sqa: Path) -> None:
    (sqa.parent.parent / "images" / "train" / "1" / "image.png").unlink()
    write_corrupt(sqa.parent.parent / "images" / "train" / "4" / "image.png")
    with pytest.raises(RecordError, match=r"problem '1'.*train/1/image.png not found"):
        list(read_scienceqa(sqa, split="train"))
    stats: Counter = Counter()
    assert list(read_scienceqa(sqa, split="train", skip_bad=True, stats=stats)) == []
    assert stats["skipped.missing_image"] == 1 and stats["skipped.corrupt_image"] == 1
