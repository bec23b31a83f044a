"""Edge-like conditions: Canny edges, soft (HED-style) boundaries and scribbles.

``soft_edge`` is a documented stand-in for HED (Xie & Tu, 2015), whose network
weights cannot be downloaded here.  HED fuses side outputs of a CNN at several
scales into a soft boundary probability; we fuse hand-made side outputs the same
way: for each scale ``sigma`` the Sobel gradient magnitude of the Gaussian-smoothed
CIE-Lab channels (so iso-luminant colour edges count), each normalised by its 99th
percentile, averaged over scales and gamma-compressed.  The result is thick, soft
and multi-scale like HED's, unlike Canny's thin binary edges.  A learned HED plugs in
through the condition-extractor registry (see :mod:`cm3leon.tasks.conditions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.tasks.conditions.common import as_rgb_array, content_rng, gray_to_rgb

__all__ = ["CannyExtractor", "ScribbleExtractor", "SoftEdgeExtractor", "soft_edges"]


@dataclass(frozen=True)
class CannyExtractor:
    """Colour Canny edges as white lines on black.

    Canny runs on each RGB channel (values in ``[0, 1]``) and the edge maps are OR-ed,
    so a boundary between two colours of equal brightness is found too.  Thresholds are
    absolute, like ControlNet's ``cv2.Canny(img, 100, 200)`` (about 0.1 / 0.2 here), so a
    flat image has no edges.

    Args:
        sigma: Gaussian smoothing before the gradient.
        low_threshold / high_threshold: hysteresis thresholds on the gradient magnitude.
    """

    sigma: float = 1.0
    low_threshold: float = 0.1
    high_threshold: float = 0.2

    def __call__(self, image: Any, record: Mapping[str, Any] | None = None) -> Any:
        from skimage.feature import canny

        rgb = as_rgb_array(image).astype(np.float64) / 255.0
        edges = np.zeros(rgb.shape[:2], dtype=bool)
        for c in range(3):
            edges |= canny(rgb[..., c], sigma=self.sigma, low_threshold=self.low_threshold,
                           high_threshold=self.high_threshold)  # fmt: skip
        return gray_to_rgb(edges)


def soft_edges(rgb: np.ndarray, sigmas: tuple[float, ...], gamma: float) -> np.ndarray:
    """Multi-scale soft boundary strength ``(H, W)`` in ``[0, 1]`` (see module docstring)."""
    from skimage.color import rgb2lab
    from skimage.filters import gaussian, sobel

    lab = rgb2lab(rgb)  # (H, W, 3): L in [0, 100], a/b about [-100, 100]
    sides = []
    for sigma in sigmas:
        smooth = gaussian(lab, sigma=sigma, channel_axis=-1)
        mag = np.max(np.stack([sobel(smooth[..., c]) for c in range(3)]), axis=0)  # (H, W)
        scale = np.percentile(mag, 99)
        sides.append(mag / scale if scale > 1e-8 else np.zeros_like(mag))
    fused = np.clip(np.mean(sides, axis=0), 0.0, 1.0)
    return fused**gamma


@dataclass(frozen=True)
class SoftEdgeExtractor:
    """HED stand-in: fused multi-scale soft boundaries (grey, bright = strong boundary)."""

    sigmas: tuple[float, ...] = (0.5, 1.0, 2.0)
    gamma: float = 0.7

    def __call__(self, image: Any, record: Mapping[str, Any] | None = None) -> Any:
        return gray_to_rgb(soft_edges(as_rgb_array(image), tuple(self.sigmas), self.gamma))


@dataclass(frozen=True)
class ScribbleExtractor:
    """A child's scribble: soft edges thresholded, thinned to 1 px, jittered and re-inked.

    The jitter is a smooth random displacement field (white noise blurred at an eighth of the
    image size) whose typical (standard-deviation) shift is ``jitter`` times the shorter side
    (at least one pixel; ``jitter=0`` disables it), so strokes wobble instead of
    tracing the boundary exactly; strokes are then dilated to ``stroke`` pixels.  The
    randomness is seeded by ``seed`` and the image content: the same image always gives
    the same scribble.
    """

    threshold: float = 0.35
    jitter: float = 0.05
    stroke: int = 1
    seed: int = 0

    def __call__(self, image: Any, record: Mapping[str, Any] | None = None) -> Any:
        from skimage.filters import gaussian
        from skimage.morphology import dilation, disk, skeletonize

        rgb = as_rgb_array(image)
        h, w = rgb.shape[:2]
        skeleton = skeletonize(soft_edges(rgb, (1.0, 2.0), 1.0) > self.threshold)
        rng = content_rng(rgb, self.seed)
        out = np.zeros((h, w), dtype=bool)
        rows, cols = np.nonzero(skeleton)
        if rows.size and self.jitter > 0:
            field = rng.normal(size=(2, h, w))
            field = np.stack([gaussian(f, sigma=max(2.0, min(h, w) / 8)) for f in field])  # (2, H, W)
            field *= max(1.0, self.jitter * min(h, w)) / max(float(field.std()), 1e-8)
            shift = field[:, rows, cols]  # (2, P)
            rows = np.clip(np.round(rows + shift[0]).astype(int), 0, h - 1)
            cols = np.clip(np.round(cols + shift[1]).astype(int), 0, w - 1)
        if rows.size:
            out[rows, cols] = True
            if self.stroke > 1:
                out = dilation(out, disk(self.stroke // 2, dtype=bool))
        return gray_to_rgb(out)
