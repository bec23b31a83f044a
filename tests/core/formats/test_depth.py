"""cm3leon.core.formats.depth: 16-bit depth PNGs beside a COCO captions file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.formats.common import EntryError
from cm3leon.core.formats.depth import read_depth_png, write_depth_png


def test_round_trip(tmp_path: Path) -> None:
    depth = (np.arange(12, dtype=np.uint16) * 1000).reshape(3, 4)
    write_depth_png(tmp_path / "depth" / "000000000001.png", depth)
    back = read_depth_png(tmp_path / "depth" / "000000000001.png", (4, 3), "record 1")
    assert back.dtype == np.float32 and (back == depth).all()
    with pytest.raises(ValueError, match="uint16"):
        write_depth_png(tmp_path / "x.png", depth.astype(np.float32))


def test_missing_or_mismatched_names_the_file_and_entry(tmp_path: Path) -> None:
    with pytest.raises(EntryError, match=r"captions\.json: record 1: depth file .*nope\.png not found") as info:
        read_depth_png(tmp_path / "nope.png", (4, 3), "captions.json: record 1")
    assert info.value.reason == "missing_depth"
    write_depth_png(tmp_path / "d.png", np.zeros((3, 3), np.uint16))
    with pytest.raises(EntryError, match=r"d\.png is 3x3, image is 4x3") as info:
        read_depth_png(tmp_path / "d.png", (4, 3), "record 1")
    assert info.value.reason == "corrupt_depth"
