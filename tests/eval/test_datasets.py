"""Readers of the evaluation datasets (public formats) on a world export, and their errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cm3leon.eval.datasets import (
    read_caption_dataset,
    read_edit_samples,
    read_vqa_questions,
    read_world_edits,
    read_world_scenes,
    sibling_split_file,
)
from cm3leon.eval.formats import FormatError


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from cm3leon.world import export_world

    root = tmp_path_factory.mktemp("w") / "world"
    export_world(root, n=12, formats="coco,vqa2,instruct_pix2pix", progress=False)
    return root


def test_world_export_reads_in_every_format(world: Path) -> None:
    ann = world / "coco" / "annotations" / "captions_val2017.json"
    items = read_caption_dataset(ann)
    assert items and all(it.image.is_file() and len(it.references) >= 5 for it in items)
    assert [int(it.image_id) for it in items] == sorted(int(it.image_id) for it in items)
    assert items[0].image == world / "coco" / "val2017" / f"{int(items[0].image_id):012d}.jpg"
    assert read_caption_dataset(ann, limit=1) == items[:1]
    assert sibling_split_file(ann) == world / "coco" / "annotations" / "captions_train2017.json"
    assert sibling_split_file(world / "nothing_val.json") is None

    qs = read_vqa_questions(world / "vqa2" / "v2_OpenEnded_mscoco_val2014_questions.json")
    assert qs and all(q.image.name == f"COCO_val2014_{int(q.image_id):012d}.jpg" for q in qs)

    edits = read_edit_samples(world / "instruct_pix2pix", "val")
    truth = read_world_edits(world / "ground_truth" / "edits.jsonl")
    assert edits and all(e.sample_id in truth and e.target is not None for e in edits)
    assert all(e.image.name.endswith("_0.jpg") and e.target.name.endswith("_1.jpg") for e in edits)
    assert read_edit_samples(world / "instruct_pix2pix" / "val") == edits  # a split folder itself

    scenes = read_world_scenes(world / "ground_truth" / "scenes.jsonl", split="val")
    assert {r["split"] for r in scenes.values()} == {"val"}


def test_dataset_errors_name_the_file_and_item(world: Path, tmp_path: Path) -> None:
    coco = shutil.copytree(world / "coco", tmp_path / "coco")
    ann = coco / "annotations" / "captions_val2017.json"
    first = read_caption_dataset(ann)[0]
    (coco / "val2017" / first.image.name).unlink()
    with pytest.raises(
        FormatError, match=rf"image {first.image_id}: file .*{first.image.name} not found"
    ):
        read_caption_dataset(ann)
    shutil.rmtree(coco / "val2017")
    with pytest.raises(FormatError, match="cannot find its image folder.*data.images"):
        read_caption_dataset(ann)
    bad = tmp_path / "refs.json"
    bad.write_text(json.dumps({"1": ["a caption"]}))
    with pytest.raises(FormatError, match="expected a COCO captions file with 'images'"):
        read_caption_dataset(bad)
    q = tmp_path / "q.json"
    q.write_text(json.dumps({"data_subtype": "val2014", "questions": [{"question_id": 1}]}))
    with pytest.raises(FormatError, match="image folder .*val2014 not found"):
        read_vqa_questions(q)
    # The entry error of cm3leon.core.formats.vqa: file, entry and the first missing key.
    with pytest.raises(FormatError, match=r"q\.json: questions\[0\]: missing key 'image_id'"):
        read_vqa_questions(q, tmp_path)
    with pytest.raises(FormatError, match="no InstructPix2Pix samples"):
        read_edit_samples(tmp_path / "coco")
    scenes = tmp_path / "scenes.jsonl"
    scenes.write_text('{"image_id": 1}\n')
    with pytest.raises(
        FormatError, match=r"scenes\.jsonl:1: a scene line needs image_id and scene"
    ):
        read_world_scenes(scenes)
