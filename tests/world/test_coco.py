"""COCO pieces of the world: polygons rasterised back with scikit-image, RLE decoded back.

Two rasterisations of a polygon are checked:

* at pixel centres (``skimage.draw.polygon`` after the half-pixel shift), the convention
  of the tasks' segmentation reader: the polygons must give back the mask *exactly*
  (IoU 1).  Marching-squares outlines pass at least 0.354 px from every pixel centre and
  the simplification moves them by at most 0.25 px, so no centre can change side; a
  half-pixel shift or a lost part fails this.
* by area coverage (a pixel is in when at least half of it is, supersampled 8x), how an
  area-based consumer sees the outline: IoU >= 0.95 for parts of at least 20 px, i.e. at
  most one boundary pixel in twenty may flip.  Cut corners remove at most a quarter of a
  pixel that has foreground neighbours, so only thin tips can flip; measured minimum 0.994.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import polygon, polygon2mask

from cm3leon.world.coco import (
    SIMPLIFY_TOLERANCE,
    coco_annotations,
    has_holes,
    mask_to_polygons,
    mask_to_rle,
)
from cm3leon.world.records import World

FULL = np.ones((3, 3), dtype=bool)  # 8-connectivity


def at_centres(polygons: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """Union of the polygons sampled at pixel centres ``(col + 0.5, row + 0.5)``."""
    out = np.zeros(shape, dtype=bool)
    for poly in polygons:
        xy = np.asarray(poly).reshape(-1, 2)
        rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=shape)
        out[rr, cc] = True
    return out


def by_coverage(polygons: list[list[float]], shape: tuple[int, int], s: int = 8) -> np.ndarray:
    """Pixels at least half covered by the union of the polygons (``s`` x ``s`` supersampling)."""
    h, w = shape
    fine = np.zeros((h * s, w * s), dtype=bool)
    for poly in polygons:
        xy = np.asarray(poly).reshape(-1, 2)
        fine |= polygon2mask(fine.shape, xy[:, ::-1] * s - 0.5)
    return fine.reshape(h, s, w, s).mean(axis=(1, 3)) >= 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def rle_decode(rle: dict) -> np.ndarray:
    """Independent decoder: runs alternate 0/1 starting with 0, down the columns."""
    h, w = rle["size"]
    values = np.arange(len(rle["counts"])) % 2
    flat = np.repeat(values, rle["counts"]).astype(bool)
    assert flat.size == h * w
    return flat.reshape((w, h)).T


def world_masks(seed: int, n: int) -> list[np.ndarray]:
    world, masks = World(seed=seed), []
    for i in range(n):
        render = world.render(i)
        parts = len(render.scene.objects) + (render.scene.figure is not None)
        masks += [m for m in (render.mask(k) for k in range(parts)) if m.any()]
    return masks


def random_masks(n: int, size: int = 24) -> list[np.ndarray]:
    """Smoothed-noise blobs: several parts, holes, diagonal contacts, parts on the border."""
    rng = np.random.default_rng(0)
    return [
        ndimage.gaussian_filter(rng.random((size, size)), 1.2) > 0.5 + 0.03 * rng.standard_normal()
        for _ in range(n)
    ]


# ----------------------------------------------------------------- polygons
def test_single_pixel_and_rectangle_pin_the_coordinates() -> None:
    mask = np.zeros((8, 12), dtype=bool)
    mask[6, 1] = True  # one pixel: a diamond through its edge midpoints
    mask[2:5, 5:9] = True  # rows 2-4, cols 5-8: an octagon on the pixel edges
    polys = sorted(mask_to_polygons(mask), key=len)
    pts = [{(x, y) for x, y in zip(p[0::2], p[1::2], strict=True)} for p in polys]
    assert pts[0] == {(1.5, 6.0), (2.0, 6.5), (1.5, 7.0), (1.0, 6.5)}
    assert pts[1] == {
        (5.0, 2.5), (5.5, 2.0), (8.5, 2.0), (9.0, 2.5),
        (9.0, 4.5), (8.5, 5.0), (5.5, 5.0), (5.0, 4.5),
    }  # fmt: skip
    assert all(len(p) == 2 * len(s) for p, s in zip(polys, pts, strict=True))  # no repeats


def test_diagonal_pixels_are_separate_parts_and_do_not_close_a_hole() -> None:
    diagonal = np.eye(3, dtype=bool)
    assert len(mask_to_polygons(diagonal)) == 3
    ring4 = np.ones((3, 3), dtype=bool)
    ring4[1, 1] = False  # closed by edges: a hole
    ring8 = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=bool)  # touching by corners only
    assert has_holes(ring4) and not has_holes(ring8) and not has_holes(diagonal)
    assert len(mask_to_polygons(ring4)) == 1 and len(mask_to_polygons(ring8)) == 4


def test_world_masks_rasterise_back_exactly_at_pixel_centres() -> None:
    checked = 0
    for mask in world_masks(seed=3, n=80):
        polys = mask_to_polygons(mask)
        assert polys and all(len(p) >= 6 and len(p) % 2 == 0 for p in polys)
        assert all(isinstance(v, float) for p in polys for v in p)
        xy = np.concatenate([np.reshape(p, (-1, 2)) for p in polys])
        assert xy.min() >= 0 and (xy <= mask.shape[::-1]).all()
        if not has_holes(mask):
            assert np.array_equal(at_centres(polys, mask.shape), mask)
            checked += 1
    assert checked > 150


def test_world_masks_by_area_coverage() -> None:
    ious = [
        iou(by_coverage(mask_to_polygons(m), m.shape), m)
        for m in world_masks(seed=4, n=40)
        if m.sum() >= 20 and not has_holes(m)
    ]
    assert len(ious) > 60 and min(ious) >= 0.95


def test_random_masks_outline_the_mask_with_its_holes_filled() -> None:
    seen_holes = 0
    for mask in random_masks(120):
        filled = ndimage.binary_fill_holes(mask, structure=FULL)  # 8-connected background
        assert has_holes(mask) == (filled.sum() > mask.sum())
        seen_holes += has_holes(mask)
        polys = mask_to_polygons(mask)
        assert np.array_equal(at_centres(polys, mask.shape), filled)
        labels, n = ndimage.label(filled)  # 4-connected parts: one outline each
        assert len(polys) == n
        for k in range(1, n + 1):
            part = labels == k
            if part.sum() >= 20:
                assert iou(by_coverage(mask_to_polygons(part), part.shape), part) >= 0.95
    assert seen_holes >= 5


def test_simplification_drops_collinear_vertices() -> None:
    mask = np.zeros((32, 32), dtype=bool)
    mask[3:29, 4:20] = True
    (poly,) = mask_to_polygons(mask)
    assert len(poly) == 16  # the octagon, not one vertex per pixel edge
    assert 0 < SIMPLIFY_TOLERANCE < 0.5 / np.sqrt(2)


# ---------------------------------------------------------------------- RLE
@pytest.mark.parametrize(
    "mask, counts",
    [
        ([[0, 1], [1, 1]], [1, 3]),
        ([[1, 0], [0, 0]], [0, 1, 3]),  # starts with the count of zeros, here 0
        ([[1, 1], [1, 1]], [0, 4]),
        ([[0, 0], [0, 0]], [4]),
        ([[0, 1, 1], [0, 0, 1]], [2, 1, 1, 2]),  # column-major: down column 0, then 1, then 2
    ],
)
def test_rle_counts(mask: list, counts: list[int]) -> None:
    rle = mask_to_rle(np.array(mask, dtype=bool))
    assert rle == {"size": [len(mask), len(mask[0])], "counts": counts}


def test_rle_decodes_back_exactly() -> None:
    for mask in [*random_masks(60), *world_masks(seed=5, n=30), np.zeros((0, 4), dtype=bool)]:
        rle = mask_to_rle(mask)
        assert rle["size"] == list(mask.shape) and sum(rle["counts"]) == mask.size
        assert all(isinstance(c, int) and c > 0 for c in rle["counts"][1:])
        assert np.array_equal(rle_decode(rle), mask)


# -------------------------------------------------------------- annotations
def test_annotations_are_exact_polygons_or_rle_for_holes() -> None:
    world, kinds = World(seed=6), {"list": 0, "dict": 0}
    for i in range(200):
        render = world.render(i)
        instances, person = coco_annotations(render, image_id=i + 1, first_id=1)
        parts = [render.mask(k) for k in range(len(render.scene.objects))]
        if render.scene.figure is not None:
            parts.append(render.mask(len(render.scene.objects)))
        masks = [m for m in parts if m.any()]
        assert [a["id"] for a in instances] == list(range(1, len(masks) + 1))
        for ann, mask in zip(instances, masks, strict=True):
            seg = ann["segmentation"]
            kinds[type(seg).__name__] += 1
            assert isinstance(seg, dict) == has_holes(mask)
            back = rle_decode(seg) if isinstance(seg, dict) else at_centres(seg, mask.shape)
            assert np.array_equal(back, mask)
            rows, cols = np.nonzero(mask)
            x, y, w, h = ann["bbox"]
            assert (x, y) == (cols.min(), rows.min())
            assert (x + w, y + h) == (cols.max() + 1, rows.max() + 1)
            assert ann["area"] == float(mask.sum()) and ann["iscrowd"] == 0
        if person is not None:
            assert person["segmentation"] == instances[-1]["segmentation"]
    assert kinds["list"] > 100 and kinds["dict"] >= 1
