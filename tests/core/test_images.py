"""Core's one image loader, as the data sources use it (issue 20, item 2).

Each case failed through ``cm3leon data prepare --source folder`` before the folder
source used the hardened loader: a PNG header claiming 30000x30000 killed the command even
with ``--skip-bad``; a 16-bit gradient was stored almost white; a fully transparent RGBA
image kept its hidden colour.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cm3leon.core.cli import cli
from cm3leon.core.images import ImageInputError, load_image, to_pil_rgb
from cm3leon.core.shards import iter_documents
from cm3leon.core.sources import FolderSource


def bomb_png(path: Path, side: int = 30_000) -> Path:
    """A real 1x1 PNG whose IHDR claims ``side`` x ``side`` (CRC fixed, so only the size is a lie)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", side, side)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def gradient16(path: Path) -> Path:
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (16, 1))).save(path)  # mode I;16 PNG
    return path


def transparent_rgba(path: Path) -> Path:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200  # a hidden red under alpha 0
    Image.fromarray(rgba).save(path)
    return path


def test_decompression_bomb_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = bomb_png(tmp_path / "bomb.png")
    with pytest.raises(ImageInputError, match=rf"^{path}: image too large"):
        load_image(path)


def test_16_bit_gradient_keeps_its_mid_grey(tmp_path: Path) -> None:
    img = np.asarray(load_image(gradient16(tmp_path / "g16.png")), dtype=np.float64)
    assert img.shape == (16, 64, 3)
    assert img.mean() == pytest.approx(127.5, abs=0.6)
    assert img[:, 0].max() == 0 and img[:, -1].min() == 255


def test_fully_transparent_image_is_white_not_its_hidden_colour(tmp_path: Path) -> None:
    img = np.asarray(load_image(transparent_rgba(tmp_path / "clear.png")))
    assert (img == 255).all()


def test_in_memory_inputs_are_named_by_position() -> None:
    with pytest.raises(ImageInputError, match=r"^image\[3\] \(ndarray\): array shape"):
        to_pil_rgb(np.zeros((2, 2, 5), np.uint8), source="image[3] (ndarray)")


def test_folder_source_and_prepare_use_the_hardened_loader(tmp_path: Path) -> None:
    root = tmp_path / "pairs"
    root.mkdir()
    bomb = bomb_png(root / "a_bomb.png")
    gradient16(root / "b_grad.png")
    transparent_rgba(root / "c_clear.png")
    for stem in ("a_bomb", "b_grad", "c_clear"):
        (root / f"{stem}.txt").write_text(f"caption {stem}\n", encoding="utf-8")

    with pytest.raises(ValueError, match=rf"{bomb}: image too large"):
        list(FolderSource(root))

    out = tmp_path / "docs"
    result = CliRunner().invoke(cli, ["data", "prepare", "--source", "folder", str(root), "--out", str(out), "--skip-bad"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["written"] == 2 and report["skipped"] == 1
    assert str(bomb) in report["skipped_items"][0][0] and "image too large" in report["skipped_items"][0][1]
    docs = list(iter_documents(out))
    grad, clear = (np.asarray(d.images[0].pil(), dtype=np.float64) for d in docs)
    assert grad.mean() == pytest.approx(127.5, abs=0.6)
    assert (clear == 255).all()
