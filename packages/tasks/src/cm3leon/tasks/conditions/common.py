"""Helpers shared by the condition extractors."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from cm3leon.tasks.records import RecordError

__all__ = ["as_rgb_array", "content_rng", "gray_to_rgb", "label_colour", "record_field"]


def as_rgb_array(image: Any) -> np.ndarray:
    """``PIL.Image`` or array -> ``(H, W, 3)`` uint8."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"image array must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3), got {arr.shape}")
    return arr


def gray_to_rgb(values: np.ndarray) -> Any:
    """Float ``(H, W)`` in ``[0, 1]`` (or bool) -> grey RGB ``PIL.Image``."""
    from PIL import Image

    arr = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    grey = np.round(arr * 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1))


def content_rng(arr: np.ndarray, seed: int) -> np.random.Generator:
    """A generator seeded by ``seed`` and the pixels, so output depends only on the input."""
    return np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(arr).tobytes())])


def label_colour(key: str | int) -> tuple[int, int, int]:
    """A stable, saturated colour for a class label or id (never black)."""
    rng = np.random.default_rng(zlib.crc32(str(key).encode("utf-8")))
    hue, sat, val = rng.random(), 0.6 + 0.4 * rng.random(), 0.6 + 0.4 * rng.random()
    i, f = int(hue * 6) % 6, hue * 6 - int(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return tuple(int(round(c * 255)) for c in rgb)  # type: ignore[return-value]


def record_field(record: Mapping[str, Any] | None, key: str, extractor: str) -> Any:
    """``record[key]`` or a :class:`RecordError` saying which extractor needs it."""
    if record is None or record.get(key) is None:
        rid = record.get("id", "?") if isinstance(record, Mapping) else "?"
        raise RecordError(f"condition extractor {extractor!r}: record {rid!r} has no {key!r}")
    return record[key]
