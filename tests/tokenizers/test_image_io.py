"""Image input: every mode to RGB, Chameleon preprocessing, bad files named, lenient batches."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cm3leon.tokenizers.image_io import (
    ImageBatchError,
    ImageInputError,
    Preprocess,
    load_images,
    preprocess_image,
    to_pil_rgb,
    to_pixels,
)
from cm3leon.tokenizers.image_tokenizer import VQGANTokenizer, pixels_to_pil


def png_rgb16(arr: np.ndarray) -> bytes:
    """Hand-written 16-bit-per-channel RGB PNG (colour type 2, bit depth 16)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def save(img: Image.Image, path: Path, fmt: str = "PNG", **kw) -> Path:
    img.save(path, format=fmt, **kw)
    return path


# ------------------------------------------------------------------ modes -> RGB
def test_rgba_is_blended_onto_white_like_chameleon() -> None:
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 200  # red channel
    arr[..., 3] = 64  # mostly transparent
    out = np.asarray(to_pil_rgb(Image.fromarray(arr)))
    alpha = 64 / 255.0
    expected = ((1 - alpha) * 255 + alpha * np.array([200, 0, 0])).astype(np.uint8)
    assert out.shape == (4, 4, 3)
    assert (out == expected).all()


def test_opaque_rgba_keeps_colours() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    arr[..., 3] = 255
    assert (np.asarray(to_pil_rgb(Image.fromarray(arr))) == arr[..., :3]).all()


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "YCbCr", "LA", "P", "PA", "I", "F", "I;16", "HSV", "RGBX"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    base = Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    img = base.convert("L").convert(mode) if mode in ("I", "F", "I;16", "LA") else base.convert(mode)
    out = to_pil_rgb(img, source="x.png")
    assert out.mode == "RGB" and out.size == (8, 8)


def test_palette_with_transparency_uses_white(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    path = save(img, tmp_path / "p.png", transparency=0)
    assert (np.asarray(to_pil_rgb(path)) == 255).all()


def test_16bit_grayscale_png_is_rescaled(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 128], [65535, 257 * 10]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "g16.png")
    out = np.asarray(to_pil_rgb(path))
    assert out[..., 0].tolist() == [[0, 128], [255, 10]]
    assert (out[..., 0] == out[..., 2]).all()


def test_16bit_rgb_png(tmp_path: Path) -> None:
    arr = np.zeros((3, 5, 3), np.uint16)
    arr[..., 1] = 65535
    arr[0, 0] = (257 * 40, 257 * 50, 257 * 60)
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_rgb16(arr))
    out = np.asarray(to_pil_rgb(path))
    assert out.shape == (3, 5, 3)
    assert out[0, 0].tolist() == [40, 50, 60]
    assert (out[1:, :, 1] == 255).all()


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((4, 4), 7, np.uint8), 7),
        (np.full((4, 4, 1), 9, np.uint8), 9),
        (np.full((4, 4, 3), 257 * 33, np.uint16), 33),
        (np.full((4, 4, 3), 0.5, np.float32), 128),
        (np.ones((4, 4), bool), 255),
    ],
)
def test_numpy_inputs(array: np.ndarray, expected: int) -> None:
    out = np.asarray(to_pil_rgb(array))
    assert out.shape == (4, 4, 3) and (out == expected).all()


def test_tensor_inputs_chw() -> None:
    t = torch.zeros(3, 4, 6)
    t[0] = 1.0
    out = np.asarray(to_pil_rgb(t))
    assert out.shape == (4, 6, 3) and (out[..., 0] == 255).all() and (out[..., 1] == 0).all()
    u8 = torch.full((1, 4, 4), 12, dtype=torch.uint8)
    assert (np.asarray(to_pil_rgb(u8)) == 12).all()


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4, 4, 5), np.uint8), r"array shape \(4, 4, 5\)"),
        (np.zeros((0, 4, 3), np.uint8), "zero size"),
        (np.full((4, 4, 3), 2.0, np.float32), r"must be in \[0, 1\]"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.zeros((4, 4, 3), np.int64), "unsupported pixel dtype"),
    ],
)
def test_bad_arrays_are_rejected_with_the_name(array: np.ndarray, match: str) -> None:
    with pytest.raises(ImageInputError, match=rf"^my-image: .*{match}"):
        to_pil_rgb(array, source="my-image")


def test_bad_tensor_shape() -> None:
    with pytest.raises(ImageInputError, match=r"img7: tensor shape \(5, 4, 4\)"):
        to_pil_rgb(torch.zeros(5, 4, 4), source="img7")


# ------------------------------------------------------------------ bad files
def _good_png(tmp_path: Path, name: str = "good.png") -> Path:
    return save(Image.fromarray(np.full((16, 16, 3), 90, np.uint8)), tmp_path / name)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageInputError, match=r"empty\.png: empty file \(0 bytes\)"):
        to_pil_rgb(path, source=str(path))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageInputError, match=r"nope\.jpg: file not found"):
        to_pil_rgb(path, source=str(path))


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not a png")
    with pytest.raises(ImageInputError, match=r"notes\.png: not a recognised image format"):
        to_pil_rgb(path, source=str(path))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageInputError, match=rf"cut\.{fmt.lower()}: corrupt or truncated"):
        to_pil_rgb(path, source=str(path))


def test_corrupt_bytes_in_middle(tmp_path: Path) -> None:
    data = bytearray(_good_png(tmp_path).read_bytes())
    data[40:60] = b"\xff" * 20  # inside IDAT: zlib / CRC failure
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageInputError, match=r"corrupt\.png: "):
        to_pil_rgb(path, source=str(path))


# ------------------------------------------------------------------ preprocessing
def test_chameleon_resize_and_crop_matches_reference_algorithm() -> None:
    """Shortest side -> size with Lanczos, centre crop: Chameleon's ``_vqgan_input_from``."""
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    size = 16
    scale = size / min(img.size)
    ref = img.resize((round(scale * img.width), round(scale * img.height)), Image.Resampling.LANCZOS)
    x0, y0 = (ref.width - size) // 2, (ref.height - size) // 2
    ref = ref.crop((x0, y0, x0 + size, y0 + size))
    ref_pixels = torch.from_numpy(np.asarray(ref) / 255.0 * 2 - 1).permute(2, 0, 1).float()
    ours = to_pixels(preprocess_image(img, Preprocess(size)))
    assert ours.shape == (3, 16, 16)
    assert torch.allclose(ours, ref_pixels, atol=1e-6)


def test_pixels_round_trip_exactly() -> None:
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    pixels = to_pixels(Image.fromarray(arr))
    assert pixels.min() == -1.0 and pixels.max() == 1.0
    assert (np.asarray(pixels_to_pil(pixels)) == arr).all()


def test_upscales_small_images_and_rejects_wrong_size_in_exact_mode() -> None:
    small = Image.fromarray(np.zeros((5, 9, 3), np.uint8))
    assert preprocess_image(small, Preprocess(32)).size == (32, 32)
    with pytest.raises(ImageInputError, match=r"pic: image is 9x5, expected 32x32"):
        preprocess_image(small, Preprocess(32, resize="none"), source="pic")


def test_preprocess_validates_settings() -> None:
    with pytest.raises(ValueError, match="size"):
        Preprocess(0)
    with pytest.raises(ValueError, match="resize"):
        Preprocess(8, resize="stretch")  # type: ignore[arg-type]


# ------------------------------------------------------------------ batches
def test_batch_with_bad_images_reports_them_and_keeps_the_others(tmp_path: Path) -> None:
    good = _good_png(tmp_path)
    empty = tmp_path / "zero.png"
    empty.write_bytes(b"")
    cmyk = save(Image.new("CMYK", (20, 12), (0, 255, 0, 0)), tmp_path / "cmyk.jpg", "JPEG")
    items = [good, str(empty), np.zeros((3, 3, 7), np.uint8), cmyk, Image.new("LA", (8, 8))]
    pixels, ok, failures = load_images(items, Preprocess(8), strict=False)
    assert ok == [0, 3, 4] and pixels.shape == (3, 3, 8, 8)
    assert [(f.index, f.source) for f in failures] == [(1, str(empty)), (2, "image[2] (ndarray)")]
    assert "empty file" in failures[0].reason and "array shape" in failures[1].reason
    with pytest.raises(ImageBatchError) as info:
        load_images(items, Preprocess(8), strict=True)
    message = str(info.value)
    assert "2 of 5 images" in message and str(empty) in message and "image[2]" in message
    assert [f.index for f in info.value.failures] == [1, 2]


def test_tokenizer_lenient_and_strict_batches(tmp_path: Path) -> None:
    tok = VQGANTokenizer.from_preset("small_32", seed=0)
    good = _good_png(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    result = tok.encode_batch([good, bad, good])
    assert result.indices == [0, 2] and result.codes.shape == (2, tok.num_tokens)
    assert torch.equal(result.codes[0], result.codes[1])
    assert [f.source for f in result.failures] == [str(bad)]
    with pytest.raises(ImageBatchError, match=r"bad\.png"):
        tok.encode([good, bad])
