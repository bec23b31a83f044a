"""COCO-format pieces: polygons traced from masks, image entries and annotations.

Polygons follow COCO's continuous coordinates: pixel ``(col, row)`` covers the unit
square ``[col, col + 1] x [row, row + 1]``, and each polygon is the exact outline of a
4-connected part of the mask, traced along pixel edges (collinear vertices removed).
A mask with holes (polygons cannot express them) is written as uncompressed RLE.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cm3leon.world.render import CATEGORIES, PERSON_CATEGORY_ID, Render, category_id
from cm3leon.world.scene import COCO_KEYPOINTS, COCO_SKELETON

__all__ = [
    "INFO",
    "LICENSES",
    "coco_annotations",
    "coco_image",
    "keypoint_categories",
    "mask_to_polygons",
    "mask_to_rle",
    "polygon_area",
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

# (drow, dcol) steps for the four edge directions: right, down, left, up.
_STEP = {0: (0, 1), 1: (1, 0), 2: (0, -1), 3: (-1, 0)}


def polygon_area(poly: list[float]) -> float:
    """Signed shoelace area of a flat ``[x1, y1, x2, y2, ...]`` polygon (positive = clockwise on screen)."""
    xs, ys = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return 0.5 * float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer outlines of ``mask`` ``(H, W)`` as COCO polygons (holes are not represented)."""
    return _trace(mask)[0]


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE ``{"size": [H, W], "counts": [...]}`` (column-major runs,
    starting with a run of zeros)."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _trace(mask: np.ndarray) -> tuple[list[list[float]], int]:
    """``(outer outlines, number of holes)`` of ``mask``.

    Each boundary edge is directed so the mask lies on its right; edges are chained into
    loops, turning right first at vertices shared by diagonal pixels (so diagonally
    touching pixels give separate polygons, i.e. 4-connected parts).
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    edges: dict[tuple[int, int], list[tuple[tuple[int, int], int]]] = {}

    def add(start: tuple[int, int], direction: int) -> None:
        dr, dc = _STEP[direction]
        edges.setdefault(start, []).append(((start[0] + dr, start[1] + dc), direction))

    rows, cols = np.nonzero(m)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        y, x = r - 1, c - 1  # vertex (row, col) coordinates in the unpadded image
        if not m[r - 1, c]:
            add((y, x), 0)  # top edge, going right
        if not m[r, c + 1]:
            add((y, x + 1), 1)  # right edge, going down
        if not m[r + 1, c]:
            add((y + 1, x + 1), 2)  # bottom edge, going left
        if not m[r, c - 1]:
            add((y + 1, x), 3)  # left edge, going up
    polygons, holes = [], 0
    while edges:
        start = next(iter(edges))
        vertex, direction, first = start, None, None
        loop: list[tuple[int, int]] = []
        while True:
            outs = edges.get(vertex)
            if not outs:
                break
            if direction is None or len(outs) == 1:
                k = 0
            else:  # prefer the right turn, then straight, then left
                prefs = [(direction + 1) % 4, direction, (direction + 3) % 4]
                k = min(
                    range(len(outs)),
                    key=lambda i: prefs.index(outs[i][1]) if outs[i][1] in prefs else 9,
                )
            end, d = outs.pop(k)
            if not outs:
                del edges[vertex]
            if d != direction:
                loop.append(vertex)
            first = d if first is None else first
            vertex, direction = end, d
            if vertex == start:
                break
        if loop and direction == first:
            loop = loop[1:]  # the start vertex lies in the middle of a straight run
        if len(loop) >= 3:
            flat = [float(v) for row, col in loop for v in (col, row)]
            if (
                polygon_area(flat) > 0
            ):  # outer outline (clockwise on screen); holes run the other way
                polygons.append(flat)
            else:
                holes += 1
    return polygons, holes


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
    arm touching its body encloses wall pixels)."""
    polygons, holes = _trace(mask)
    if not polygons:
        return None
    ys, xs = np.nonzero(mask)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cid,
        "segmentation": polygons if holes == 0 else mask_to_rle(mask),
        "area": float(mask.sum()),
        "bbox": [
            float(xs.min()),
            float(ys.min()),
            float(xs.max() + 1 - xs.min()),
            float(ys.max() + 1 - ys.min()),
        ],
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
