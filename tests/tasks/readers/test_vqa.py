"""VQA v2, OK-VQA and VizWiz readers on fixtures in the public formats."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cm3leon.tasks.readers.common import FormatError, RecordError
from cm3leon.tasks.readers.vqa import read_okvqa, read_vizwiz, read_vqa2
from tests.tasks._helpers import colour_of, write_corrupt, write_image, write_json

RED = (200, 30, 30)


def _answers(*words: str) -> list[dict]:
    return [{"answer": w, "answer_confidence": "yes", "answer_id": i + 1} for i, w in enumerate(words)]


def _vqa(root: Path, prefix_q: str, prefix_a: str) -> tuple[Path, Path]:
    write_image(root / "val2014" / "COCO_val2014_000000000042.jpg", RED, fmt="PNG")
    write_image(root / "val2014" / "COCO_val2014_000000000043.jpg", (1, 2, 3), fmt="PNG")
    q = write_json(root / f"{prefix_q}_val2014_questions.json", {
        "info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
        "questions": [{"image_id": 42, "question": "What color is it?", "question_id": 420},
                      {"image_id": 43, "question": "Is it dark?", "question_id": 430}]})  # fmt: skip
    a = write_json(root / f"{prefix_a}_val2014_annotations.json", {"annotations": [
        {"question_id": 420, "image_id": 42, "question_type": "what color", "answer_type": "other",
         "multiple_choice_answer": "red", "answers": _answers(*["red"] * 7, "maroon", "red", "pink")},
        {"question_id": 430, "image_id": 43, "question_type": "is", "answer_type": "yes/no",
         "answers": _answers("yes", "no", "yes")}]})  # fmt: skip
    return q, a


@pytest.mark.parametrize(("read", "pq", "pa"), [
    (read_vqa2, "v2_OpenEnded_mscoco", "v2_mscoco"), (read_okvqa, "OpenEnded_mscoco", "mscoco")])  # fmt: skip
def test_vqa_reader(tmp_path: Path, read, pq: str, pa: str) -> None:
    q, _ = _vqa(tmp_path, pq, pa)
    records = list(read(tmp_path))
    assert [r["id"] for r in records] == ["420", "430"]
    assert records[0]["question"] == "What color is it?" and records[0]["answer"] == "red"
    assert len(records[0]["answers"]) == 10 and colour_of(records[0]["image"]) == RED
    assert records[1]["answer"] == "yes"  # no multiple_choice_answer: the majority
    assert len(list(read(q))) == 2  # the questions file as PATH


def test_vqa_malformed(tmp_path: Path) -> None:
    q, a = _vqa(tmp_path, "v2_OpenEnded_mscoco", "v2_mscoco")
    data = json.loads(a.read_text())
    data["annotations"][1]["answers"] = [{"answer_id": 1}]
    a.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"question_id 430\.answers\[0\]: missing key 'answer'"):
        list(read_vqa2(tmp_path))
    data["annotations"].pop(1)
    a.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"questions\[1\]: question_id 430 has no entry"):
        list(read_vqa2(tmp_path))
    qd = json.loads(q.read_text())
    qd["questions"][0]["question"] = ["not", "a", "string"]
    q.write_text(json.dumps(qd))
    stats: Counter = Counter()
    assert list(read_vqa2(tmp_path, skip_bad=True, stats=stats)) == []
    assert stats == {"skipped": 2, "skipped.wrong_type": 1, "skipped.missing_answer": 1}


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_vqa_bad_image(tmp_path: Path, damage: str) -> None:
    _vqa(tmp_path, "v2_OpenEnded_mscoco", "v2_mscoco")
    image = tmp_path / "val2014" / "COCO_val2014_000000000043.jpg"
    image.unlink() if damage == "missing" else write_corrupt(image)
    with pytest.raises(RecordError, match=r"questions\[1\].*COCO_val2014_000000000043"):
        list(read_vqa2(tmp_path))
    stats: Counter = Counter()
    assert len(list(read_vqa2(tmp_path, skip_bad=True, stats=stats))) == 1
    assert stats[f"skipped.{damage}_image"] == 1


def test_vqa_needs_annotations(tmp_path: Path) -> None:
    _, a = _vqa(tmp_path, "v2_OpenEnded_mscoco", "v2_mscoco")
    a.unlink()
    with pytest.raises(FormatError, match="no VQA annotations file"):
        list(read_vqa2(tmp_path))


def _vizwiz(root: Path) -> Path:
    write_image(root / "val" / "VizWiz_val_00000000.jpg", RED, fmt="PNG")
    write_image(root / "val" / "VizWiz_val_00000001.jpg", RED, fmt="PNG")
    return write_json(root / "annotations" / "val.json", [
        {"image": "VizWiz_val_00000000.jpg", "question": "What is this?", "answerable": 0,
         "answer_type": "unanswerable", "answers": _answers(*["unanswerable"] * 6, *["soup"] * 4)},
        {"image": "VizWiz_val_00000001.jpg", "question": "Which color?", "answerable": 1,
         "answer_type": "other", "answers": _answers("red", "red", "dark red")}])  # fmt: skip


def test_vizwiz_reader(tmp_path: Path) -> None:
    _vizwiz(tmp_path)
    records = list(read_vizwiz(tmp_path, split="val"))
    assert [(r["id"], r["answer"]) for r in records] == [
        ("VizWiz_val_00000000.jpg", "unanswerable"), ("VizWiz_val_00000001.jpg", "red")]
    assert len(records[0]["answers"]) == 10


def test_vizwiz_malformed(tmp_path: Path) -> None:
    file = _vizwiz(tmp_path)
    data = json.loads(file.read_text())
    del data[0]["question"]
    data[1]["image"] = "VizWiz_val_missing.jpg"
    file.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"val.json: \[0\]: missing key 'question'"):
        list(read_vizwiz(tmp_path / "annotations" / "val.json"))
    stats: Counter = Counter()
    assert list(read_vizwiz(tmp_path, split="val", skip_bad=True, stats=stats)) == []
    assert stats == {"skipped": 2, "skipped.missing_key": 1, "skipped.missing_image": 1}
