"""Read an image of the world back without any learned model, and score it.

:func:`detect_objects` finds the coloured shapes in an image:

1. every pixel takes the world colour nearest in hue if its chroma (max - min channel)
   is at least half that colour's, else it is wall/ink/grey (``-1``);
2. isolated pixels take their neighbours' colour, then 8-connected components of one colour
   (at least a quarter of the smallest object's area) become candidate objects;
3. each candidate is fitted with every shape template (:func:`render.shape_mask`) over a
   small grid of centres and radii; the score of a template is its IoU with the
   component where pixels of *other* sizeable components are ignored (they may be
   occluders).  The
   best template gives the shape, centre (hence grid cell) and radius (hence size);
   candidates whose best IoU is below ``min_fit``, that do not stand on the wall, or that
   are far larger than a large object (a frame filled with one colour) are not objects.

:func:`score_text_to_image` compares the detections with the ground truth (a scene, a
scene dict, a caption, or object specs).  Its headline, :data:`HEADLINE` =
``object_acc``, is precision-aware: colour+shape matches over the *larger* of the number
of objects drawn and asked for, so every missing, wrong or extra object costs the same.
The older per-object accuracies (``colour_shape_acc`` ...) count only the objects asked
for, after a best one-to-one matching, so an image crowded with shapes of every colour
scores several times their chance against any scene; they stay as diagnostics.
:func:`score_edit` checks an edit.

Chance: :data:`CHANCE` holds the accuracy of guessing uniformly at random;
:func:`shuffled_baseline` measures the empirical floor of scoring images against the
ground truth of *other* scenes.  :mod:`.baselines` holds the headline's chance (a bound
for *any* image drawn without reading its prompt) and the floors of other scenes'
renders and of the scenes' mean image.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.world.edits import Edit
from cm3leon.world.geometry import dilate, shape_mask
from cm3leon.world.language import ObjectSpec, parse_caption
from cm3leon.world.scene import (
    BACKGROUND_RGB,
    CELL_NAMES,
    COLOURS,
    SHAPES,
    SIZE_RADIUS,
    Scene,
    WorldConfig,
    WorldObject,
    cell_of,
)

__all__ = [
    "CHANCE",
    "HEADLINE",
    "METRICS",
    "PAIRS",
    "DetectedObject",
    "aggregate",
    "classify_pixels",
    "detect_objects",
    "score_edit",
    "score_text_to_image",
    "shuffled_baseline",
]

#: Colour+shape pairs of the world.
PAIRS = len(COLOURS) * len(SHAPES)
_DEFAULT_WORLD = WorldConfig()
#: Accuracy of a uniform random guess for one object (colour, shape, both, cell) and for
#: the number of objects (uniform over 1-3); ``object_acc``: the headline's chance
#: (:func:`.baselines.object_chance`) in the default world (1-3 objects, 2 on average).
CHANCE: dict[str, float] = {
    "colour_acc": 1 / len(COLOURS),
    "shape_acc": 1 / len(SHAPES),
    "colour_shape_acc": 1 / PAIRS,
    "position_acc": 1 / len(CELL_NAMES),
    "size_acc": 1 / 2,
    "count_acc": 1 / 3,
    "object_acc": (_DEFAULT_WORLD.min_objects + _DEFAULT_WORLD.max_objects) / 2 / PAIRS,
}
#: The headline text-to-image measure (precision-aware; see :func:`score_text_to_image`).
HEADLINE = "object_acc"
METRICS: tuple[str, ...] = (
    "object_acc",
    "object_precision",
    "object_recall",
    "object_f1",
    "colour_acc",
    "shape_acc",
    "colour_shape_acc",
    "position_acc",
    "size_acc",
    "count_acc",
    "scene_acc",
)

_CHROMA_FRACTION = 0.35
_COLOUR_NAMES = tuple(COLOURS)
_SIZE_SPLIT = (SIZE_RADIUS["small"] + SIZE_RADIUS["large"]) / 2
# Bounding-box extent (width, height) of each shape in units of its radius, and where
# the centre sits from the top of the box.
_EXTENT = {
    "circle": (2.0, 2.0, 1.0),
    "square": (1.7, 1.7, 0.85),
    "triangle": (2.0, 1.8, 1.0),
    "cross": (2.0, 2.0, 1.0),
}
_SCALES = np.array([0.9, 1.0, 1.1, 1.2], dtype=np.float32)
_OFFSETS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=np.float32)


def _hue(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in degrees of ``(..., 3)`` float RGB."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    c = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return h * 60.0


_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)  # (C, 3)
_PALETTE_HUES = _hue(_PALETTE)  # (C,)
_PALETTE_CHROMA = _PALETTE.max(-1) - _PALETTE.min(-1)  # (C,)


@dataclass(frozen=True)
class DetectedObject:
    """A coloured shape read from an image (coordinates in that image's pixels)."""

    colour: str
    shape: str
    size: str
    center: tuple[float, float]
    radius: float
    cell: tuple[int, int]
    area: int
    fit: float
    box: tuple[int, int, int, int]

    @property
    def position(self) -> str:
        return CELL_NAMES[self.cell]

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"


def _as_array(image: Any) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 255] from a PIL image or an array."""
    if hasattr(image, "convert") and hasattr(image, "size"):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"expected a square RGB image (H, W, 3), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        scale = 255.0 if float(np.nanmax(arr)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(arr.astype(np.float32)) * scale, 0, 255)
    raise ValueError(f"unsupported image dtype {arr.dtype}")


def _wall_colour(rgb: np.ndarray) -> np.ndarray:
    """The wall's colour: median of the bright unsaturated pixels (the palette's if none)."""
    chroma = rgb.max(-1) - rgb.min(-1)
    grey = rgb[(chroma < 30) & (rgb.mean(-1) > 150)]
    if grey.shape[0] < rgb.shape[0] * rgb.shape[1] // 8:
        return np.array(BACKGROUND_RGB, dtype=np.float32)
    return np.median(grey, axis=0).astype(np.float32)


def classify_pixels(image: Any) -> np.ndarray:
    """``(H, W)`` int8 colour index of every pixel (``-1`` = wall, ink or grey), despeckled.

    A pixel takes the world colour ``c`` nearest in hue when it is at least half-way from
    the wall to ``c`` (the projection of ``pixel - wall`` on ``c - wall`` is >= 0.5:
    exactly where a blurred edge lies) and at least ``_CHROMA_FRACTION`` as saturated as
    ``c`` (so dark ink and grey never take a colour).
    """
    rgb = _as_array(image)
    chroma = rgb.max(-1) - rgb.min(-1)
    diff = np.abs(_hue(rgb)[..., None] - _PALETTE_HUES)  # (H, W, C)
    diff = np.minimum(diff, 360.0 - diff)
    nearest = diff.argmin(-1)  # (H, W)
    wall = _wall_colour(rgb)
    direction = _PALETTE[nearest] - wall  # (H, W, 3)
    alpha = ((rgb - wall) * direction).sum(-1) / (direction * direction).sum(-1)
    coloured = (alpha >= 0.5) & (chroma >= _CHROMA_FRACTION * _PALETTE_CHROMA[nearest])
    labels = np.where(coloured, nearest, -1).astype(np.int8)
    return _despeckle(labels, len(COLOURS))


def _despeckle(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Give isolated pixels (<= 2 of their 3x3 window share their class) the window's majority.

    Unlike a plain majority filter this keeps thin parts (the arms of a small cross, the
    apex of a triangle) intact.
    """
    h, w = labels.shape
    onehot = (labels[None] == np.arange(-1, n_classes, dtype=np.int8)[:, None, None]).astype(
        np.int16
    )
    pad = np.pad(onehot, ((0, 0), (1, 1), (1, 1)))
    counts = sum(
        pad[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)
    )  # (C+1, H, W)
    own = np.take_along_axis(counts, (labels.astype(np.int64) + 1)[None], 0)[0]
    return np.where(own <= 2, counts.argmax(0) - 1, labels).astype(np.int8)


def _components(labels: np.ndarray) -> np.ndarray:
    """8-connected components of equal non-negative labels; ``(H, W)`` ids, 0 = none."""
    h, w = labels.shape
    valid = labels >= 0
    big = np.int32(h * w + 1)
    comp = np.where(valid, np.arange(1, h * w + 1, dtype=np.int32).reshape(h, w), big)
    lpad = np.pad(labels, 1, constant_values=-2)
    shifts = [(dy, dx) for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]
    same = [lpad[dy : dy + h, dx : dx + w] == labels for dy, dx in shifts]
    while True:
        cpad = np.pad(comp, 1, constant_values=big)
        new = comp
        for (dy, dx), s in zip(shifts, same, strict=True):
            new = np.minimum(new, np.where(s, cpad[dy : dy + h, dx : dx + w], big))
        new = np.where(valid, new, big)
        if np.array_equal(new, comp):
            break
        comp = new
    return np.where(valid, comp, 0)


@functools.lru_cache(maxsize=64)
def _patch_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.meshgrid(
        np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5, indexing="ij"
    )
    return xs, ys


def _fit(
    component: np.ndarray, wall: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[str, float, float, float, float]:
    """Best ``(shape, cx, cy, r, iou)`` for one component (pixel coordinates of the image)."""
    x0, y0, x1, y1 = box  # inclusive pixel bounds
    size = component.shape[0]
    margin = max(3, size // 8)
    px0, py0 = max(0, x0 - margin), max(0, y0 - margin)
    px1, py1 = min(size, x1 + 1 + margin), min(size, y1 + 1 + margin)
    comp = component[py0:py1, px0:px1]
    counted_wall = wall[py0:py1, px0:px1]
    xs, ys = _patch_grid(py1 - py0, px1 - px0)
    area = float(comp.sum())
    bw, bh = x1 + 1 - x0, y1 + 1 - y0
    best = ("circle", 0.0, 0.0, 0.0, -1.0)
    for shape in SHAPES:
        ew, eh, top = _EXTENT[shape]
        r0 = max(bw / ew, bh / eh)
        cx0 = (x0 + x1 + 1) / 2 - px0
        cy0 = y0 + top * r0 - py0 if shape == "triangle" else (y0 + y1 + 1) / 2 - py0
        r = (r0 * _SCALES)[:, None, None, None, None]  # (S, 1, 1, 1, 1)
        cx = (cx0 + _OFFSETS)[None, :, None, None, None]  # (1, O, 1, 1, 1)
        cy = (cy0 + _OFFSETS)[None, None, :, None, None]  # (1, 1, O, 1, 1)
        t = shape_mask(shape, cx, cy, r, xs, ys)  # (S, O, O, h, w)
        inter = (t & comp).sum((-1, -2))
        outside = (t & counted_wall).sum((-1, -2))
        iou = inter / (area + outside)  # (S, O, O)
        s, i, j = np.unravel_index(int(iou.argmax()), iou.shape)
        if iou[s, i, j] > best[4]:
            best = (
                shape,
                float(cx0 + _OFFSETS[i] + px0),
                float(cy0 + _OFFSETS[j] + py0),
                float(r0 * _SCALES[s]),
                float(iou[s, i, j]),
            )
    return best


def detect_objects(
    image: Any,
    *,
    min_fit: float = 0.7,
    min_area_fraction: float = 0.5,
    min_wall: float = 0.4,
    max_radius_fraction: float = 1.5,
) -> list[DetectedObject]:
    """The coloured shapes in ``image``, largest first.

    Args:
        image: ``PIL.Image`` or ``(H, W, 3)`` array (uint8, or float in [0, 1] / [0, 255]).
        min_fit: smallest template IoU accepted as an object.
        min_area_fraction: smallest component, as a fraction of a small triangle's area.
        min_wall: smallest share of wall pixels around a component (occluders and
            neighbours take the rest).  A component with no pixel around it (it fills
            the image) has no wall to stand on.
        max_radius_fraction: largest fitted radius, as a multiple of a large object's.
    """
    labels = classify_pixels(image)
    size = labels.shape[0]
    comps = _components(labels)
    r_small = SIZE_RADIUS["small"] * size
    min_area = max(3, int(min_area_fraction * 1.8 * r_small * r_small))
    ids, counts = np.unique(comps[comps > 0], return_counts=True)
    keep = ids[counts >= min_area]
    # Pixels of other sizeable components may be occluders and are not held against a
    # template; everything else (wall, ink, speckle) is.
    significant = np.isin(comps, keep)
    found = []
    for cid, count in zip(ids, counts, strict=True):
        if count < min_area:
            continue
        mask = comps == cid
        ring = dilate(mask) & ~mask
        # An object stands on the wall; noise blobs are surrounded by colour.  (An empty
        # ring's mean is NaN, and NaN < min_wall is False: test the share positively.)
        if not (ring.any() and (labels[ring] < 0).mean() >= min_wall):
            continue
        wall = ~significant
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        shape, cx, cy, r, fit = _fit(mask, wall, box)
        if fit < min_fit or r > max_radius_fraction * SIZE_RADIUS["large"] * size:
            continue
        colour = _COLOUR_NAMES[int(labels[ys[0], xs[0]])]
        found.append(
            DetectedObject(
                colour=colour,
                shape=shape,
                size="small" if r < _SIZE_SPLIT * size else "large",
                center=(cx, cy),
                radius=r,
                cell=cell_of(cx, cy, size),
                area=int(count),
                fit=fit,
                box=(box[0], box[1], box[2] - box[0] + 1, box[3] - box[1] + 1),
            )
        )
    return sorted(found, key=lambda d: -d.area)


# ------------------------------------------------------------------ scoring
def _specs(truth: Any) -> list[ObjectSpec]:
    if isinstance(truth, Scene):
        return [ObjectSpec.of(o) for o in truth.objects]
    if isinstance(truth, str):
        specs = parse_caption(truth)
        if not specs:
            raise ValueError(f"caption {truth!r} mentions no world object (colour + shape)")
        return specs
    if isinstance(truth, Mapping):
        return _specs(Scene.from_dict(truth))
    if isinstance(truth, Sequence):
        return [ObjectSpec.of(t) if isinstance(t, WorldObject) else t for t in truth]
    raise TypeError(
        f"ground truth must be a Scene, scene dict, caption or object specs, got {type(truth).__name__}"
    )


def _pair(spec: ObjectSpec, det: DetectedObject) -> dict[str, bool | None]:
    c, s = spec.colour == det.colour, spec.shape == det.shape
    return {
        "colour": c,
        "shape": s,
        "both": c and s,
        "position": None if spec.position is None else spec.position == det.position,
        "size": None if spec.size is None else spec.size == det.size,
    }


def _weight(p: dict[str, bool | None]) -> float:
    return (
        8 * p["both"]
        + 2 * p["colour"]
        + p["shape"]
        + 0.5 * bool(p["position"])
        + 0.25 * bool(p["size"])
    )


def _match(
    specs: Sequence[ObjectSpec], dets: Sequence[DetectedObject], k: int = 8
) -> list[dict[str, bool | None] | None]:
    """Best one-to-one assignment; ``None`` for specs left without a detection."""
    dets = list(dets)[:k]
    best: tuple[float, list] = (-1.0, [None] * len(specs))
    slots = list(range(len(dets))) + [None] * len(specs)
    for perm in set(itertools.permutations(slots, len(specs))):
        pairs = [
            None if d is None else _pair(spec, dets[d]) for spec, d in zip(specs, perm, strict=True)
        ]
        total = sum(_weight(p) for p in pairs if p is not None)
        if total > best[0]:
            best = (total, pairs)
    return best[1]


def _objects(specs: Sequence[ObjectSpec], dets: Sequence[DetectedObject]) -> dict[str, float]:
    """Object-level precision, recall, F1 and accuracy of colour+shape matches.

    With colour+shape the only criterion, the best one-to-one matching pairs, for every
    colour+shape, as many objects as both sides have: ``m = sum_k min(asked_k, drawn_k)``.
    """
    asked = Counter((s.colour, s.shape) for s in specs)
    drawn = Counter((d.colour, d.shape) for d in dets)
    m = sum(min(n, drawn[k]) for k, n in asked.items())
    n_asked, n_drawn = sum(asked.values()), sum(drawn.values())
    return {
        "object_acc": m / max(n_asked, n_drawn, 1),
        "object_precision": m / n_drawn if n_drawn else 0.0,
        "object_recall": m / max(n_asked, 1),
        "object_f1": 2 * m / (n_asked + n_drawn) if n_asked + n_drawn else 0.0,
    }


def score_text_to_image(
    image: Any, truth: Any, *, detections: Sequence[DetectedObject] | None = None
) -> dict[str, float]:
    """Score a (generated) image against its ground truth.

    Args:
        image: the image (ignored when ``detections`` are given).
        truth: a :class:`Scene`, a scene dict, a caption, or a list of
            :class:`ObjectSpec`/:class:`WorldObject`.
        detections: precomputed :func:`detect_objects` output.

    Returns:
        The headline ``object_acc`` = ``m / max(asked, drawn)``, where ``m`` counts the
        objects drawn with a colour+shape asked for (one-to-one) among ``drawn`` detected
        and ``asked`` stated objects: a missing, wrong or *extra* object each cost one.
        No image drawn without reading the prompt expects more than
        :func:`~cm3leon.world.baselines.object_chance`, however many shapes it shows.  Next to it
        ``object_precision`` (``m / drawn``; 0 when nothing is detected),
        ``object_recall`` (``m / asked``) and ``object_f1``.

        Diagnostics that count only the objects asked for (an image crowded with shapes
        raises them against any scene): ``colour_acc``, ``shape_acc``,
        ``colour_shape_acc`` (fractions of ground-truth objects matched by a detection of
        the right colour / shape / both, among the 8 largest detections),
        ``position_acc`` and ``size_acc`` (over objects whose truth states them; NaN if
        none does).  ``count_acc`` (1 if as many objects were detected as there are),
        ``scene_acc`` (exact scene: the count is right and every object is right in
        everything stated) and ``n_detected``.
    """
    specs = _specs(truth)
    dets = list(detections) if detections is not None else detect_objects(image)
    pairs = _match(specs, dets)
    n = max(1, len(specs))

    def frac(key: str) -> float:
        return sum(bool(p and p[key]) for p in pairs) / n

    def stated(key: str) -> float:
        vals = [
            bool(p and p[key])
            for s, p in zip(specs, pairs, strict=True)
            if getattr(s, key) is not None
        ]
        return sum(vals) / len(vals) if vals else float("nan")

    count_ok = len(dets) == len(specs)
    all_ok = all(
        p is not None and p["both"] and p["position"] is not False and p["size"] is not False
        for p in pairs
    )
    return {
        **_objects(specs, dets),
        "colour_acc": frac("colour"),
        "shape_acc": frac("shape"),
        "colour_shape_acc": frac("both"),
        "position_acc": stated("position"),
        "size_acc": stated("size"),
        "count_acc": float(count_ok),
        "scene_acc": float(count_ok and all_ok),
        "n_detected": float(len(dets)),
    }


def _present(
    dets: Sequence[DetectedObject], colour: str, shape: str, cell: tuple[int, int]
) -> bool:
    return any(d.colour == colour and d.shape == shape and d.cell == tuple(cell) for d in dets)


def score_edit(before: Any, after: Any, edit: Edit | Mapping[str, Any]) -> dict[str, float]:
    """Score an edited image against the edit's ground truth.

    Args:
        before: the input image (``None`` to trust the ground-truth source scene).
        after: the edited (generated) image.
        edit: the :class:`Edit` (or its :meth:`Edit.to_dict`).

    Returns:
        ``edit_acc`` (the requested change is visible: recoloured/moved/added object
        present where it should be and the old one gone, removed object gone),
        ``preserve_acc`` (share of the other objects -- those detected in ``before`` --
        still present with the same colour, shape and cell; 1 if there are none),
        ``success`` (both), and ``after_colour_shape_acc`` against the target scene.
    """
    if isinstance(edit, Mapping):
        edit = Edit.from_dict(edit)
    dets = detect_objects(after)
    src, tgt = edit.source.objects, edit.target.objects
    if edit.kind == "add":
        new = tgt[edit.index]
        changed = _present(dets, new.colour, new.shape, new.cell)
        keep = list(src)
    else:
        old = src[edit.index]
        keep = [o for i, o in enumerate(src) if i != edit.index]
        gone = not _present(dets, old.colour, old.shape, old.cell)
        if edit.kind == "remove":
            changed = gone
        else:
            new = tgt[edit.index]
            changed = gone and _present(dets, new.colour, new.shape, new.cell)
    if before is not None:
        seen = detect_objects(before)
        keep = [o for o in keep if _present(seen, o.colour, o.shape, o.cell)]
    preserved = [_present(dets, o.colour, o.shape, o.cell) for o in keep]
    preserve = sum(preserved) / len(preserved) if preserved else 1.0
    after_scores = score_text_to_image(after, edit.target, detections=dets)
    return {
        "edit_acc": float(changed),
        "preserve_acc": float(preserve),
        "success": float(changed and preserve == 1.0),
        "after_colour_shape_acc": after_scores["colour_shape_acc"],
    }


def aggregate(scores: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of every metric over ``scores`` (NaN entries are skipped)."""
    keys = dict.fromkeys(k for s in scores for k in s)
    out = {}
    for key in keys:
        vals = [float(s[key]) for s in scores if key in s and not np.isnan(s[key])]
        out[key] = float(np.mean(vals)) if vals else float("nan")
    return out


def shuffled_baseline(
    images: Sequence[Any],
    truths: Sequence[Any],
    seed: int = 0,
    *,
    shifts: int | None = 1,
    detections: Sequence[Sequence[DetectedObject]] | None = None,
) -> dict[str, float]:
    """Mean scores of each image against the ground truth of other scenes.

    This is the empirical floor of :func:`score_text_to_image` for images that look like
    the world but ignore their prompt: image ``i`` is scored against truth ``(i + s) % n``
    for ``shifts`` distinct offsets ``s`` drawn (seeded) from ``1 .. n - 1``.

    Args:
        images: the images (not read when ``detections`` are given).
        truths: their ground truths, in the same order.
        seed: seed of the offsets.
        shifts: how many offsets (``None``: every one, ``n (n - 1)`` pairs).
        detections: precomputed :func:`detect_objects` of ``images``.
    """
    if len(images) != len(truths) or len(images) < 2:
        raise ValueError(
            f"need >= 2 images and as many truths, got {len(images)} and {len(truths)}"
        )
    n = len(images)
    if shifts is None or shifts >= n - 1:
        offsets = list(range(1, n))
    elif shifts < 1:
        raise ValueError(f"shifts must be >= 1 or None, got {shifts}")
    else:
        offsets = [
            1 + int(o) for o in np.random.default_rng(seed).choice(n - 1, shifts, replace=False)
        ]
    dets = (
        [list(d) for d in detections]
        if detections is not None
        else [detect_objects(im) for im in images]
    )
    if len(dets) != n:
        raise ValueError(f"need one detection list per image, got {len(dets)} for {n}")
    specs = [_specs(t) for t in truths]
    return aggregate(
        [
            score_text_to_image(None, specs[(i + o) % n], detections=dets[i])
            for o in offsets
            for i in range(n)
        ]
    )
