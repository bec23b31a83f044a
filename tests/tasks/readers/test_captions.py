"""Flickr30k (Karpathy JSON), Image Paragraph and Localized Narratives readers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cm3leon.tasks.readers.common import FormatError, RecordError
from cm3leon.tasks.readers.flickr30k import read_flickr30k
from cm3leon.tasks.readers.narratives import read_localized_narratives
from cm3leon.tasks.readers.paragraph import read_image_paragraph
from tests.tasks._helpers import colour_of, write_corrupt, write_image, write_json, write_jsonl

RED, BLUE = (200, 30, 30), (30, 30, 200)


# ------------------------------------------------------------------ Flickr30k
def _flickr(root: Path) -> Path:
    write_image(root / "flickr30k-images" / "1000092795.jpg", RED, fmt="PNG")
    write_image(root / "flickr30k-images" / "10002456.jpg", BLUE, fmt="PNG")
    sent = lambda raw, i: {"tokens": raw.lower().split(), "raw": raw, "imgid": 0, "sentid": i}  # noqa: E731
    return write_json(root / "dataset_flickr30k.json", {"dataset": "flickr30k", "images": [
        {"filename": "1000092795.jpg", "imgid": 0, "split": "train", "sentids": [0, 1],
         "sentences": [sent("Two young guys look.", 0), sent("Men outside.", 1)]},
        {"filename": "10002456.jpg", "imgid": 1, "split": "test", "sentids": [2],
         "sentences": [sent("Workers on a building.", 2)]}]})  # fmt: skip


def test_flickr30k(tmp_path: Path) -> None:
    _flickr(tmp_path)
    records = list(read_flickr30k(tmp_path, split="train"))
    assert [(r["id"], r["caption"]) for r in records] == [
        ("1000092795.jpg/0", "Two young guys look."), ("1000092795.jpg/1", "Men outside.")]
    assert records[0]["captions"] == ["Two young guys look.", "Men outside."]
    assert colour_of(records[0]["image"]) == RED
    assert len(list(read_flickr30k(tmp_path))) == 3


def test_flickr30k_malformed(tmp_path: Path) -> None:
    file = _flickr(tmp_path)
    data = json.loads(file.read_text())
    data["images"][0]["sentences"][1]["raw"] = 5
    file.write_text(json.dumps(data))
    write_corrupt(tmp_path / "flickr30k-images" / "10002456.jpg")
    with pytest.raises(RecordError, match=r"images\[0\]\.sentences\[1\]: 'raw' must be str"):
        list(read_flickr30k(file))
    stats: Counter = Counter()
    assert list(read_flickr30k(file, skip_bad=True, stats=stats)) == []
    assert stats == {"skipped": 2, "skipped.wrong_type": 1, "skipped.corrupt_image": 1}


# ------------------------------------------------------------ Image Paragraph
def _paragraphs(root: Path) -> Path:
    write_image(root / "VG_100K_2" / "2356347.jpg", RED, fmt="PNG")
    write_image(root / "VG_100K_2" / "2400000.jpg", BLUE, fmt="PNG")
    write_json(root / "train_split.json", [2356347])
    write_json(root / "test_split.json", [2400000])
    return write_json(root / "paragraphs_v1.json", [
        {"url": "https://cs.stanford.edu/people/rak248/VG_100K_2/2356347.jpg", "image_id": 2356347,
         "paragraph": "A large building with a clock.  The sky\nis blue."},
        {"url": "https://cs.stanford.edu/people/rak248/VG_100K_2/2400000.jpg", "image_id": 2400000,
         "paragraph": "A bus."}])  # fmt: skip


def test_image_paragraph(tmp_path: Path) -> None:
    _paragraphs(tmp_path)
    (record,) = list(read_image_paragraph(tmp_path, split="train"))
    assert record["id"] == "2356347" and record["caption"] == "A large building with a clock. The sky is blue."
    assert colour_of(record["image"]) == RED
    assert len(list(read_image_paragraph(tmp_path))) == 2
    with pytest.raises(FormatError, match="split 'val' needs"):
        list(read_image_paragraph(tmp_path, split="val"))


def test_image_paragraph_malformed(tmp_path: Path) -> None:
    file = _paragraphs(tmp_path)
    data = json.loads(file.read_text())
    del data[0]["paragraph"]
    file.write_text(json.dumps(data))
    (tmp_path / "VG_100K_2" / "2400000.jpg").unlink()
    with pytest.raises(RecordError, match=r"paragraphs_v1.json: \[0\]: missing key 'paragraph'"):
        list(read_image_paragraph(tmp_path))
    stats: Counter = Counter()
    assert list(read_image_paragraph(tmp_path, skip_bad=True, stats=stats)) == []
    assert stats == {"skipped": 2, "skipped.missing_key": 1, "skipped.missing_image": 1}


# ------------------------------------------------------- Localized Narratives
def _narratives(root: Path) -> Path:
    write_image(root / "images" / "000000137576.jpg", RED, fmt="PNG")  # COCO-style zero padding
    write_image(root / "images" / "abc123.jpg", BLUE, fmt="PNG")  # Open Images-style id
    return write_jsonl(root / "coco_val_localized_narratives.jsonl", [
        {"dataset_id": "mscoco_val2017", "image_id": "137576", "annotator_id": 93,
         "caption": "In this image there are cows.", "timed_caption": [], "traces": [],
         "voice_recording": "coco_val/coco_val_137576_93.ogg"},
        "",
        {"dataset_id": "open_images_validation", "image_id": "abc123", "annotator_id": 7,
         "caption": "A blue wall.", "timed_caption": [], "traces": [], "voice_recording": "x.ogg"}])  # fmt: skip


def test_localized_narratives(tmp_path: Path) -> None:
    _narratives(tmp_path)
    records = list(read_localized_narratives(tmp_path))
    assert [(r["id"], r["caption"]) for r in records] == [
        ("137576/93", "In this image there are cows."), ("abc123/7", "A blue wall.")]
    assert colour_of(records[1]["image"]) == BLUE


def test_localized_narratives_malformed(tmp_path: Path) -> None:
    file = _narratives(tmp_path)
    lines = file.read_text().splitlines()
    lines[0] = lines[0][:-5]  # truncated JSON
    lines.append(json.dumps({"image_id": "abc123", "annotator_id": 8}))
    lines.append(json.dumps({"image_id": "nope", "annotator_id": 9, "caption": "x"}))
    file.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match="jsonl: line 1: not valid JSON"):
        list(read_localized_narratives(file))
    stats: Counter = Counter()
    assert [r["id"] for r in read_localized_narratives(file, skip_bad=True, stats=stats)] == ["abc123/7"]
    assert stats == {"records": 1, "skipped": 3, "skipped.bad_json": 1, "skipped.missing_key": 1,
                     "skipped.missing_image": 1}  # fmt: skip
