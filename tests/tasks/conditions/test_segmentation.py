"""Segmentation maps from COCO annotations (polygons, RLE) and the superpixel fallback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cm3leon.tasks.conditions import SegmentationExtractor
from cm3leon.tasks.conditions.common import label_colour
from cm3leon.tasks.conditions.segmentation import annotation_mask, rle_decode, rle_string_to_counts
from cm3leon.tasks.records import RecordError


def _rle_encode_string(counts: list[int]) -> str:
    """COCO's compressed RLE string (the inverse of the reader's decoder), written from the spec."""
    out = []
    for i, value in enumerate(counts):
        x = value - counts[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _counts(mask: np.ndarray) -> list[int]:
    flat = mask.T.ravel()  # column-major, as COCO
    counts, current, run = [], False, 0
    for v in flat:
        if bool(v) != current:
            counts.append(run)
            current, run = bool(v), 0
        run += 1
    counts.append(run)
    return counts


def test_rle_round_trip_uncompressed_and_compressed() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((13, 17), bool)
    mask[2:9, 3:12] = True
    mask[rng.random(mask.shape) < 0.1] ^= True
    counts = _counts(mask)
    assert np.array_equal(rle_decode({"size": [13, 17], "counts": counts}), mask)
    text = _rle_encode_string(counts)
    assert rle_string_to_counts(text) == counts
    assert np.array_equal(rle_decode({"size": [13, 17], "counts": text}), mask)
    with pytest.raises(ValueError, match="overflows"):
        rle_decode({"size": [2, 2], "counts": [1, 9]})


def test_polygon_rasterises_pixel_exactly() -> None:
    mask = annotation_mask([[2, 3, 7, 3, 7, 5, 2, 5]], (8, 10))
    expected = np.zeros((8, 10), bool)
    expected[3:5, 2:7] = True
    assert np.array_equal(mask, expected)


def test_annotations_coloured_by_class_largest_first() -> None:
    image = Image.new("RGB", (16, 16), (128, 128, 128))
    record = {"id": "r", "objects": [
        {"label": "cup", "category_id": 1, "segmentation": [[4, 4, 8, 4, 8, 8, 4, 8]]},
        {"label": "table", "category_id": 2, "segmentation": [[0, 0, 16, 0, 16, 12, 0, 12]]},
        {"label": "cup", "category_id": 1, "segmentation": {"size": [16, 16], "counts": [16 * 14, 2, 14]}},
    ]}  # fmt: skip
    out = np.asarray(SegmentationExtractor()(image, record))
    assert tuple(out[5, 5]) == label_colour(1)  # the small cup stays on top of the table
    assert tuple(out[1, 1]) == label_colour(2) and tuple(out[0, 14]) == label_colour(1)
    assert tuple(out[15, 1]) == (0, 0, 0) and label_colour(1) != label_colour(2)


def test_bad_annotation_names_record_and_object() -> None:
    image = Image.new("RGB", (8, 8))
    bad = {"id": "r7", "objects": [{"label": "x", "segmentation": {"size": [4, 4], "counts": [16]}}]}
    with pytest.raises(RecordError, match=r"record 'r7': objects\[0\]\.segmentation"):
        SegmentationExtractor()(image, bad)


@pytest.mark.parametrize("method", ["slic", "felzenszwalb"])
def test_superpixels_coloured_by_mean(method: str) -> None:
    rng = np.random.default_rng(0)
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[:16, :16], arr[:16, 16:], arr[16:, :16], arr[16:, 16:] = (200, 40, 40), (40, 200, 40), (40, 40, 200), (90, 90, 90)
    arr = (arr + rng.integers(0, 20, arr.shape)).astype(np.uint8)
    image = Image.fromarray(arr)
    out = np.asarray(SegmentationExtractor(method=method, n_segments=16)(image, {"id": "r"}))
    colours = np.unique(out.reshape(-1, 3), axis=0)
    assert 4 <= len(colours) <= 64
    # Each region's colour is the mean of the pixels it covers.
    for colour in colours[:5]:
        region = (out == colour).all(axis=-1)
        assert np.abs(arr[region].mean(axis=0) - colour).max() <= 1.0
