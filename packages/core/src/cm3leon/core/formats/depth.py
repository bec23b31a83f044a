"""cm3leon's depth layout: COCO captions with a 16-bit depth PNG per image -- read and written.

Depth has no public COCO format; cm3leon defines one (the procedural world exports it)::

    captions_<split>.json       a COCO captions file (:mod:`cm3leon.core.formats.coco`)
    <split>/<id12>.jpg          the images
    depth/<image file stem>.png single-channel uint16, larger = farther, 0 = unknown
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cm3leon.core.formats.common import EntryError, save_png

__all__ = ["read_depth_png", "write_depth_png"]


def read_depth_png(path: Path, size: tuple[int, int], where: str) -> np.ndarray:
    """A depth PNG of image size ``(W, H)`` as float32 ``(H, W)``.

    Raises:
        EntryError: the file is missing (``missing_depth``), unreadable, not single-channel
            integer, or not the image's size (``corrupt_depth``).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except FileNotFoundError:
        raise EntryError(f"{where}: depth file {path} not found", reason="missing_depth") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise EntryError(f"{where}: depth file {path} is corrupt: {err}", reason="corrupt_depth") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise EntryError(f"{where}: depth file {path} must be a single-channel integer PNG, "
                         f"got {arr.dtype} {arr.shape}", reason="corrupt_depth")  # fmt: skip
    if arr.shape[::-1] != tuple(size):
        raise EntryError(f"{where}: depth {path} is {arr.shape[1]}x{arr.shape[0]}, image is "
                         f"{size[0]}x{size[1]}", reason="corrupt_depth")  # fmt: skip
    return arr.astype(np.float32)


def write_depth_png(path: Path, depth: np.ndarray) -> None:
    """Save a ``(H, W)`` uint16 depth map (larger = farther, 0 = unknown) as PNG."""
    if depth.ndim != 2 or depth.dtype != np.uint16:
        raise ValueError(f"depth must be a (H, W) uint16 array, got {depth.dtype} {depth.shape}")
    save_png(path, depth)
