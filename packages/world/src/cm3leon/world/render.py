"""Rasterise a :class:`~cm3leon.world.scene.Scene` with numpy, with its ground truth.

Every pixel is tested at its centre ``(j + 0.5, i + 0.5)`` against the analytic shape,
so rendering is exact and fast (no anti-aliasing: edges are crisp and colours stay
exactly those of the palette).  Elements are painted back to front by ``z``; the painted
word lies on the wall, behind everything.

Ground truth produced alongside the pixels:

* ``instance_map`` ``(H, W)``: 0 = wall, ``k + 1`` = object ``k``, ``len(objects) + 1`` =
  the stick figure (visible pixels only);
* ``segmentation`` ``(H, W)``: category ids of :data:`CATEGORIES` (0 = wall);
* ``depth`` ``(H, W)`` uint16 in mm-like units, larger = farther: the wall is at 4000, the
  nearest element at ~1200 and every element behind it 600 further; objects bulge towards
  the viewer (up to 150) so surface normals are informative;
* ``amodal`` ``(E, H, W)``: each element's full silhouette before occlusion;
* ``keypoints`` ``(17, 3)``: COCO ``x, y, v`` (v = 2 visible, 1 hidden behind an object,
  0 outside the image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cm3leon.world.font import text_bitmap
from cm3leon.world.geometry import pixel_grid, shape_mask
from cm3leon.world.scene import (
    BACKGROUND_RGB,
    COLOURS,
    INK_RGB,
    SHAPES,
    Scene,
    StickFigure,
)

__all__ = [
    "CATEGORIES",
    "PERSON_CATEGORY_ID",
    "WALL_DEPTH",
    "Render",
    "category_id",
    "category_name",
    "figure_mask",
    "occlusions",
    "render_scene",
]

WALL_DEPTH = 4000
_NEAREST_DEPTH = 1200
_DEPTH_STEP = 600
_BULGE = 150
PERSON_CATEGORY_ID = 1

#: COCO-style categories: person (id 1, as in COCO) then every colour-shape pair.
CATEGORIES: tuple[dict[str, object], ...] = (
    {"id": PERSON_CATEGORY_ID, "name": "person", "supercategory": "person"},
) + tuple(
    {"id": 2 + ci * len(SHAPES) + si, "name": f"{colour} {shape}", "supercategory": shape}
    for ci, colour in enumerate(COLOURS)
    for si, shape in enumerate(SHAPES)
)
_CATEGORY_BY_NAME = {str(c["name"]): int(c["id"]) for c in CATEGORIES}  # type: ignore[call-overload]
_NAME_BY_CATEGORY = {v: k for k, v in _CATEGORY_BY_NAME.items()}


def category_id(colour: str, shape: str) -> int:
    """COCO category id of a ``colour`` ``shape`` pair."""
    try:
        return _CATEGORY_BY_NAME[f"{colour} {shape}"]
    except KeyError:
        raise ValueError(f"no category for {colour!r} {shape!r}") from None


def category_name(cid: int) -> str:
    """Name of category ``cid`` (``"person"``, ``"red circle"``, ...)."""
    try:
        return _NAME_BY_CATEGORY[int(cid)]
    except KeyError:
        raise ValueError(f"unknown world category id {cid!r}") from None


def _segment_distance(x: np.ndarray, y: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Distance from every pixel to the nearest of ``seg`` ``(S, 4)`` segments."""
    x0, y0, x1, y1 = (seg[:, i, None, None] for i in range(4))  # (S, 1, 1)
    vx, vy = x1 - x0, y1 - y0
    length2 = np.maximum(vx * vx + vy * vy, 1e-9)
    t = np.clip(((x - x0) * vx + (y - y0) * vy) / length2, 0.0, 1.0)
    px, py = x0 + t * vx - x, y0 + t * vy - y
    return np.sqrt(px * px + py * py).min(axis=0)  # (H, W)


def figure_mask(figure: StickFigure, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean silhouette of a stick figure (head disc plus limb lines)."""
    kp = np.asarray(figure.keypoints, dtype=np.float32)
    neck = (kp[5] + kp[6]) / 2
    pelvis = (kp[11] + kp[12]) / 2
    head = np.array([kp[0, 0], (kp[1, 1] + kp[0, 1]) / 2], dtype=np.float32)
    pairs = [
        (head, neck), (neck, pelvis), (kp[5], kp[6]), (kp[11], kp[12]),
        (kp[5], kp[7]), (kp[7], kp[9]), (kp[6], kp[8]), (kp[8], kp[10]),
        (kp[11], kp[13]), (kp[13], kp[15]), (kp[12], kp[14]), (kp[14], kp[16]),
    ]  # fmt: skip
    seg = np.array([[a[0], a[1], b[0], b[1]] for a, b in pairs], dtype=np.float32)
    lines = _segment_distance(x, y, seg) <= figure.thickness / 2 + 0.15
    hx, hy = head
    disc = (x - hx) ** 2 + (y - hy) ** 2 <= figure.head_radius**2
    return lines | disc


def occlusions(scene: Scene, min_pixels: int = 2) -> list[tuple[int, int]]:
    """``(front, back)`` pairs of objects where ``front`` hides >= ``min_pixels`` of ``back``."""
    x, y = pixel_grid(scene.image_size)
    objs = scene.objects
    masks = [shape_mask(o.shape, o.center[0], o.center[1], o.radius, x, y) for o in objs]
    pairs = []
    for i, a in enumerate(objs):
        for j, b in enumerate(objs):
            if i != j and a.z > b.z and int((masks[i] & masks[j]).sum()) >= min_pixels:
                pairs.append((i, j))
    return pairs


@dataclass(frozen=True, eq=False)
class Render:
    """Pixels and pixel-level ground truth of one scene (see the module docstring).

    Element ``k`` is object ``k`` for ``k < len(scene.objects)``; the figure comes last.
    """

    scene: Scene
    image: np.ndarray  # (H, W, 3) uint8
    instance_map: np.ndarray  # (H, W) int16
    segmentation: np.ndarray  # (H, W) uint8
    depth: np.ndarray  # (H, W) uint16
    amodal: np.ndarray  # (E, H, W) bool
    text_mask: np.ndarray  # (H, W) bool
    keypoints: np.ndarray | None  # (17, 3) float32

    @property
    def n_elements(self) -> int:
        return int(self.amodal.shape[0])

    def mask(self, k: int) -> np.ndarray:
        """Visible mask ``(H, W)`` of element ``k``."""
        return self.instance_map == k + 1

    def box(self, k: int) -> list[int] | None:
        """COCO ``[x, y, w, h]`` of element ``k``'s visible pixels (``None`` if hidden)."""
        ys, xs = np.nonzero(self.mask(k))
        if xs.size == 0:
            return None
        return [
            int(xs.min()),
            int(ys.min()),
            int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1),
        ]

    def visible_fraction(self, k: int) -> float:
        """Share of element ``k``'s silhouette that is not covered by nearer elements."""
        full = int(self.amodal[k].sum())
        return float(self.mask(k).sum()) / full if full else 0.0

    def pil(self):
        """The image as an RGB ``PIL.Image``."""
        from PIL import Image

        return Image.fromarray(self.image, mode="RGB")


def render_scene(scene: Scene) -> Render:
    """Rasterise ``scene`` and its ground truth (see :class:`Render`)."""
    size = scene.image_size
    x, y = pixel_grid(size)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND_RGB
    instance = np.zeros((size, size), dtype=np.int16)
    seg = np.zeros((size, size), dtype=np.uint8)
    depth = np.full((size, size), WALL_DEPTH, dtype=np.uint16)
    text_mask = np.zeros((size, size), dtype=bool)
    if scene.text is not None:
        _paint_text(scene, image, text_mask)

    n_obj = len(scene.objects)
    elements: list[tuple[int, int]] = [(o.z, k) for k, o in enumerate(scene.objects)]
    if scene.figure is not None:
        elements.append((scene.figure.z, n_obj))
    amodal = np.zeros((len(elements), size, size), dtype=bool)
    # rank 0 = nearest; ties (hand-made scenes) keep list order.
    ranks = {k: rank for rank, (_, k) in enumerate(sorted(elements, key=lambda e: (-e[0], -e[1])))}
    for _, k in sorted(elements):
        base = _NEAREST_DEPTH + _DEPTH_STEP * ranks[k]
        if k < n_obj:
            obj = scene.objects[k]
            m = shape_mask(obj.shape, obj.center[0], obj.center[1], obj.radius, x, y)
            image[m] = COLOURS[obj.colour]
            seg[m] = category_id(obj.colour, obj.shape)
            d2 = ((x - obj.center[0]) ** 2 + (y - obj.center[1]) ** 2) / obj.radius**2
            relief = base - _BULGE * np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
            depth[m] = relief[m].astype(np.uint16)
        else:
            m = figure_mask(scene.figure, x, y)  # type: ignore[arg-type]
            image[m] = INK_RGB
            seg[m] = PERSON_CATEGORY_ID
            depth[m] = base
        instance[m] = k + 1
        amodal[k] = m
    keypoints = None
    if scene.figure is not None:
        keypoints = _keypoint_visibility(scene.figure, instance, n_obj + 1)
    return Render(scene, image, instance, seg, depth, amodal, text_mask, keypoints)


def _paint_text(scene: Scene, image: np.ndarray, text_mask: np.ndarray) -> None:
    t = scene.text
    assert t is not None
    bitmap = text_bitmap(t.word.upper(), t.scale)
    size = scene.image_size
    x0, y0 = t.origin
    h, w = bitmap.shape
    xs0, ys0 = max(0, x0), max(0, y0)
    xs1, ys1 = min(size, x0 + w), min(size, y0 + h)
    if xs1 <= xs0 or ys1 <= ys0:
        return
    sub = bitmap[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]
    text_mask[ys0:ys1, xs0:xs1] = sub
    image[text_mask] = INK_RGB


def _keypoint_visibility(figure: StickFigure, instance: np.ndarray, figure_id: int) -> np.ndarray:
    size = instance.shape[0]
    out = np.zeros((17, 3), dtype=np.float32)
    for i, (kx, ky) in enumerate(figure.keypoints):
        out[i, 0], out[i, 1] = kx, ky
        if not (0 <= kx < size and 0 <= ky < size):
            out[i, 2] = 0
            continue
        owner = int(instance[int(ky), int(kx)])
        out[i, 2] = 1 if owner not in (0, figure_id) else 2
    return out
