"""The model-free scorer: exact on renders, robust to degradation, at chance on noise."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from cm3leon.core.world.edits import apply_edit
from cm3leon.core.world.language import ObjectSpec
from cm3leon.core.world.records import World
from cm3leon.core.world.render import render_scene
from cm3leon.core.world.scene import COLOURS, SHAPES
from cm3leon.core.world.scorer import (
    CHANCE,
    aggregate,
    classify_pixels,
    detect_objects,
    score_edit,
    score_text_to_image,
    shuffled_baseline,
)

N = 150


@pytest.fixture(scope="module")
def data():
    world = World(31)
    scenes = [world.scene(i) for i in range(N)]
    return world, scenes, [render_scene(s).image for s in scenes]


def _mean(images, scenes) -> dict[str, float]:
    return aggregate([score_text_to_image(im, s) for im, s in zip(images, scenes, strict=True)])


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _blur(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(0.8)))


def _noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)


def _vq_like(image: np.ndarray) -> np.ndarray:
    """Blocky, palette-poor reconstruction: 2x2 blocks averaged, 6 levels per channel."""
    h = image.shape[0]
    blocks = image.reshape(h // 2, 2, h // 2, 2, 3).astype(np.float32).mean((1, 3))
    blocks = np.round(blocks / 51.0) * 51.0
    return np.repeat(np.repeat(blocks, 2, 0), 2, 1).astype(np.uint8)


def test_clean_renders_are_read_exactly(data) -> None:
    _, scenes, images = data
    m = _mean(images, scenes)
    for key in (
        "colour_acc",
        "shape_acc",
        "colour_shape_acc",
        "position_acc",
        "size_acc",
        "count_acc",
    ):
        assert m[key] >= 0.95, (key, m)
    assert m["scene_acc"] >= 0.95


def test_larger_images_are_read_exactly() -> None:
    world = World(8, image_size=64)
    scenes = [world.scene(i) for i in range(40)]
    assert _mean([render_scene(s).image for s in scenes], scenes)["colour_shape_acc"] >= 0.95


@pytest.mark.parametrize(
    "name, degrade, floor",
    [
        ("gaussian noise sigma 20", "noise", 0.9),
        ("gaussian blur 0.8 px", "blur", 0.9),
        ("jpeg quality 75 (4:2:0)", "jpeg", 0.9),
        ("vq-like blocks + 6-level palette", "vq", 0.6),
    ],
)
def test_degraded_renders(data, name: str, degrade: str, floor: float) -> None:
    _, scenes, images = data
    rng = np.random.default_rng(0)
    fn = {
        "noise": lambda a: _noise(a, rng),
        "blur": _blur,
        "jpeg": lambda a: _jpeg(a, 75),
        "vq": _vq_like,
    }[degrade]
    m = _mean([fn(im) for im in images], scenes)
    assert m["colour_acc"] >= 0.9, (name, m)
    assert m["colour_shape_acc"] >= floor, (name, m)
    assert m["colour_shape_acc"] >= 5 * CHANCE["colour_shape_acc"]


def test_random_images_score_near_chance(data) -> None:
    _, scenes, images = data
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 256, im.shape, dtype=np.uint8) for im in images]
    m = _mean(noise, scenes)
    for key in ("colour_acc", "shape_acc", "colour_shape_acc", "position_acc"):
        assert m[key] <= CHANCE[key] + 0.05, (key, m)
    flat = _mean([np.full_like(im, 235) for im in images], scenes)
    assert flat["colour_acc"] == 0 and flat["n_detected"] == 0


def test_shuffled_baseline_is_near_chance(data) -> None:
    _, scenes, images = data
    m = shuffled_baseline(images, scenes)
    # Several objects per scene and a best matching lift it a little above the
    # single-object chance; it stays far below what a right image gets.
    assert m["colour_shape_acc"] <= 3 * CHANCE["colour_shape_acc"]
    assert (
        m["colour_acc"] <= 2.5 * CHANCE["colour_acc"]
        and m["position_acc"] <= 2 * CHANCE["position_acc"]
    )


def test_chance_constants() -> None:
    assert CHANCE["colour_shape_acc"] == pytest.approx(1 / (len(COLOURS) * len(SHAPES)))
    assert CHANCE["colour_acc"] == pytest.approx(1 / 6) and CHANCE["position_acc"] == pytest.approx(
        1 / 9
    )


def test_truth_as_caption_dict_or_specs(data) -> None:
    world, scenes, images = data
    for i in range(20):
        by_scene = score_text_to_image(images[i], scenes[i])
        assert score_text_to_image(images[i], world.captions(i)[0]) == by_scene
        assert score_text_to_image(images[i], scenes[i].to_dict()) == by_scene
    specs = [ObjectSpec(o.colour, o.shape) for o in scenes[0].objects]
    s = score_text_to_image(images[0], specs)
    assert s["colour_shape_acc"] == 1 and math.isnan(s["position_acc"])
    with pytest.raises(ValueError, match="mentions no world object"):
        score_text_to_image(images[0], "a photo of a dog")


def test_wrong_image_loses_exactly_what_differs(data) -> None:
    _, scenes, _ = data
    scene = next(s for s in scenes if len(s.objects) == 2)
    recoloured = apply_edit(
        scene,
        "recolour",
        0,
        colour=next(c for c in COLOURS if c not in {o.colour for o in scene.objects}),
    )
    s = score_text_to_image(render_scene(recoloured).image, scene)
    assert s["colour_acc"] == 0.5 and s["shape_acc"] == 1.0 and s["count_acc"] == 1.0
    removed = apply_edit(scene, "remove", 1)
    s = score_text_to_image(render_scene(removed).image, scene)
    assert s["colour_shape_acc"] == 0.5 and s["count_acc"] == 0.0


def test_detections_describe_the_objects(data) -> None:
    _, scenes, images = data
    for scene, image in zip(scenes[:30], images[:30], strict=True):
        dets = detect_objects(image)
        assert sorted((d.colour, d.shape, d.size, d.cell) for d in dets) == sorted(
            (o.colour, o.shape, o.size, tuple(o.cell)) for o in scene.objects
        )
        assert all(d.fit > 0.8 for d in dets)
        assert classify_pixels(Image.fromarray(image)).shape == image.shape[:2]
    assert detect_objects(images[0].astype(np.float32) / 255.0) == detect_objects(images[0])


def test_bad_image_inputs() -> None:
    with pytest.raises(ValueError, match="square RGB"):
        detect_objects(np.zeros((32, 32), dtype=np.uint8))
    with pytest.raises(TypeError, match="ground truth"):
        score_text_to_image(np.zeros((32, 32, 3), dtype=np.uint8), 42)


def test_score_edit(data) -> None:
    world, _, _ = data
    true, noop, wrong = [], [], []
    for i in range(60):
        e = world.edit(i)
        before, after = render_scene(e.source).image, render_scene(e.target).image
        true.append(score_edit(before, after, e))
        noop.append(score_edit(before, before, e))
        wrong.append(score_edit(before, render_scene(world.scene(i + 1000)).image, e.to_dict()))
    assert aggregate(true)["success"] >= 0.95
    assert aggregate(noop)["edit_acc"] == 0.0 and aggregate(noop)["preserve_acc"] == 1.0
    assert aggregate(wrong)["success"] <= 0.1
    assert (
        score_edit(None, render_scene(world.edit(0).target).image, world.edit(0))["success"] == 1.0
    )
