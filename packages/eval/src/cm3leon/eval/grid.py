"""Sample grids: many images (optionally captioned) in one PNG, for reports and eyeballing.

Rows are typically prompts and columns candidates (N samples per prompt), with the
CLIP-selected one outlined.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cm3leon.core.io import atomic_write_bytes

__all__ = ["image_grid", "save_grid", "to_pil"]


def to_pil(image: Any) -> Any:
    """``PIL.Image`` / ``(H, W, 3)`` uint8 array / ``(3, H, W)`` float tensor in [0, 1] -> RGB PIL."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if hasattr(image, "detach"):  # torch tensor (3, H, W)
        arr = (
            image.detach()
            .float()
            .clamp(0, 1)
            .mul(255)
            .round()
            .byte()
            .permute(1, 2, 0)
            .cpu()
            .numpy()
        )
        return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {arr.dtype} {arr.shape}")
    return Image.fromarray(arr, mode="RGB")


def image_grid(
    images: Sequence[Any],
    *,
    ncols: int,
    captions: Sequence[str] | None = None,
    highlight: Sequence[int] = (),
    cell: int | None = None,
    pad: int = 4,
    caption_lines: int = 2,
) -> Any:
    """Lay ``images`` out row-major on a white canvas.

    Args:
        images: PIL images, uint8 arrays or float tensors.
        ncols: images per row.
        captions: optional text under each image (wrapped, at most ``caption_lines`` lines).
        highlight: indices of images to outline in red (e.g. the re-ranked choice).
        cell: side of each (square) cell in pixels; default: the largest image side.
        pad: spacing in pixels.
        caption_lines: lines of caption text per cell.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not images:
        raise ValueError("image_grid needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    pils = [to_pil(im) for im in images]
    side = cell or max(max(im.size) for im in pils)
    font = ImageFont.load_default()
    line_h = 12
    chars = max(8, side // 6)
    text_h = caption_lines * line_h if captions is not None else 0
    nrows = (len(pils) + ncols - 1) // ncols
    width = ncols * (side + pad) + pad
    height = nrows * (side + text_h + pad) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for i, im in enumerate(pils):
        r, c = divmod(i, ncols)
        x, y = pad + c * (side + pad), pad + r * (side + text_h + pad)
        if im.size != (side, side):
            im = im.resize(
                (side, side),
                Image.Resampling.NEAREST if max(im.size) < side else Image.Resampling.BILINEAR,
            )
        canvas.paste(im, (x, y))
        if i in set(highlight):
            draw.rectangle([x - 2, y - 2, x + side + 1, y + side + 1], outline=(220, 0, 0), width=2)
        if captions is not None:
            lines = textwrap.wrap(captions[i], chars)[:caption_lines]
            for j, line in enumerate(lines):
                draw.text((x, y + side + 1 + j * line_h), line, fill="black", font=font)
    return canvas


def save_grid(path: str | Path, images: Sequence[Any], **kwargs: Any) -> Path:
    """Render :func:`image_grid` and write it as PNG atomically."""
    buf = io.BytesIO()
    image_grid(images, **kwargs).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
