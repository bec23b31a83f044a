"""Segmentation-map conditions: from annotations when present, else superpixels.

With annotations (``record["objects"]`` carrying COCO ``segmentation`` polygons or
RLE), each object is painted in a stable colour of its class (``category_id`` or
``label``), larger objects first so small ones stay visible, on a black background,
like ControlNet's class-coloured seg maps.  Without annotations the image is split
into SLIC (or Felzenszwalb) superpixels, each painted with its mean colour.

COCO's run-length encoding is decoded here (both the uncompressed ``counts`` list and
the compressed string form), so no pycocotools build is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cm3leon.tasks.conditions.common import as_rgb_array, label_colour
from cm3leon.tasks.records import RecordError

__all__ = ["SegmentationExtractor", "annotation_mask", "rle_decode", "rle_string_to_counts"]


def rle_string_to_counts(text: str) -> list[int]:
    """Decode COCO's compressed RLE string into run lengths.

    Each run is a little-endian sequence of 5-bit groups stored as ``chr(48 + c)``;
    bit 0x20 of a character says another group follows, bit 0x10 of the last group is
    the sign, and from the third run on a value is a delta to the run two before.
    """
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise ValueError("truncated RLE string")
            c = ord(text[pos]) - 48
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE ``{"size": [H, W], "counts": list | str}`` -> bool mask ``(H, W)``.

    Runs alternate background/foreground starting with background and run down the
    columns (Fortran order).
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (bytes, str)):
        counts = rle_string_to_counts(counts.decode("ascii") if isinstance(counts, bytes) else counts)
    flat = np.zeros(h * w, dtype=bool)
    pos = 0
    for i, run in enumerate(counts):
        if run < 0 or pos + run > h * w:
            raise ValueError(f"RLE run {i} ({run}) overflows a {h}x{w} mask")
        if i % 2:
            flat[pos : pos + run] = True
        pos += run
    return flat.reshape((w, h)).T


def annotation_mask(segmentation: Any, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a COCO ``segmentation`` (polygons or RLE) to a bool mask of ``shape``."""
    from skimage.draw import polygon

    if isinstance(segmentation, Mapping):
        mask = rle_decode(segmentation)
        if mask.shape != shape:
            raise ValueError(f"RLE size {mask.shape} does not match the image {shape}")
        return mask
    mask = np.zeros(shape, dtype=bool)
    for poly in segmentation:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)  # (N, 2) as x, y
        # Pixel (r, c) covers [c, c+1) x [r, r+1); sample polygons at pixel centres.
        rr, cc = polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=shape)
        mask[rr, cc] = True
    return mask


@dataclass(frozen=True)
class SegmentationExtractor:
    """Class-coloured segmentation map (annotations) or mean-coloured superpixels.

    Args:
        method: superpixel algorithm when the record has no annotations.
        n_segments / compactness: SLIC options.
        scale: Felzenszwalb scale.
    """

    method: Literal["slic", "felzenszwalb"] = "slic"
    n_segments: int = 64
    compactness: float = 10.0
    scale: float = 50.0

    def __call__(self, image: Any, record: Mapping[str, Any] | None = None) -> Any:
        from PIL import Image

        rgb = as_rgb_array(image)
        objects = (record or {}).get("objects") or []
        annotated = [o for o in objects if isinstance(o, Mapping) and o.get("segmentation")]
        out = self._paint(annotated, rgb.shape[:2], record) if annotated else self._superpixels(rgb)
        return Image.fromarray(out)

    def _paint(self, objects: Sequence[Mapping[str, Any]], shape: tuple[int, int], record: Any) -> np.ndarray:
        masks = []
        for i, obj in enumerate(objects):
            try:
                mask = annotation_mask(obj["segmentation"], shape)
            except (ValueError, TypeError, KeyError) as err:
                raise RecordError(
                    f"condition extractor 'segmentation': record {record.get('id', '?')!r}: "
                    f"objects[{i}].segmentation: {err}"
                ) from None
            masks.append((int(mask.sum()), i, mask, obj.get("category_id", obj.get("label", i))))
        out = np.zeros((*shape, 3), dtype=np.uint8)
        for _, _, mask, key in sorted(masks, key=lambda m: (-m[0], m[1])):
            out[mask] = label_colour(key)
        return out

    def _superpixels(self, rgb: np.ndarray) -> np.ndarray:
        from skimage.color import label2rgb
        from skimage.segmentation import felzenszwalb, slic

        if self.method == "slic":
            labels = slic(rgb, n_segments=self.n_segments, compactness=self.compactness, start_label=0)
        elif self.method == "felzenszwalb":
            labels = felzenszwalb(rgb, scale=self.scale, sigma=0.8, min_size=4)
        else:
            raise ValueError(f"SegmentationExtractor.method must be slic or felzenszwalb, got {self.method!r}")
        avg = label2rgb(labels, rgb, kind="avg", bg_label=-1)
        return np.clip(np.round(avg), 0, 255).astype(np.uint8)
