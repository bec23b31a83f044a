"""Canny, soft-edge (HED stand-in) and scribble extractors on small synthetic images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cm3leon.tasks.conditions import CannyExtractor, ScribbleExtractor, SoftEdgeExtractor


def _square(size: int = 32, fg=(255, 255, 255), bg=(0, 0, 0)) -> Image.Image:
    arr = np.zeros((size, size, 3), np.uint8)
    arr[:] = bg
    arr[8:24, 8:24] = fg
    return Image.fromarray(arr)


def _grey(image: Image.Image) -> np.ndarray:
    arr = np.asarray(image)
    assert image.mode == "RGB" and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    return arr[..., 0].astype(float) / 255


def test_canny_marks_the_boundary_only() -> None:
    edges = _grey(CannyExtractor()(_square()))
    assert edges.shape == (32, 32) and set(np.unique(edges)) == {0.0, 1.0}
    ring = np.zeros((32, 32), bool)
    ring[6:26, 6:26] = True
    ring[10:22, 10:22] = False
    assert edges[ring].sum() > 40 and edges[~ring].sum() == 0
    iso = _grey(CannyExtractor()(_square(fg=(200, 60, 60), bg=(60, 130, 60))))  # colour edge
    assert iso[ring].sum() > 40


def test_soft_edge_is_soft_multiscale_and_sees_colour_edges() -> None:
    soft = _grey(SoftEdgeExtractor()(_square()))
    assert soft[8, 16] > 0.8 and soft[16, 16] < 0.05 and soft[1, 1] < 0.05
    canny = _grey(CannyExtractor()(_square()))
    assert (soft > 0.1).sum() > 2 * canny.sum()  # thick, graded boundaries, unlike Canny
    assert np.mean((soft > 0.05) & (soft < 0.95)) > 0  # intermediate values exist
    # Red on green of about equal luminance: grey-level gradients are weak, Lab ones are not.
    iso = _grey(SoftEdgeExtractor()(_square(fg=(200, 60, 60), bg=(60, 130, 60))))
    assert iso[8, 16] > 0.8


def test_scribble_is_thin_jittered_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    arr = (rng.random((48, 48, 3)) * 40).astype(np.uint8)
    arr[10:38, 12:36] += 180
    image = Image.fromarray(arr)
    a, b = ScribbleExtractor()(image), ScribbleExtractor()(image)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    ink = _grey(a) > 0
    straight = _grey(ScribbleExtractor(jitter=0)(image)) > 0
    assert ink.sum() > 30 and not np.array_equal(ink, straight)
    soft = _grey(SoftEdgeExtractor(sigmas=(1.0, 2.0), gamma=1.0)(image)) > 0.35
    assert straight.sum() < 0.6 * soft.sum()  # thinned to one pixel
    other = ScribbleExtractor(seed=1)(image)
    assert not np.array_equal(np.asarray(other), np.asarray(a))
    assert ScribbleExtractor(stroke=3)(image).size == image.size
    assert (_grey(ScribbleExtractor(stroke=3)(image)) > 0).sum() > ink.sum()


def test_blank_image_gives_blank_maps() -> None:
    blank = Image.new("RGB", (20, 10), (90, 90, 90))
    for extractor in (CannyExtractor(), SoftEdgeExtractor(), ScribbleExtractor()):
        out = extractor(blank)
        assert out.size == (20, 10) and np.asarray(out).max() == 0
