"""Image input for the VQ tokenizer: load anything, convert to RGB, resize and crop.

Loading and conversion to 8-bit RGB are core's one hardened loader,
:func:`cm3leon.core.images.to_pil_rgb` (paths, bytes, PIL images of any mode, arrays,
tensors; transparency blended onto white; 16-bit and float grayscale rescaled; bombs and
truncated files refused), re-exported here with :class:`ImageInputError` and
:func:`describe_source`.

Every input goes through 8-bit RGB (float pixels are rounded to ``k / 255``), like an
image file would; already-preprocessed ``[-1, 1]`` batches skip all of this through
:meth:`cm3leon.tokenizers.image_tokenizer.VQGANTokenizer.encode_pixels`.

Preprocessing (:class:`Preprocess`) follows Chameleon: the shortest side is resized to
the target with Lanczos, the centre is cropped, and pixels are mapped with
``x / 127.5 - 1`` to ``[-1, 1]``.  ``resize="none"`` instead requires the exact size.

Errors always name the image (file path, or ``image[i]`` for in-memory inputs):
:class:`ImageInputError` for one image; :func:`load_images` collects every failure of a
batch into :class:`ImageFailure` records so one bad file never loses the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from cm3leon.core.images import ImageInputError, describe_source, to_pil_rgb

__all__ = [
    "ImageBatchError",
    "ImageFailure",
    "ImageInputError",
    "Preprocess",
    "describe_source",
    "load_images",
    "preprocess_image",
    "to_pil_rgb",
    "to_pixels",
]

@dataclass(frozen=True)
class ImageFailure:
    """A failed image of a batch: its position, its name and why it failed."""

    index: int
    source: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.index}] {self.source}: {self.reason}"


class ImageBatchError(ValueError):
    """Some images of a batch failed (strict mode); ``failures`` lists every one of them."""

    def __init__(self, failures: Sequence[ImageFailure], total: int) -> None:
        lines = "\n  ".join(str(f) for f in failures)
        super().__init__(f"{len(failures)} of {total} images could not be used:\n  {lines}")
        self.failures = list(failures)


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes a model input.

    Attributes:
        size: square target side in pixels.
        resize: ``"shortest_side"`` (resize shortest side to ``size``, centre crop) or
            ``"none"`` (the image must already be ``size`` x ``size``).
        background: RGB colour transparent pixels are blended onto.
        exif_transpose: apply the EXIF orientation tag of photos before anything else.
    """

    size: int
    resize: Literal["shortest_side", "none"] = "shortest_side"
    background: tuple[int, int, int] = (255, 255, 255)
    exif_transpose: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"Preprocess.size must be a positive integer, got {self.size!r}")
        if self.resize not in ("shortest_side", "none"):
            raise ValueError(f"Preprocess.resize must be 'shortest_side' or 'none', got {self.resize!r}")
        object.__setattr__(self, "background", tuple(int(c) for c in self.background))
        if len(self.background) != 3 or not all(0 <= c <= 255 for c in self.background):
            raise ValueError(f"Preprocess.background must be 3 values in [0, 255], got {self.background}")

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "resize": self.resize, "background": list(self.background),
                "exif_transpose": self.exif_transpose}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> Preprocess:
        try:
            return cls(**{**data, "background": tuple(data.get("background", (255, 255, 255)))})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: bad preprocessing config: {err}") from None


# ------------------------------------------------------------------------ preprocessing
def preprocess_image(img: Image.Image, prep: Preprocess, *, source: str = "image") -> Image.Image:
    """Resize (shortest side, Lanczos) and centre-crop an RGB image to ``prep.size``."""
    size = prep.size
    if prep.resize == "none":
        if img.size != (size, size):
            raise ImageInputError(source, f"image is {img.width}x{img.height}, expected {size}x{size} (resize='none')")
        return img
    if img.size == (size, size):
        return img
    scale = size / min(img.size)
    new_size = (max(size, round(scale * img.width)), max(size, round(scale * img.height)))
    img = img.resize(new_size, Image.Resampling.LANCZOS)
    x0, y0 = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((x0, y0, x0 + size, y0 + size))


def to_pixels(img: Image.Image) -> torch.Tensor:
    """RGB image -> float tensor ``(3, H, W)`` in ``[-1, 1]`` (``x / 127.5 - 1``)."""
    arr = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def load_images(
    items: Sequence[Any], prep: Preprocess, *, strict: bool = True
) -> tuple[torch.Tensor, list[int], list[ImageFailure]]:
    """Load, convert and preprocess a batch.

    Args:
        items: paths, bytes, PIL images, arrays or tensors (mixed is fine).
        prep: preprocessing settings.
        strict: raise :class:`ImageBatchError` (listing every failure) if any image fails;
            otherwise return the good ones and the failures.

    Returns:
        ``(pixels, ok, failures)``: pixels ``(N_ok, 3, size, size)`` in ``[-1, 1]``,
        ``ok`` the input positions of those rows, and the failures.
    """
    rows: list[torch.Tensor] = []
    ok: list[int] = []
    failures: list[ImageFailure] = []
    for i, item in enumerate(items):
        source = describe_source(item, i)
        try:
            img = to_pil_rgb(item, source=source, background=prep.background, exif_transpose=prep.exif_transpose)
            rows.append(to_pixels(preprocess_image(img, prep, source=source)))
            ok.append(i)
        except ImageInputError as err:
            failures.append(ImageFailure(i, source, err.reason))
    if failures and strict:
        raise ImageBatchError(failures, len(items))
    pixels = torch.stack(rows) if rows else torch.zeros(0, 3, prep.size, prep.size)
    return pixels, ok, failures
