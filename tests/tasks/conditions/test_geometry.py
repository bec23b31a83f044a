"""Depth and surface-normal extractors from provided depth maps."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cm3leon.tasks.conditions import DepthExtractor, NormalsExtractor
from cm3leon.tasks.records import RecordError

IMAGE = Image.new("RGB", (12, 8))


def test_depth_near_is_bright_unknown_black() -> None:
    depth = np.full((8, 12), 4000.0)
    depth[2:5, 3:7] = 1000.0
    depth[7, 11] = 0.0
    out = np.asarray(DepthExtractor()(IMAGE, {"id": "d", "depth": depth}))[..., 0]
    assert out[3, 4] == 255 and 0 < out[0, 0] < out[3, 4] and out[7, 11] == 0
    flat = np.asarray(DepthExtractor()(IMAGE, {"id": "d", "depth": np.full((8, 12), 7.0)}))
    assert (flat == 128).all()


def test_normals_of_planes() -> None:
    cols = np.arange(12, dtype=float)
    ramp = np.broadcast_to(100.0 + 2.0 * cols, (8, 12)).copy()  # farther to the right
    out = np.asarray(NormalsExtractor(strength=0.5)(IMAGE, {"id": "n", "depth": ramp})).astype(int)
    inner = out[2:6, 2:10].reshape(-1, 3)
    expected = (np.array([1.0, 0.0, 1.0]) / np.sqrt(2) + 1) / 2 * 255  # slope 1: 45 degrees to the right
    assert np.abs(inner - expected).max() <= 1
    flat = np.asarray(NormalsExtractor()(IMAGE, {"id": "n", "depth": np.full((8, 12), 50.0)}))
    assert (flat[1:-1, 1:-1] == (128, 128, 255)).all()
    rows = np.arange(8, dtype=float)[:, None]
    up = np.broadcast_to(100.0 + 3.0 * rows, (8, 12)).copy()  # farther towards the bottom
    auto = np.asarray(NormalsExtractor()(IMAGE, {"id": "n", "depth": up})).astype(int)
    assert np.abs(auto[3, 5] - (128, 38, 218)).max() <= 2  # auto strength: a 45-degree slope, facing down


def test_unknown_depth_is_black_in_normals() -> None:
    depth = np.full((8, 12), 10.0)
    depth[4, 6] = 0.0
    out = np.asarray(NormalsExtractor()(IMAGE, {"id": "n", "depth": depth}))
    assert (out[3:6, 5:8] == 0).all() and (out[0, 0] == (128, 128, 255)).all()


@pytest.mark.parametrize("extractor", [DepthExtractor(), NormalsExtractor()])
def test_depth_errors_name_the_record(extractor) -> None:
    with pytest.raises(RecordError, match="record 'q' has no 'depth'"):
        extractor(IMAGE, {"id": "q"})
    with pytest.raises(RecordError, match=r"record 'q': depth is \(3, 3\), image is \(8, 12\)"):
        extractor(IMAGE, {"id": "q", "depth": np.ones((3, 3))})
    with pytest.raises(RecordError, match="finite"):
        extractor(IMAGE, {"id": "q", "depth": np.full((8, 12), -1.0)})
