"""Scene sampling and rendering: determinism, invariants, ground-truth consistency."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cm3leon.world.geometry import colour_conflicts, silhouette
from cm3leon.world.records import World
from cm3leon.world.render import (
    CATEGORIES,
    PERSON_CATEGORY_ID,
    WALL_DEPTH,
    category_id,
    category_name,
    occlusions,
    render_scene,
)
from cm3leon.world.scene import (
    BACKGROUND_RGB,
    COLOURS,
    INK_RGB,
    Scene,
    WorldConfig,
    WorldObject,
    sample_scene,
    scene_rng,
)


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    world = World(7)
    return [world.scene(i) for i in range(400)]


def test_same_seed_same_world_and_different_seed_different_world() -> None:
    a, b, c = World(3), World(3), World(4)
    for i in (0, 5, 123):
        assert a.scene(i).to_dict() == b.scene(i).to_dict()
        assert np.array_equal(a.render(i).image, b.render(i).image)
        assert a.captions(i) == b.captions(i)
        assert a.edit(i).to_dict() == b.edit(i).to_dict()
    assert [a.scene(i).to_dict() for i in range(20)] != [c.scene(i).to_dict() for i in range(20)]


def test_random_access_does_not_depend_on_order() -> None:
    world = World(11)
    forward = [world.example(i).captions for i in range(5)]
    backward = [world.example(i).captions for i in reversed(range(5))][::-1]
    assert forward == backward


def test_splits_are_fixed_per_scene_and_roughly_80_10_10() -> None:
    world = World(0)
    splits = [world.split(i) for i in range(2000)]
    assert splits == [World(0).split(i) for i in range(2000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert (
        0.76 < share["train"] < 0.84 and 0.07 < share["val"] < 0.13 and 0.07 < share["test"] < 0.13
    )
    assert all(world.split(i) == "val" for i in world.indices(10, "val"))


def test_held_out_scenes_never_repeat_a_training_scene() -> None:
    world = World(0)
    by_split: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for i in range(3000):
        by_split[world.split(i)].add(world.scene(i).signature())
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    # The world does repeat content (one-object scenes), so the rule is not vacuous: the
    # first 3000 scenes hold fewer distinct signatures than scenes.
    assert sum(map(len, by_split.values())) < 3000


def test_signature_ignores_jitter_and_order_but_not_content() -> None:
    scene = World(0).scene(5)
    moved = scene.replace(objects=tuple(
        o.__class__(**{**o.__dict__, "center": (o.center[0] + 0.5, o.center[1]), "radius": o.radius * 1.1})
        for o in reversed(scene.objects)
    ))  # fmt: skip
    assert moved.signature() == scene.signature()
    first = scene.objects[0]
    other = "red" if first.colour != "red" else "blue"
    recoloured = scene.replace(objects=(first.__class__(**{**first.__dict__, "colour": other}), *scene.objects[1:]))
    assert recoloured.signature() != scene.signature()


def test_scene_invariants(scenes: list[Scene]) -> None:
    for scene in scenes:
        assert 1 <= len(scene.objects) <= 3
        cells = [o.cell for o in scene.objects]
        assert len(set(cells)) == len(cells)
        assert not set(cells) & ({*scene.figure.cells} if scene.figure else set())
        if scene.text is not None:
            assert all(c[0] != scene.text.row for c in cells)
            x, y, w, h = scene.text.box
            assert x >= 0 and x + w <= scene.image_size and y >= 0 and y + h <= scene.image_size
        zs = [o.z for o in scene.objects] + ([scene.figure.z] if scene.figure else [])
        assert sorted(zs) == list(range(len(zs)))
        assert colour_conflicts(scene.objects, scene.image_size) == []


def test_vocabulary_coverage(scenes: list[Scene]) -> None:
    seen = {(o.colour, o.shape, o.size, o.position) for s in scenes for o in s.objects}
    assert {c for c, *_ in seen} == set(COLOURS)
    assert {s for _, s, *_ in seen} == {"circle", "square", "triangle", "cross"}
    assert len({p for *_, p in seen}) == 9
    assert any(s.figure for s in scenes) and any(s.text for s in scenes)
    assert any(occlusions(s) for s in scenes)


def test_to_dict_round_trip(scenes: list[Scene]) -> None:
    for scene in scenes[:50]:
        again = Scene.from_dict(scene.to_dict())
        assert again.to_dict() == scene.to_dict()
        assert np.array_equal(render_scene(again).image, render_scene(scene).image)


def test_from_dict_errors_name_the_source() -> None:
    with pytest.raises(ValueError, match="gt.jsonl:3.*'objects'"):
        Scene.from_dict({"image_size": 32}, source="gt.jsonl:3")
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        WorldObject("circle", "pink", "small", (0, 0), (5.0, 5.0), 3.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 16}, "image_size"),
        ({"max_objects": 4}, "max_objects"),
        ({"min_objects": 0}, "min_objects"),
        ({"p_text": 1.5}, "p_text"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WorldConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown world option"):
        World(0, colour_count=3)
    with pytest.raises(ValueError, match="non-negative"):
        World(-1)


def test_render_ground_truth_is_consistent(scenes: list[Scene]) -> None:
    for scene in scenes[:200]:
        r = render_scene(scene)
        n = len(scene.objects)
        for k, obj in enumerate(scene.objects):
            vis = r.mask(k)
            assert np.all(r.image[vis] == COLOURS[obj.colour])
            assert np.all(r.segmentation[vis] == category_id(obj.colour, obj.shape))
            assert np.array_equal(r.amodal[k], silhouette(obj, scene.image_size))
            assert r.visible_fraction(k) > 0.5  # occlusion is partial
            assert np.all(r.depth[vis] < WALL_DEPTH)
        wall = r.instance_map == 0
        assert np.all(r.depth[wall] == WALL_DEPTH)
        expected = np.where(r.text_mask[..., None], INK_RGB, BACKGROUND_RGB)
        assert np.array_equal(r.image[wall], expected[wall].astype(np.uint8))
        if scene.figure is not None:
            assert np.all(r.segmentation[r.mask(n)] == PERSON_CATEGORY_ID)
            assert r.keypoints is not None and r.keypoints.shape == (17, 3)
            assert set(np.unique(r.keypoints[:, 2])) <= {0.0, 1.0, 2.0}
        # Nearer elements are nearer in depth wherever two silhouettes overlap.
        for front, back in occlusions(scene):
            overlap = r.amodal[front] & r.amodal[back]
            assert np.all(r.instance_map[overlap] == front + 1)
            assert r.depth[r.mask(front)].max() < r.depth[r.mask(back)].min()


def test_keypoints_follow_coco_left_right_convention() -> None:
    world = World(5, p_figure=1.0)
    scene = next(world.scene(i) for i in range(50) if world.scene(i).figure)
    kp = np.asarray(scene.figure.keypoints)
    # A front-facing person's left shoulder/hip appear on the image's right.
    assert kp[5, 0] > kp[6, 0] and kp[11, 0] > kp[12, 0]
    assert kp[0, 1] < kp[5, 1] < kp[11, 1] < kp[15, 1]


def test_categories_are_coco_like() -> None:
    ids = [c["id"] for c in CATEGORIES]
    assert ids == list(range(1, len(CATEGORIES) + 1)) and CATEGORIES[0]["name"] == "person"
    assert category_name(category_id("blue", "cross")) == "blue cross"
    with pytest.raises(ValueError):
        category_id("blue", "hexagon")


def test_larger_images_render_and_stay_consistent() -> None:
    world = World(2, image_size=64, p_text=1.0)
    scene = world.scene(0)
    r = render_scene(scene)
    assert r.image.shape == (64, 64, 3) and scene.text is not None and scene.text.scale == 2
    assert r.text_mask.sum() > 0


def test_sampling_and_rendering_throughput_sanity() -> None:
    """Very loose floor (the benchmark measures thousands of scenes/s)."""
    config = WorldConfig()
    start = time.perf_counter()
    for i in range(300):
        render_scene(sample_scene(scene_rng(0, i), config, index=i))
    assert 300 / (time.perf_counter() - start) > 50
