"""Sample grids and the record encoding used for cross-rank gathers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cm3leon.eval.grid import image_grid, save_grid
from cm3leon.eval.metrics.records import decode_records, dedupe_records, encode_records
from tests.eval._helpers import solid


def test_grid_layout_highlight_and_inputs(tmp_path) -> None:
    images = [
        solid((255, 0, 0), 10),
        np.full((10, 10, 3), 128, dtype=np.uint8),
        torch.zeros(3, 5, 5),
    ]
    grid = image_grid(images, ncols=2, pad=4, highlight=[1])
    assert grid.size == (2 * 14 + 4, 2 * 14 + 4)
    arr = np.asarray(grid)
    assert tuple(arr[4 + 2, 4 + 2]) == (255, 0, 0)  # first cell: red
    assert tuple(arr[4 + 2, 18 + 2]) == (128, 128, 128)  # second cell: grey
    assert tuple(arr[3, 18 + 3]) == (220, 0, 0)  # outline of the highlighted cell
    assert tuple(arr[18 + 2, 4 + 2]) == (0, 0, 0)  # third cell: black, upscaled 5 -> 10
    path = save_grid(tmp_path / "g.png", images, ncols=3, captions=["red", "grey", "black"])
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        image_grid(images, ncols=2, captions=["a", "b"])


def test_records_round_trip_through_a_float_gather() -> None:
    rows = [{"c": "naïve café ☕", "r": ["x\u0000y"], "id": 3}, {"c": "", "r": [], "id": "a"}]
    tensor = encode_records(rows)
    assert tensor.dtype == torch.uint8 and int(tensor[-1]) == 0
    gathered = torch.cat([tensor.float(), torch.tensor([]), encode_records(rows[:1]).float()])
    assert decode_records(gathered) == rows + rows[:1]
    assert dedupe_records(decode_records(gathered), "id") == rows
    assert decode_records([]) == []
