"""Fixture builders shared by the tasks tests: tiny images and files in public formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (16, 12)) -> Image.Image:
    """A flat-colour RGB image (``size`` is width, height)."""
    return Image.new("RGB", size, colour)


def write_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (16, 12),
                fmt: str | None = None) -> Path:  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    solid(colour, size).save(path, format=fmt)
    return path


def write_corrupt(path: Path) -> Path:
    """A file with an image name whose bytes are not an image (a truncated JPEG header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def colour_of(image: Image.Image) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(image)[0, 0])
