"""Eval reads image files through core's hardened loader (:mod:`cm3leon.core.images`):
white behind transparency, 16-bit rescaled to 8 bits, corrupt files named -- in the FID /
CLIP-score image sources (:func:`cm3leon.eval.formats.load_image_tensor`) and the
nearest-caption baseline (:func:`cm3leon.eval.baselines.downsampled_pixels`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cm3leon.eval.baselines import downsampled_pixels
from cm3leon.eval.formats import FormatError, load_image_tensor


def _pixels_tensor(path: Path) -> np.ndarray:
    return load_image_tensor(path).permute(1, 2, 0).numpy()  # (H, W, 3) in [0, 1]


def _pixels_baseline(path: Path) -> np.ndarray:
    return downsampled_pixels([path], 4).reshape(4, 4, 3)  # 4x4 images: box filter is identity


READERS: list[Callable[[Path], np.ndarray]] = [_pixels_tensor, _pixels_baseline]
IDS = ["load_image_tensor", "downsampled_pixels"]


@pytest.mark.parametrize("read", READERS, ids=IDS)
def test_transparent_pixels_are_white_not_their_hidden_colour(tmp_path: Path, read) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere, but fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    np.testing.assert_array_equal(read(tmp_path / "clear.png"), np.ones((4, 4, 3), np.float32))


@pytest.mark.parametrize("read", READERS, ids=IDS)
def test_sixteen_bit_grey_keeps_its_level(tmp_path: Path, read) -> None:
    Image.fromarray(np.full((4, 4), 128 * 257, np.uint16)).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")  # stored as 16 bits
    np.testing.assert_allclose(read(tmp_path / "grey16.png"), 128 / 255, atol=1e-6)


@pytest.mark.parametrize("read", READERS, ids=IDS)
def test_truncated_and_empty_files_are_named(tmp_path: Path, read) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # half the pixel data is gone
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(FormatError, match=r"cut\.png: cannot read image: corrupt or truncated"):
        read(tmp_path / "cut.png")
    with pytest.raises(FormatError, match=r"empty\.png: cannot read image: empty file"):
        read(tmp_path / "empty.png")
