"""cm3leon.core.formats.coco: the three annotation files of a split and caption results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cm3leon.core.formats.coco import (
    CocoCaption,
    CocoFile,
    coco_box,
    read_caption_references,
    read_caption_results,
    write_caption_results,
    write_coco_split,
)
from cm3leon.core.formats.common import EntryError, FormatError

IMAGES = [{"id": 1, "file_name": "000000000001.jpg", "width": 8, "height": 8},
          {"id": 2, "file_name": "000000000002.jpg", "width": 8, "height": 8}]  # fmt: skip
CAPTIONS = [CocoCaption(1, 1, "A red square."), CocoCaption(2, 1, "Red."), CocoCaption(3, 2, "Blue.")]
INSTANCES = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "iscrowd": 0,
              "segmentation": [[1, 2, 4, 2, 4, 6]], "area": 12}]  # fmt: skip
PEOPLE = [{"id": 5, "image_id": 2, "category_id": 1, "keypoints": [1, 2, 2] * 17, "num_keypoints": 17}]
CATS = [{"id": 3, "name": "cup", "supercategory": "kitchen"}]
KP_CATS = [{"id": 1, "name": "person", "keypoints": ["k"] * 17, "skeleton": [[1, 2]]}]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_coco_split(tmp_path, "val2017", images=IMAGES, captions=CAPTIONS, instances=INSTANCES,
                     keypoints=PEOPLE, categories=CATS, keypoint_categories=KP_CATS,
                     info={"year": 2024}, licenses=[{"id": 1, "name": "x", "url": "u"}])  # fmt: skip
    return tmp_path


def test_split_round_trip(root: Path) -> None:
    ann = root / "annotations"
    assert sorted(p.name for p in ann.iterdir()) == [
        "captions_val2017.json", "instances_val2017.json", "person_keypoints_val2017.json"]  # fmt: skip
    captions = CocoFile.load(ann / "captions_val2017.json")
    assert captions.captions() == CAPTIONS
    assert list(captions.images) == [1, 2] and captions.file_name(2) == "000000000002.jpg"
    assert "categories" not in captions.data and captions.data["info"] == {"year": 2024}
    instances = CocoFile.load(ann / "instances_val2017.json")
    (obj,) = instances.instances()
    assert (obj.image_id, obj.category_id, obj.bbox, obj.iscrowd) == (1, 3, [1, 2, 3, 4], False)
    assert instances.category_names() == {3: "cup"}
    keypoints = CocoFile.load(ann / "person_keypoints_val2017.json")
    assert keypoints.people()[0].keypoints == [1, 2, 2] * 17 and keypoints.skeleton() == [[1, 2]]


def test_malformed_entries_name_file_and_entry(root: Path) -> None:
    file = root / "annotations" / "captions_val2017.json"
    data = json.loads(file.read_text())
    data["annotations"][1]["caption"] = 7
    file.write_text(json.dumps(data))
    coco = CocoFile.load(file)
    with pytest.raises(FormatError, match=rf"{file}: annotations\[1\]: 'caption' must be str") as info:
        coco.captions()
    assert isinstance(info.value, EntryError) and info.value.reason == "wrong_type"
    skipped: list[EntryError] = []
    assert [c.id for c in coco.captions(skipped.append)] == [1, 3] and len(skipped) == 1
    with pytest.raises(EntryError, match="image_id 9 is not in 'images'"):
        coco.file_name(9)
    with pytest.raises(EntryError, match=r"x: 'bbox' must be 4 finite numbers"):
        coco_box([1, 2, float("nan"), 4], "x")
    data["images"][0]["id"] = "1"
    file.write_text(json.dumps(data))
    with pytest.raises(EntryError, match=rf"{file}: images\[0\]: 'id' must be int"):
        CocoFile.load(file)
    file.write_text(json.dumps({"images": []}))
    with pytest.raises(FormatError, match="needs a top-level 'annotations' list"):
        CocoFile.load(file)


def test_caption_results_round_trip_and_errors(tmp_path: Path) -> None:
    write_caption_results(tmp_path / "res.json", {"42": "a cat", "x7": "a dog"})
    assert json.loads((tmp_path / "res.json").read_text())[0] == {"caption": "a cat", "image_id": 42}
    assert read_caption_results(tmp_path / "res.json") == {"42": "a cat", "x7": "a dog"}
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 1, "caption": "a"}, {"caption": "b"}]))
    with pytest.raises(FormatError, match=r"bad\.json: entry 1 lacks 'image_id'"):
        read_caption_results(tmp_path / "bad.json")


def test_references_from_a_captions_file(root: Path, tmp_path: Path) -> None:
    refs = read_caption_references(root / "annotations" / "captions_val2017.json")
    assert refs == {"1": ["A red square.", "Red."], "2": ["Blue."]}
    (tmp_path / "r.json").write_text(json.dumps({"1": ["ok"], "2": [3]}))
    with pytest.raises(FormatError, match=r"r\.json: references of image 2 must be a list of strings"):
        read_caption_references(tmp_path / "r.json")
