"""World exports read through the real readers: the tasks package's public-format readers,
the core ``jsonl``/``folder`` sources and the registered ``world`` source."""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.plugin_manager import get_registries
from cm3leon.world.export import export_world
from cm3leon.world.records import World

pytestmark = pytest.mark.integration
N, SEED = 40, 9


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world_int") / "export"
    export_world(root, n=N, seed=SEED, progress=False)
    return root


READERS = [
    ("coco.read_coco_captions", "coco", {"split": "train2017"}, "caption"),
    ("coco.read_coco_images", "coco", {"split": "val2017"}, "caption"),
    ("coco.read_coco_instances", "coco", {"split": "train2017"}, "objects"),
    ("coco.read_coco_keypoints", "coco", {"split": "train2017"}, "keypoints"),
    ("coco.read_coco_depth", "depth", {"split": "train2017"}, "depth"),
    ("flickr30k.read_flickr30k", "flickr30k", {"split": "train"}, "captions"),
    ("vqa.read_vqa2", "vqa2", {"split": "train2014"}, "answers"),
    ("vqa.read_okvqa", "okvqa", {"split": "train2014"}, "answers"),
    ("vqa.read_vizwiz", "vizwiz", {"split": "train"}, "answers"),
    ("scienceqa.read_scienceqa", "scienceqa", {"split": "train"}, "choices"),
    ("paragraph.read_image_paragraph", "image_paragraph", {"split": "train"}, "caption"),
    ("narratives.read_localized_narratives", "localized_narratives", {"split": "train"}, "caption"),
    ("pix2pix.read_instructpix2pix", "instruct_pix2pix/train", {}, "edited_image"),
    ("ocr.read_ocr", "ocr/train", {}, "text"),
]


@pytest.mark.parametrize("reader, folder, kwargs, key", READERS, ids=[r[0] for r in READERS])
def test_tasks_readers_read_the_world(
    out: Path, reader: str, folder: str, kwargs: dict, key: str
) -> None:
    import importlib

    module, name = reader.split(".")
    fn = getattr(importlib.import_module(f"cm3leon.tasks.readers.{module}"), name)
    stats: dict = {}
    records = list(fn(out / folder, stats=stats, **kwargs))
    assert records and all(key in r for r in records)
    assert all(r["image"].size == (32, 32) for r in records)
    assert not stats.get("skipped")


def test_core_sources_read_the_pretraining_corpus(out: Path) -> None:
    sources = get_registries().sources
    world = World(SEED)
    train = world.indices(len((out / "pretrain" / "train.jsonl").read_text().splitlines()), "train")
    from_jsonl = list(sources.build("jsonl", out / "pretrain" / "train.jsonl"))
    from_folder = list(sources.build("folder", out / "pretrain" / "train"))
    direct = [world.document(i) for i in train]
    assert (
        [d.texts for d in from_jsonl] == [d.texts for d in direct] == [d.texts for d in from_folder]
    )
    assert all(a.images[0] == b.images[0] for a, b in zip(from_jsonl, direct, strict=True))


def test_world_source_is_registered() -> None:
    source = get_registries().sources.build(
        "world", None, n=12, seed=SEED, split="val", caption="canonical"
    )
    docs = list(source)
    assert len(source) == len(docs) == 12
    assert all(d.meta["split"] == "val" and d.modalities == ("text", "image") for d in docs)
    assert docs[0].texts[0] == World(SEED).captions(docs[0].meta["index"])[0]
    assert docs[0].images[0].pil().size == (32, 32)
    with pytest.raises(ValueError, match="unknown split"):
        get_registries().sources.build("world", None, split="dev")
    assert "world" in get_registries().commands


def test_instance_segmentations_read_back_as_the_rendered_masks(out: Path) -> None:
    """The consumer of the polygons: ``read_coco_instances`` -> the segmentation condition's
    ``annotation_mask`` (seg-to-image) gives back each object's rendered mask exactly."""
    import numpy as np

    from cm3leon.tasks.conditions.segmentation import annotation_mask
    from cm3leon.tasks.readers.coco import read_coco_instances
    from cm3leon.world.render import render_scene

    world, kinds = World(SEED), set()
    for record in read_coco_instances(out / "coco", split="train2017"):
        instance_map = render_scene(world.scene(int(record["id"]) - 1)).instance_map
        for obj in record["objects"]:
            kinds.add(type(obj["segmentation"]).__name__)
            mask = annotation_mask(obj["segmentation"], instance_map.shape)
            owner = np.bincount(instance_map[mask]).argmax()
            assert owner > 0 and np.array_equal(mask, instance_map == owner)
    assert "list" in kinds
