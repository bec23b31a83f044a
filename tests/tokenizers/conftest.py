"""Fixtures of the tokenizer tests: small procedural images and a tiny corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def shapes_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A light-grey wall with 1-3 flat coloured squares/discs (procedural-world look)."""
    img = np.full((size, size, 3), 200, dtype=np.uint8)
    palette = np.array([[220, 40, 40], [40, 160, 60], [40, 80, 220], [230, 200, 40], [160, 60, 200]])
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.integers(4, size - 4, 2)
        r = int(rng.integers(3, size // 4))
        colour = palette[int(rng.integers(len(palette)))]
        if rng.random() < 0.5:
            mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
        else:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img[mask] = colour
    return img


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """128 PNGs of 32x32 procedural shapes."""
    out = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for i in range(128):
        Image.fromarray(shapes_image(rng)).save(out / f"{i:04d}.png")
    return out
