"""Analytic silhouettes of the world's shapes on the pixel grid.

Shared by the sampler (which keeps touching objects apart in colour), the renderer and
the scorer (which fits these templates to what it reads from an image).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "SHAPE_NAMES",
    "colour_conflicts",
    "dilate",
    "pixel_grid",
    "shape_mask",
    "silhouette",
    "touching",
]

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")


@functools.lru_cache(maxsize=16)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(X, Y)``, each ``(size, size)`` float32."""
    c = np.arange(size, dtype=np.float32) + 0.5
    x, y = np.meshgrid(c, c)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def shape_mask(shape: str, cx, cy, r, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean silhouette of ``shape`` centred at ``(cx, cy)`` with half-extent ``r``.

    ``cx``, ``cy`` and ``r`` may be arrays that broadcast against ``x``/``y`` (the scorer
    evaluates many candidate templates at once).
    """
    dx = x - cx
    dy = y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape == "triangle":  # apex up at -r, base at +0.8r, base width 2r
        return (dy <= 0.8 * r) & (np.abs(dx) * 1.8 <= dy + r)
    if shape == "cross":
        w = 0.36 * r
        adx, ady = np.abs(dx), np.abs(dy)
        return ((adx <= w) & (ady <= r)) | ((ady <= w) & (adx <= r))
    raise ValueError(f"unknown shape {shape!r}; world shapes: {', '.join(SHAPE_NAMES)}")


def silhouette(obj: Any, size: int) -> np.ndarray:
    """``(size, size)`` boolean silhouette of a :class:`~cm3leon.world.scene.WorldObject`."""
    x, y = pixel_grid(size)
    return shape_mask(obj.shape, obj.center[0], obj.center[1], obj.radius, x, y)


def dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation of a ``(H, W)`` boolean mask."""
    pad = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= pad[dy : dy + h, dx : dx + w]
    return out


def touching(objects: Sequence[Any], size: int) -> np.ndarray:
    """``(N, N)`` boolean matrix: objects ``i`` and ``j`` overlap or touch (8-neighbourhood)."""
    masks = [silhouette(o, size) for o in objects]
    grown = [dilate(m) for m in masks]
    n = len(objects)
    out = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = bool((grown[i] & masks[j]).any())
    return out


def colour_conflicts(objects: Sequence[Any], size: int) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of same-coloured objects that overlap or touch.

    The world never contains such pairs: they would render as one blob of colour.
    """
    n = len(objects)
    same = [
        (i, j) for i in range(n) for j in range(i + 1, n) if objects[i].colour == objects[j].colour
    ]
    if not same:
        return []
    touch = touching(objects, size)
    return [(i, j) for i, j in same if touch[i, j]]
