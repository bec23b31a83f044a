"""One hardened image loader for every file, byte string and array cm3leon reads.

:func:`to_pil_rgb` turns one input of any supported kind into an 8-bit RGB ``PIL.Image``:

* a path (``str``/``os.PathLike``) or raw encoded bytes of any format PIL reads, decoded
  in full (a truncated file fails here, not later), with Pillow's decompression-bomb
  guard turned into an error (a header claiming 30000x30000 is refused, not decoded) and
  the EXIF orientation applied (EXIF Pillow cannot parse is ignored, the pixels kept as
  stored, and Pillow's warning logged with the image's name);
* a ``PIL.Image`` of any mode: ``RGB``; ``L``/``1``/``CMYK``/``YCbCr``/``HSV``/``RGBX``
  (converted); ``RGBA``/``LA``/``La``/``RGBa``/``PA`` and ``P`` with transparency
  (alpha-blended onto a white background, Chameleon's ``_whiten_transparency``, so a
  fully transparent pixel is white, not its hidden colour); 16-bit (``I;16*``), 32-bit
  ``I`` and float ``F`` grayscale (rescaled to 8 bits, so a 16-bit gradient keeps its
  mid-grey);
* a numpy array ``(H, W)``, ``(H, W, 1|3|4)`` of ``uint8``, ``uint16`` (scaled by
  1/257) or float/bool in ``[0, 1]``;
* a torch tensor ``(C, H, W)`` or ``(H, W)``, ``uint8`` or float in ``[0, 1]``.

Every error is an :class:`ImageInputError` (a ``ValueError``) whose message starts with
the image's name (file path, or ``image[i]`` for in-memory inputs).  Used by the data
sources (:mod:`cm3leon.core.sources`), the VQ tokenizer's input pipeline
(:mod:`cm3leon.tokenizers.image_io`) and the readers of the public formats.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageInputError", "describe_source", "load_image", "to_pil_rgb"]

log = logging.getLogger("cm3leon.images")

_ALPHA_MODES = {"RGBA", "LA", "La", "RGBa", "PA"}
_DIRECT_MODES = {"RGB", "L", "1", "CMYK", "YCbCr", "RGBX", "HSV"}


class ImageInputError(ValueError):
    """One image could not be read or converted; ``source`` names it."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def describe_source(item: Any, index: int) -> str:
    """A readable name for batch item ``index``: its path, or ``image[i] (<type>)``."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    filename = getattr(item, "filename", "") if isinstance(item, Image.Image) else ""
    return str(filename) if filename else f"image[{index}] ({type(item).__name__})"


# ----------------------------------------------------------------------------- loading
def _open_file(path: Path, source: str) -> Image.Image:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageInputError(source, "file not found") from None
    except OSError as err:
        raise ImageInputError(source, f"cannot stat file: {err}") from None
    if path.is_dir():
        raise ImageInputError(source, "is a directory, not an image file")
    if size == 0:
        raise ImageInputError(source, "empty file (0 bytes)")
    with open(path, "rb") as fh:
        return _decode_bytes(fh.read(), source)


def _decode_bytes(data: bytes, source: str) -> Image.Image:
    if not data:
        raise ImageInputError(source, "empty image data (0 bytes)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()  # force a full decode: truncated files fail here, not later
        _log_warnings(caught, source)
    except UnidentifiedImageError:
        raise ImageInputError(source, "not a recognised image format (corrupt or not an image)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageInputError(source, f"image too large: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageInputError(source, f"corrupt or truncated image: {err}") from None
    return img


def _from_array(arr: np.ndarray, source: str) -> Image.Image:
    """``(H, W)``/``(H, W, C)`` array -> PIL image (RGB/RGBA/L), values checked."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageInputError(source, f"array shape {arr.shape} is not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageInputError(source, f"image has zero size {arr.shape[:2]}")
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.uint16:
        u8 = np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
    elif arr.dtype == np.bool_ or arr.dtype.kind == "f":
        f = arr.astype(np.float64)
        if not np.isfinite(f).all():
            raise ImageInputError(source, "pixel values contain NaN or infinity")
        if f.min() < 0.0 or f.max() > 1.0:
            raise ImageInputError(
                source, f"float pixel values must be in [0, 1], got [{f.min():.4g}, {f.max():.4g}]"
            )
        u8 = np.round(f * 255.0).astype(np.uint8)
    else:
        raise ImageInputError(source, f"unsupported pixel dtype {arr.dtype} (use uint8, uint16 or float)")
    return Image.fromarray(np.ascontiguousarray(u8))  # (H, W) -> L, (H, W, 3) -> RGB, 4 -> RGBA


def _from_tensor(t: torch.Tensor, source: str) -> Image.Image:
    t = t.detach().cpu()
    if t.dim() == 3:
        if t.shape[0] not in (1, 3, 4):
            raise ImageInputError(source, f"tensor shape {tuple(t.shape)} is not (C, H, W) with C in 1, 3, 4")
        t = t.permute(1, 2, 0)
    elif t.dim() != 2:
        raise ImageInputError(source, f"tensor shape {tuple(t.shape)} is not (C, H, W) or (H, W)")
    if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
        t = t.float()
    return _from_array(t.numpy(), source)


def _numeric_to_l(img: Image.Image, source: str) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit ``L``."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        scaled = arr.astype(np.float64) / 257.0
    elif img.mode == "I":
        # 16-bit PNGs open as "I" on some Pillow versions; treat values as 16-bit when they
        # exceed 8 bits, else as 8-bit.
        hi = int(arr.max()) if arr.size else 0
        scaled = arr.astype(np.float64) / (257.0 if 255 < hi <= 65535 else max(hi / 255.0, 1.0))
    else:  # "F": [0, 1] floats, or [0, 255] when larger
        if not np.isfinite(arr).all():
            raise ImageInputError(source, "float image contains NaN or infinity")
        hi = float(arr.max()) if arr.size else 0.0
        scaled = arr.astype(np.float64) * (255.0 if hi <= 1.0 else 1.0)
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))


def _blend_on(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGBA -> RGB over ``background`` (Chameleon's formula, truncating to uint8)."""
    rgba = np.asarray(img.convert("RGBA"))
    alpha = rgba[:, :, 3:4] / 255.0  # (H, W, 1)
    if (alpha >= 1.0).all():
        return Image.fromarray(np.ascontiguousarray(rgba[:, :, :3]))
    bg = np.asarray(background, dtype=np.float64).reshape(1, 1, 3)
    rgb = (1.0 - alpha) * bg + alpha * rgba[:, :, :3]
    return Image.fromarray(rgb.astype(np.uint8))


def to_pil_rgb(item: Any, *, source: str = "image", background: tuple[int, int, int] = (255, 255, 255),
               exif_transpose: bool = True) -> Image.Image:
    """Load/convert one input of any supported kind to an RGB ``PIL.Image``.

    Raises:
        ImageInputError: unreadable, corrupt, empty, wrong shape or unsupported mode;
            the message starts with ``source``.
    """
    if isinstance(item, (str, os.PathLike)):
        img = _open_file(Path(item), source)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        img = _decode_bytes(bytes(item), source)
    elif isinstance(item, Image.Image):
        img = item
    elif isinstance(item, np.ndarray):
        img = _from_array(item, source)
    elif isinstance(item, torch.Tensor):
        img = _from_tensor(item, source)
    else:
        raise ImageInputError(source, f"unsupported image input type {type(item).__name__}")
    if img.width == 0 or img.height == 0:
        raise ImageInputError(source, f"image has zero size {img.size}")
    if exif_transpose and isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        img = _apply_exif_orientation(img, source)
    return _convert_mode(img, source, background)


def _apply_exif_orientation(img: Image.Image, source: str) -> Image.Image:
    """Rotate/flip by the EXIF orientation; EXIF Pillow cannot read is ignored (pixels as stored) and logged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            img = ImageOps.exif_transpose(img)
        except Exception as err:  # malformed EXIF must not hide the pixels' problem
            raise ImageInputError(source, f"bad EXIF orientation data: {err}") from None
    _log_warnings(caught, source)
    return img


def _log_warnings(caught: list[warnings.WarningMessage], source: str) -> None:
    """Pillow's warnings (e.g. "Corrupt EXIF data") name no file: log them with ``source``."""
    for warning in caught:
        log.warning("%s: %s", source, warning.message)


def _convert_mode(img: Image.Image, source: str, background: tuple[int, int, int]) -> Image.Image:
    mode = img.mode
    try:
        if mode == "RGB":
            return img
        if mode == "P":
            has_alpha = "transparency" in img.info
            return _blend_on(img, background) if has_alpha else img.convert("RGB")
        if mode in _ALPHA_MODES:
            return _blend_on(img, background)
        if mode.startswith("I") or mode == "F":
            return _numeric_to_l(img, source).convert("RGB")
        if mode in _DIRECT_MODES:
            return img.convert("RGB")
        return img.convert("RGB")  # any other mode PIL knows how to convert
    except ImageInputError:
        raise
    except (ValueError, OSError) as err:
        raise ImageInputError(source, f"cannot convert mode {mode!r} to RGB: {err}") from None


def load_image(path: str | Path) -> Image.Image:
    """Read one image file as 8-bit RGB (white behind transparency, EXIF applied).

    Raises:
        ImageInputError: missing, empty, corrupt, truncated, too large or unconvertible;
            the message starts with the path.
    """
    return to_pil_rgb(Path(path), source=str(path))
