"""EXIF orientation through core's one image loader (reliability row 18, the bad-EXIF case).

A camera JPEG stored landscape with ``Orientation = 6`` is a portrait photo: the folder
source must store it upright.  EXIF that Pillow cannot parse (truncated, garbage, a bad
offset, a tag with too many entries) is metadata, not pixels: the image loads as stored and
the loader logs Pillow's complaint *with the file's name* (Pillow's own warning names none).
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cm3leon.core.images import load_image
from cm3leon.core.sources import FolderSource

STORED = np.zeros((8, 16, 3), np.uint8)  # (H, W, 3) as stored: landscape, one bright corner
STORED[:4, :4] = 255  # top-left block


def jpeg(path: Path, exif: bytes) -> Path:
    Image.fromarray(STORED).save(path, "JPEG", exif=exif, quality=100)
    return path


def orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def one_tag(typ: int, count: int, value: bytes) -> bytes:
    """A little-endian TIFF block whose only IFD entry is the Orientation tag (raw fields)."""
    return (b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHI", 0x0112, typ, count)
            + value + struct.pack("<I", 0))  # fmt: skip


def test_rotated_exif_is_stored_upright_by_the_folder_source(tmp_path: Path) -> None:
    root = tmp_path / "pairs"
    root.mkdir()
    jpeg(root / "photo.jpg", orientation(6))  # 6: rotate 90 degrees clockwise to display
    (root / "photo.txt").write_text("a portrait", encoding="utf-8")
    [doc] = list(FolderSource(root))
    img = np.asarray(doc.images[0].pil(), dtype=np.int64)
    assert img.shape == (16, 8, 3)  # portrait
    assert img[:4, 4:].mean() > 240 and img[:4, :4].mean() < 15  # the bright corner moved to top-right
    assert np.asarray(load_image(jpeg(tmp_path / "plain.jpg", b""))).shape == (8, 16, 3)


CORRUPT = {
    "truncated": orientation(6)[:14],
    "bad-offset": b"Exif\x00\x00MM\x00*\xff\xff\xff\xff",
    "short-ifd": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 6,
    "dangling-value": one_tag(5, 1, struct.pack("<I", 9999)),  # RATIONAL pointing past the end
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_exif_keeps_the_pixels_and_logs_the_file(tmp_path: Path, name: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    path = jpeg(tmp_path / f"{name}.jpg", CORRUPT[name])
    with caplog.at_level(logging.WARNING, logger="cm3leon.images"):
        img = np.asarray(load_image(path), dtype=np.int64)
    assert img.shape == (8, 16, 3) and np.abs(img - STORED).max() <= 8  # as stored, not rotated
    assert any(str(path) in r.getMessage() for r in caplog.records), caplog.text


def test_an_orientation_tag_with_two_entries_still_rotates_and_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = jpeg(tmp_path / "two.jpg", one_tag(3, 2, struct.pack("<HH", 6, 3)))
    with caplog.at_level(logging.WARNING, logger="cm3leon.images"):
        img = np.asarray(load_image(path))
    assert img.shape == (16, 8, 3)  # Pillow uses the first entry
    assert any(str(path) in r.getMessage() and "too many entries" in r.getMessage() for r in caplog.records)
