"""Every built-in task renders a hand-written record into the Table 5 layout.

For each task and each of its templates we check the rendered segments (text, image,
in template order) and the serialised token layout: text ids, ``<break>``, image codes,
``<break>`` (Figure 8), built here by hand from the expected segments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from cm3leon.core.documents import ImageSegment, TextSegment
from cm3leon.core.plugin_manager import get_registries
from cm3leon.tasks.records import RecordError
from cm3leon.tasks.synthetic import synthetic_scene
from cm3leon.tasks.testing import probe_tokenizer
from tests.tasks._helpers import solid

TOK = probe_tokenizer()
V = TOK.vocab
IMG = solid((250, 10, 10), (8, 8))
IMG2 = solid((10, 10, 250), (8, 8))
SCENE = {"id": "s1", **synthetic_scene(np.random.default_rng(3), size=32)}


def _cond(extractor: str) -> Image.Image:
    return get_registries().condition_extractors.build(extractor)(SCENE["image"], SCENE)


def _control(phrase: str, extractor: str) -> list[Any]:
    return [phrase, _cond(extractor), SCENE["caption"], SCENE["image"]]


# task name -> (record, expected segments per template index)
CASES: dict[str, tuple[dict[str, Any], list[list[Any]]]] = {
    "coco_captioning": ({"id": "1", "image": IMG, "caption": "A dog runs."},
                        [["A dog runs.", IMG], ["Describe the given picture. A dog runs.", IMG]]),
    "flickr30k": ({"id": "1", "image": IMG, "caption": "Two men talk."},
                  [["Two men talk.", IMG], ["Describe the given picture. Two men talk.", IMG]]),
    "image_paragraph": ({"id": "1", "image": IMG, "caption": "A room. It is big."}, [
        ["Describe the given picture in very detail. A room. It is big.", IMG],
        ["Describe all the objects in the given image in very detail. A room. It is big.", IMG],
        ["Generate a long caption for the given image. A room. It is big.", IMG],
        ["Describe the given picture in very detail. A room. It is big.", IMG]]),
    "localized_narratives": ({"id": "1", "image": IMG, "caption": "I can see a cat."}, [
        ["Generate a long narration of what is happening in the given image. I can see a cat.", IMG],
        ["Generate a long caption for the given image. I can see a cat.", IMG]]),
    **{name: ({"id": "7", "image": IMG, "question": "What color?", "answer": "red", "answers": ["red"] * 10}, [
        ["Question: What color? Answer: red.", IMG],
        ["Question: What color?\nred", IMG],
        ["Question: What color? The answer is red.", IMG]]) for name in ("vqa2", "vizwiz", "okvqa")},
    "scienceqa": ({"id": "9", "image": IMG, "question": "Which is red?", "context": "", "choices": ["sky", "apple"],
                   "answer": 1, "explanation": "Apples are red."}, [
        ["Question: Which is red?\nContext: N/A\nOptions: (A) sky (B) apple\nAnswer: apple.", IMG],
        ["Question: Which is red?\nContext: N/A\nOptions: (A) sky (B) apple\nAnswer: Let's think step-by-step: "
         "Apples are red. So the answer is apple.", IMG]]),
    "ocr": ({"id": "1", "image": IMG, "text": "OPEN\n24 h"}, [['draw "OPEN 24 h"', IMG]]),
    "instructpix2pix": ({"id": "1", "image": IMG, "instruction": "make it blue", "edited_image": IMG2}, [
        ["Edit first image following the instruction", IMG, "make it blue", IMG2],
        ["Edit the image following the text instruction", IMG, "make it blue", IMG2]]),
    "object_detection": ({"id": "1", "image": solid((9, 9, 9), (64, 32)), "caption": "A scene.",
                          "objects": [{"label": "cup", "box": [0, 0, 8, 4]}, {"label": "table", "box": [16, 8, 48, 24]}]},
                         [["Generate high quality image of A scene with segmentations table at "
                           "<loc_8><loc_8><loc_31><loc_31>, cup at <loc_0><loc_0><loc_4><loc_4>",
                           solid((9, 9, 9), (64, 32))]]),
    "edge_to_image": (SCENE, [_control("Make high quality image from canny edge features", "canny")]),
    "seg_to_image": (SCENE, [_control("Make high quality image from a segmentation map", "segmentation")]),
    "hed_to_image": (SCENE, [_control("Make high quality image from hed features", "soft_edge")]),
    "pose_to_image": (SCENE, [_control("Make high quality image from openpose features", "pose")]),
    "depth_to_image": (SCENE, [_control("Make high quality image from depth features", "depth")]),
    "norm_to_image": (SCENE, [_control("Make high quality image from 3D norm features", "normals")]),
    "scribble_to_image": (SCENE, [
        _control("Make high quality image from children's scribbles", "scribble"),
        _control("Create a high-quality image from children's scribble and text description", "scribble")]),
}  # fmt: skip


def test_every_registered_builtin_task_has_a_case() -> None:
    builtin = {r.spec.name for r in get_registries().tasks if r.distribution == "cm3leon-tasks"}
    assert builtin == set(CASES)


def _expected_ids(parts: list[Any]) -> list[int]:
    ids: list[int] = []
    for part in parts:
        if isinstance(part, str):
            ids += [V.text_offset + b for b in part.encode("utf-8")]
        else:
            if not ids or ids[-1] != V.break_id:
                ids.append(V.break_id)
            ids += [V.image_offset + int(c) for c in TOK.image_tokenizer.encode([part])[0]]
            ids.append(V.break_id)
    return ids


@pytest.mark.parametrize("name", sorted(CASES))
def test_renders_fixture_into_expected_layout(name: str) -> None:
    record, expected = CASES[name]
    task = get_registries().tasks.build(name)
    seen = set()
    for seed in range(40):
        doc = task.render(record, rng=np.random.default_rng(seed))
        index = doc.meta["template"]
        seen.add(index)
        want = expected[index]
        assert len(doc.segments) == len(want), f"template {index}: {doc.segments}"
        for seg, part in zip(doc.segments, want, strict=True):
            if isinstance(part, str):
                assert seg == TextSegment(part)
            else:
                assert isinstance(seg, ImageSegment) and seg == ImageSegment(image=part)
        assert TOK.encode(doc).tolist() == _expected_ids(want)
    assert seen == set(range(len(expected))), f"templates rendered: {sorted(seen)}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_missing_field_is_a_record_error(name: str) -> None:
    record, _ = CASES[name]
    task = get_registries().tasks.build(name)
    for key in [k for k in record if k not in ("id", "captions", "answers", "context", "explanation", "skeleton")]:
        broken = {k: v for k, v in record.items() if k != key}
        if name.endswith("_to_image") and key in ("objects", "keypoints", "depth") and key != _needs(name):
            continue  # only the field the extractor uses is required
        with pytest.raises(RecordError, match=repr(record["id"])):
            task.render(broken, rng=np.random.default_rng(0))


def _needs(name: str) -> str | None:
    return {"pose_to_image": "keypoints", "depth_to_image": "depth", "norm_to_image": "depth"}.get(name)


def test_precomputed_condition_is_used_as_is() -> None:
    task = get_registries().tasks.build("edge_to_image")
    cond = ImageOps.invert(SCENE["image"])
    doc = task.render({**SCENE, "condition": cond}, rng=np.random.default_rng(0))
    assert doc.segments[1] == ImageSegment(image=cond)


def test_condition_task_accepts_another_extractor() -> None:
    task = get_registries().tasks.build("hed_to_image", extractor="canny", sigma=2.0)
    doc = task.render(SCENE, rng=np.random.default_rng(0))
    from cm3leon.tasks.conditions import CannyExtractor

    assert doc.segments[1] == ImageSegment(image=CannyExtractor(sigma=2.0)(SCENE["image"]))
    unknown = get_registries().tasks.build("hed_to_image", extractor="learned_hed")
    with pytest.raises(KeyError, match="learned_hed.*registered condition extractor"):
        unknown.render(SCENE, rng=np.random.default_rng(0))


def test_scienceqa_bad_answer_index_and_detection_bad_box() -> None:
    sqa = get_registries().tasks.build("scienceqa")
    record, _ = CASES["scienceqa"]
    with pytest.raises(RecordError, match="answer 5"):
        sqa.render({**record, "answer": 5}, rng=np.random.default_rng(0))
    det = get_registries().tasks.build("object_detection")
    record, _ = CASES["object_detection"]
    with pytest.raises(RecordError, match=r"objects\[0\].*box"):
        det.render({**record, "objects": [{"label": "cup", "box": [0, 0, -1, 2]}]}, rng=np.random.default_rng(0))


def test_detection_bins_and_object_cap() -> None:
    from cm3leon.tasks.builtin.object_detection import discretise_box, object_detection

    assert discretise_box([8, 8, 16, 16], 64, 64, 32) == (4, 4, 12, 12)
    assert discretise_box([0, 0, 64, 64], 64, 64, 32) == (0, 0, 31, 31)
    task = object_detection(num_bins=4, max_objects=1)
    record, _ = CASES["object_detection"]
    doc = task.render(record, rng=np.random.default_rng(0))
    assert doc.segments[0].text.endswith("table at <loc_1><loc_1><loc_3><loc_3>")
