"""Depth and surface-normal conditions from a provided depth map.

The depth map is ``record["depth"]``: ``(H, W)`` float, larger = farther, ``0`` =
unknown (the convention of cm3leon's 16-bit depth PNGs).  Nothing is estimated from
pixels: monocular depth networks (MiDaS, as ControlNet used) need weights we do not
have, so a reader or the procedural world must supply depth.

* ``depth`` draws normalised *inverse* depth, near = bright, unknown = black, like
  MiDaS visualisations.
* ``normals`` differentiates the depth map: with ``d_x``, ``d_y`` the depth
  gradients (per pixel, times ``strength``), the camera-facing unit normal is
  ``(d_x, -d_y, 1) / norm`` in (right, up, towards camera) axes, encoded as
  ``RGB = (n + 1) / 2 * 255``; a flat, fronto-parallel surface is (128, 128, 255).
  Pixels whose depth or neighbours are unknown are black.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.tasks.conditions.common import gray_to_rgb, record_field
from cm3leon.tasks.records import RecordError

__all__ = ["DepthExtractor", "NormalsExtractor", "depth_array"]


def depth_array(image: Any, record: Mapping[str, Any] | None, extractor: str) -> np.ndarray:
    """The record's depth as float64 ``(H, W)`` matching ``image``; checks shape and values."""
    depth = np.asarray(record_field(record, "depth", extractor), dtype=np.float64)
    w, h = image.size if hasattr(image, "size") and not isinstance(image, np.ndarray) else image.shape[1::-1]
    rid = record.get("id", "?") if record else "?"
    if depth.shape != (h, w):
        raise RecordError(
            f"condition extractor {extractor!r}: record {rid!r}: depth is {depth.shape}, image is {(h, w)}"
        )
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise RecordError(f"condition extractor {extractor!r}: record {rid!r}: depth must be finite and >= 0")
    return depth


@dataclass(frozen=True)
class DepthExtractor:
    """Normalised inverse depth (near = bright, unknown = black)."""

    def __call__(self, image: Any, record: Mapping[str, Any] | None = None) -> Any:
        depth = depth_array(image, record, "depth")
        known = depth > 0
        out = np.zeros_like(depth)
        if known.any():
            inv = 1.0 / depth[known]
            lo, hi = inv.min(), inv.max()
            # A constant depth is drawn mid-grey rather than divided by zero.
            out[known] = (inv - lo) / (hi - lo) * 0.9 + 0.1 if hi > lo else 0.5
        return gray_to_rgb(out)


@dataclass(frozen=True)
class NormalsExtractor:
    """Surface normals from depth gradients (see module docstring).

    Args:
        strength: multiplies the depth gradients (depth units per pixel) before
            normalising; larger values exaggerate slopes.  ``None`` (default) adapts to
            the map's unknown depth unit: the 90th percentile of the non-zero gradient
            magnitudes becomes a 45-degree slope.
    """

    strength: float | None = None

    def __call__(self, image: Any, record: Mapping[str, Any] | None = None) -> Any:
        from PIL import Image
        from skimage.morphology import erosion

        depth = depth_array(image, record, "normals")
        known = depth > 0
        d_y, d_x = np.gradient(depth)  # (H, W) each: along rows (down), along columns (right)
        valid = erosion(known, np.ones((3, 3), dtype=bool), mode="reflect")
        strength = self.strength if self.strength is not None else _auto_strength(d_x, d_y, valid)
        normal = np.stack([d_x * strength, -d_y * strength, np.ones_like(depth)], axis=-1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)  # (H, W, 3)
        rgb = np.round((normal + 1.0) / 2.0 * 255).astype(np.uint8)
        rgb[~valid] = 0
        return Image.fromarray(rgb)


def _auto_strength(d_x: np.ndarray, d_y: np.ndarray, valid: np.ndarray) -> float:
    magnitude = np.hypot(d_x, d_y)[valid]
    magnitude = magnitude[magnitude > 1e-12]
    return 1.0 / float(np.percentile(magnitude, 90)) if magnitude.size else 1.0
