"""COCO readers on fixtures in the exact public layout (and cm3leon's depth layout)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cm3leon.tasks.readers.coco import (
    read_coco_captions,
    read_coco_depth,
    read_coco_images,
    read_coco_instances,
    read_coco_keypoints,
)
from cm3leon.tasks.readers.common import FormatError, RecordError
from tests.tasks._helpers import colour_of, write_corrupt, write_image, write_json

RED, BLUE = (200, 30, 30), (30, 30, 200)


def _images() -> list[dict]:
    return [{"id": 1, "file_name": "000000000001.jpg", "width": 16, "height": 12},
            {"id": 2, "file_name": "000000000002.jpg", "width": 16, "height": 12}]  # fmt: skip


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """``<root>/annotations/{captions,instances,person_keypoints}_val2017.json`` + ``val2017/``."""
    root = tmp_path / "coco"
    write_image(root / "val2017" / "000000000001.jpg", RED, fmt="PNG")  # COCO names, PNG bytes: lossless
    write_image(root / "val2017" / "000000000002.jpg", BLUE, fmt="PNG")
    ann = root / "annotations"
    write_json(ann / "captions_val2017.json", {"info": {}, "images": _images(), "annotations": [
        {"id": 11, "image_id": 1, "caption": "A red square. "},
        {"id": 10, "image_id": 1, "caption": "Something red."},
        {"id": 12, "image_id": 2, "caption": "A blue one."}]})  # fmt: skip
    write_json(ann / "instances_val2017.json", {
        "images": _images(), "categories": [{"id": 3, "name": "cup", "supercategory": "kitchen"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 5, 4], "iscrowd": 0, "area": 20,
             "segmentation": [[1, 2, 6, 2, 6, 6, 1, 6]]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 16, 12], "iscrowd": 1, "area": 4,
             "segmentation": {"size": [12, 16], "counts": [0, 4, 188]}}]})  # fmt: skip
    person = [5.0, 2.0, 2] * 17
    person[3:6] = [0, 0, 0]  # an unlabelled keypoint
    write_json(ann / "person_keypoints_val2017.json", {
        "images": _images(),
        "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)],
                        "skeleton": [[1, 2], [1, 3]]}],
        "annotations": [{"id": 5, "image_id": 2, "category_id": 1, "keypoints": person, "num_keypoints": 16,
                         "bbox": [0, 0, 10, 10], "iscrowd": 0}]})  # fmt: skip
    depth = np.arange(16 * 12, dtype=np.uint16).reshape(12, 16) * 100
    for stem in ("000000000001", "000000000002"):
        (ann / "depth").mkdir(exist_ok=True)
        Image.fromarray(depth).save(ann / "depth" / f"{stem}.png")
    return root


def test_captions_one_record_per_caption(coco: Path) -> None:
    stats: Counter = Counter()
    records = list(read_coco_captions(coco, stats=stats))
    assert [r["id"] for r in records] == ["1/11", "1/10", "2/12"]
    assert records[0]["caption"] == "A red square." and records[0]["captions"] == ["A red square.", "Something red."]
    assert colour_of(records[0]["image"]) == RED and colour_of(records[2]["image"]) == BLUE
    assert stats == {"records": 3}
    # The annotation file itself works as PATH too.
    assert len(list(read_coco_captions(coco / "annotations" / "captions_val2017.json"))) == 3


def test_images_reader_first_caption_by_annotation_id(coco: Path) -> None:
    records = list(read_coco_images(coco, split="val2017"))
    assert [(r["id"], r["caption"]) for r in records] == [("1", "Something red."), ("2", "A blue one.")]


def test_instances_objects_and_crowd(coco: Path) -> None:
    stats: Counter = Counter()
    records = list(read_coco_instances(coco, stats=stats))
    assert [r["id"] for r in records] == ["1"]  # image 2 has no objects
    assert stats["filtered.no_objects"] == 1
    (obj,) = records[0]["objects"]
    assert obj == {"label": "cup", "box": [1.0, 2.0, 5.0, 4.0], "category_id": 3,
                   "segmentation": [[1, 2, 6, 2, 6, 6, 1, 6]]}  # fmt: skip
    assert records[0]["caption"] == "Something red."
    crowd = list(read_coco_instances(coco, include_crowd=True))
    assert len(crowd[0]["objects"]) == 2


def test_keypoints_people_and_skeleton(coco: Path) -> None:
    stats: Counter = Counter()
    (record,) = list(read_coco_keypoints(coco, stats=stats))
    assert record["id"] == "2" and len(record["keypoints"][0]) == 51
    assert record["skeleton"] == [[1, 2], [1, 3]] and stats["filtered.no_keypoints"] == 1


def test_depth_maps_are_loaded_as_float(coco: Path) -> None:
    records = list(read_coco_depth(coco))
    assert records[0]["depth"].dtype == np.float32 and records[0]["depth"].shape == (12, 16)
    assert records[0]["depth"][1, 0] == 1600.0


def test_companion_captions_required(coco: Path) -> None:
    (coco / "annotations" / "captions_val2017.json").unlink()
    with pytest.raises(FormatError, match="captions_val2017.json does not exist"):
        list(read_coco_instances(coco))


@pytest.mark.parametrize(("mutate", "reason", "pattern"), [
    (lambda d: d["annotations"][0].pop("caption"), "missing_key", r"annotations\[0\]: missing key 'caption'"),
    (lambda d: d["annotations"][0].update(caption=7), "wrong_type", r"annotations\[0\]: 'caption' must be str"),
    (lambda d: d["annotations"][0].update(image_id="1"), "wrong_type", r"annotations\[0\]: 'image_id' must be int"),
    (lambda d: d["annotations"][0].update(image_id=99), "unknown_image", "image_id 99 is not in 'images'"),
])  # fmt: skip
def test_malformed_annotation(coco: Path, mutate, reason: str, pattern: str) -> None:
    import json

    file = coco / "annotations" / "captions_val2017.json"
    data = json.loads(file.read_text())
    mutate(data)
    file.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=pattern) as info:
        list(read_coco_captions(coco))
    assert str(file) in str(info.value)
    stats: Counter = Counter()
    records = list(read_coco_captions(coco, skip_bad=True, stats=stats))
    assert len(records) == 2 and stats["skipped"] == 1 and stats[f"skipped.{reason}"] == 1


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_image(coco: Path, damage: str) -> None:
    image = coco / "val2017" / "000000000001.jpg"
    image.unlink() if damage == "missing" else write_corrupt(image)
    with pytest.raises(RecordError, match=r"captions_val2017.json: record 1.*000000000001.jpg") as info:
        list(read_coco_captions(coco))
    assert ("not found" if damage == "missing" else "corrupt") in str(info.value)
    stats: Counter = Counter()
    records = list(read_coco_captions(coco, skip_bad=True, stats=stats))
    assert [r["id"] for r in records] == ["2/12"]
    assert stats["skipped"] == 2 and stats[f"skipped.{damage}_image"] == 2 and stats["records"] == 1


def test_missing_and_mismatched_depth(coco: Path) -> None:
    depth = coco / "annotations" / "depth"
    (depth / "000000000001.png").unlink()
    Image.fromarray(np.zeros((3, 3), np.uint16)).save(depth / "000000000002.png")
    with pytest.raises(RecordError, match="000000000001.png not found"):
        list(read_coco_depth(coco))
    stats: Counter = Counter()
    assert list(read_coco_depth(coco, skip_bad=True, stats=stats)) == []
    assert stats["skipped.missing_depth"] == 1 and stats["skipped.corrupt_depth"] == 1


def test_file_level_errors(coco: Path, tmp_path: Path) -> None:
    (coco / "annotations" / "captions_val2017.json").write_text("{not json")
    with pytest.raises(FormatError, match="captions_val2017.json: not valid JSON"):
        list(read_coco_captions(coco))
    write_json(coco / "annotations" / "captions_val2017.json", {"images": []})
    with pytest.raises(FormatError, match="needs a top-level 'annotations' list"):
        list(read_coco_captions(coco))
    write_json(coco / "annotations" / "captions_train2017.json", {"images": [], "annotations": []})
    with pytest.raises(FormatError, match="several COCO captions files.*pass split"):
        list(read_coco_captions(coco))
    with pytest.raises(FormatError, match="no such file"):
        list(read_coco_captions(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['imagedir'\]"):
        list(read_coco_captions(coco, imagedir="x"))


def test_images_not_found_anywhere(coco: Path) -> None:
    (coco / "val2017").rename(coco / "elsewhere")
    with pytest.raises(FormatError, match="cannot find the images.*pass image_dir"):
        list(read_coco_captions(coco))
    assert len(list(read_coco_captions(coco, image_dir=coco / "elsewhere"))) == 3
