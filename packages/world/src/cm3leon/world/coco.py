"""COCO-format pieces: polygons traced from masks, image entries and annotations.

Polygons are scikit-image's marching-squares outlines of the mask
(:func:`skimage.measure.find_contours` at level 0.5, foreground 4-connected, so pixels
touching only diagonally give separate polygons), simplified with
:func:`skimage.measure.approximate_polygon`, in COCO's continuous coordinates: pixel
``(col, row)`` covers ``[col, col + 1] x [row, row + 1]``, so its centre is
``(col + 0.5, row + 0.5)``.  Straight runs lie on pixel edges; a diagonal step cuts the
pixel corner.  Rasterised at pixel centres (as :func:`skimage.draw.polygon` does after
the half-pixel shift, and as the tasks' segmentation reader does) the polygons give back
the mask exactly; see :data:`SIMPLIFY_TOLERANCE`.

A mask with holes (polygons cannot express them) is written as uncompressed RLE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage import measure

from cm3leon.world.render import CATEGORIES, PERSON_CATEGORY_ID, Render, category_id
from cm3leon.world.scene import COCO_KEYPOINTS, COCO_SKELETON

__all__ = [
    "INFO",
    "LICENSES",
    "SIMPLIFY_TOLERANCE",
    "coco_annotations",
    "coco_image",
    "has_holes",
    "keypoint_categories",
    "mask_to_polygons",
    "mask_to_rle",
]

INFO = {
    "description": "cm3leon procedural world (COCO format)",
    "url": "",
    "version": "1.0",
    "year": 2024,
    "contributor": "cm3leon",
    "date_created": "2024/01/01",
}
LICENSES = [
    {
        "id": 1,
        "name": "CC0 1.0 (generated data)",
        "url": "https://creativecommons.org/publicdomain/zero/1.0/",
    }
]

#: Douglas-Peucker tolerance in pixels.  Marching-squares vertices sit halfway between a
#: foreground and a background pixel centre, so every pixel centre is at least
#: ``0.5 / sqrt(2) ~ 0.354`` px from the outline (the distance to a cut corner).  Dropping
#: only vertices within 0.25 px of the simplified chord cannot carry the outline across a
#: centre, so the polygons still rasterise to the exact mask while losing the collinear
#: vertices (about 43 -> 18 vertices per world object).
SIMPLIFY_TOLERANCE = 0.25


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer outlines of ``mask`` ``(H, W)`` as COCO polygons ``[x1, y1, x2, y2, ...]``.

    One polygon per 4-connected part, at least 3 points each.  Holes are not represented
    (their pixels fall inside the outline); :func:`coco_annotations` writes RLE instead
    when :func:`has_holes`.
    """
    filled = ~_outside(mask)  # (H + 2, W + 2): padded, so every outline closes
    polygons = []
    for contour in measure.find_contours(filled.astype(np.float64), 0.5, fully_connected="low"):
        # (N, 2) rows/cols in padded index space, closed (last == first).
        ring = measure.approximate_polygon(contour, SIMPLIFY_TOLERANCE)[:-1]
        if len(ring) < 3:
            continue
        xy = ring[:, ::-1] - 0.5  # padded index -> COCO: -1 for the pad, +0.5 to the centre
        polygons.append([float(v) for v in xy.ravel()])
    return polygons


def has_holes(mask: np.ndarray) -> bool:
    """Whether ``mask`` encloses background pixels."""
    return not bool(np.all(_outside(mask) | np.pad(np.asarray(mask, dtype=bool), 1)))


def _outside(mask: np.ndarray) -> np.ndarray:
    """``(H + 2, W + 2)`` bool: the background of the one-pixel-padded mask that reaches
    the border, 8-connected (the dual of 4-connected foreground: background leaking
    between two diagonal pixels is outside, as the outlines treat it)."""
    background = ~np.pad(np.asarray(mask, dtype=bool), 1)
    labels = measure.label(background, connectivity=2)
    return labels == labels[0, 0]


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE ``{"size": [H, W], "counts": [...]}`` (column-major runs,
    starting with a run of zeros).  scikit-image has no RLE; this is plain numpy."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def coco_image(image_id: int, file_name: str, size: int) -> dict[str, Any]:
    """A COCO ``images`` entry."""
    return {
        "id": image_id,
        "file_name": file_name,
        "height": size,
        "width": size,
        "license": 1,
        "coco_url": "",
        "flickr_url": "",
        "date_captured": "2024-01-01 00:00:00",
    }


def keypoint_categories() -> list[dict[str, Any]]:
    """The ``categories`` list of a COCO person_keypoints file."""
    return [
        {
            "id": PERSON_CATEGORY_ID,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(COCO_KEYPOINTS),
            "skeleton": [list(p) for p in COCO_SKELETON],
        }
    ]


def _annotation(ann_id: int, image_id: int, cid: int, mask: np.ndarray) -> dict[str, Any] | None:
    """Polygons when they are exact; uncompressed RLE for masks with holes (a stick figure's
    arm touching its body encloses wall pixels).  ``None`` for an empty mask."""
    if not mask.any():
        return None
    # One region over all parts: an occluded object may be split in pieces.
    (region,) = measure.regionprops(np.asarray(mask, dtype=np.uint8))
    r0, c0, r1, c1 = region.bbox  # half-open pixel rows / cols
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cid,
        "segmentation": mask_to_rle(mask) if has_holes(mask) else mask_to_polygons(mask),
        "area": float(region.area),
        "bbox": [float(c0), float(r0), float(c1 - c0), float(r1 - r0)],
        "iscrowd": 0,
    }


def coco_annotations(
    render: Render, image_id: int, first_id: int
) -> tuple[list[dict], dict | None]:
    """Instance annotations of one render, and the person's keypoint annotation.

    Returns:
        ``(instances, person)``: every visible object and the person (polygons, bbox,
        area, category), and the person annotation with COCO ``keypoints`` /
        ``num_keypoints`` (``None`` without a figure).  Ids count up from ``first_id``.
    """
    scene = render.scene
    out, next_id = [], first_id
    for k, obj in enumerate(scene.objects):
        ann = _annotation(next_id, image_id, category_id(obj.colour, obj.shape), render.mask(k))
        if ann is not None:
            out.append(ann)
            next_id += 1
    person = None
    if scene.figure is not None and render.keypoints is not None:
        ann = _annotation(next_id, image_id, PERSON_CATEGORY_ID, render.mask(len(scene.objects)))
        if ann is not None:
            out.append(ann)
            kps: list[float] = []
            for x, y, v in render.keypoints.tolist():
                kps += [round(x, 2), round(y, 2), int(v)] if v > 0 else [0, 0, 0]
            person = dict(ann, keypoints=kps, num_keypoints=int((render.keypoints[:, 2] > 0).sum()))
    return out, person


assert CATEGORIES[0]["id"] == PERSON_CATEGORY_ID
