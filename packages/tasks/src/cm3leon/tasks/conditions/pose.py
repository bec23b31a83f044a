"""Pose conditions: OpenPose-style skeletons drawn from COCO keypoints.

``record["keypoints"]`` holds one COCO keypoint list per person
(``[x1, y1, v1, ...]``, ``v`` = 0 unlabelled, 1 occluded, 2 visible);
``record["skeleton"]`` gives the limbs as 1-based keypoint pairs (COCO's
``categories[].skeleton``), defaulting to COCO's person skeleton.  Each limb with
both ends labelled is drawn as a thick line in its own colour (hues spread around
the colour wheel, like OpenPose's renderer) and each labelled joint as a dot, on a
black canvas the size of the image.  No pose estimator runs here: the keypoints come
from annotations (COCO ``person_keypoints_*.json``) or the procedural world.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.tasks.conditions.common import as_rgb_array, record_field
from cm3leon.tasks.records import RecordError
from cm3leon.tasks.synthetic import COCO_SKELETON

__all__ = ["PoseExtractor", "parse_keypoints"]


def parse_keypoints(person: Sequence[float], where: str) -> np.ndarray:
    """``[x1, y1, v1, ...]`` -> ``(K, 3)`` float array; raises naming ``where``."""
    arr = np.asarray(person, dtype=np.float64) if isinstance(person, (list, tuple, np.ndarray)) else None
    if arr is None or arr.ndim != 1 or arr.size == 0 or arr.size % 3 or not np.isfinite(arr).all():
        raise RecordError(f"{where}: keypoints must be a flat list of (x, y, v) triples")
    return arr.reshape(-1, 3)


@dataclass(frozen=True)
class PoseExtractor:
    """Draw every person's skeleton.

    Args:
        width: limb thickness in pixels (``0`` = about 1/48 of the shorter side, at least 1).
    """

    width: int = 0

    def __call__(self, image: Any, record: Mapping[str, Any] | None = None) -> Any:
        from PIL import Image
        from skimage.draw import disk, line
        from skimage.morphology import dilation
        from skimage.morphology import disk as disk_footprint

        h, w = as_rgb_array(image).shape[:2]
        people = record_field(record, "keypoints", "pose")
        skeleton = record.get("skeleton") or COCO_SKELETON  # type: ignore[union-attr]
        width = self.width or max(1, round(min(h, w) / 48))
        canvas = np.zeros((h, w, 3), dtype=np.uint8)
        rid = record.get("id", "?")  # type: ignore[union-attr]
        if not isinstance(people, (list, tuple)):
            raise RecordError(f"condition extractor 'pose': record {rid!r}: keypoints must be a list of people")
        for p, person in enumerate(people):
            kps = parse_keypoints(person, f"condition extractor 'pose': record {rid!r}: person {p}")
            for limb, (a, b) in enumerate(skeleton):
                if not (1 <= a <= len(kps) and 1 <= b <= len(kps)):
                    raise RecordError(f"condition extractor 'pose': record {rid!r}: limb {(a, b)} "
                                      f"indexes {len(kps)} keypoints")  # fmt: skip
                (xa, ya, va), (xb, yb, vb) = kps[a - 1], kps[b - 1]
                if va <= 0 or vb <= 0:
                    continue
                mask = np.zeros((h, w), dtype=bool)
                rr, cc = line(int(round(ya)), int(round(xa)), int(round(yb)), int(round(xb)))
                keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
                mask[rr[keep], cc[keep]] = True
                if width > 1:
                    mask = dilation(mask, disk_footprint(width // 2, dtype=bool))
                canvas[mask] = _limb_colour(limb, len(skeleton))
            for x, y, v in kps:
                if v > 0:
                    rr, cc = disk((y, x), max(1.0, width * 0.75), shape=(h, w))
                    canvas[rr, cc] = (255, 255, 255)
        return Image.fromarray(canvas)


def _limb_colour(index: int, count: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(index / max(count, 1), 1.0, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)
