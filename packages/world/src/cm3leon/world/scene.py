"""Scenes of the procedural world: the visual vocabulary, the scene types and sampling.

A scene is a 3x3 grid of cells on a light-grey wall.  Each of 1-3 *objects* (a shape
in a colour, small or large) sits in its own cell, jittered a little; large objects in
neighbouring cells overlap, and a per-element ``z`` (larger = nearer) decides who
covers whom.  Objects that touch never share a colour (they would read as one blob).  Optionally a *stick figure* with the 17 COCO keypoints stands in two
vertically adjacent cells (for pose), and a short *word* is painted on the wall across
the top or bottom row (for OCR).

The vocabulary is deliberately small (6 colours x 4 shapes x 2 sizes x 9 cells) so that
a tiny CPU model can learn it in minutes, while every task of the paper's Table 5 can
still be derived from the ground truth.

Everything is deterministic given a ``numpy.random.Generator``; :func:`scene_rng` makes
the generator of scene ``index`` of the world with seed ``seed`` so any scene can be
produced on its own (random access, no sequential state).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.world.font import text_extent
from cm3leon.world.geometry import SHAPE_NAMES, colour_conflicts

__all__ = [
    "BACKGROUND_RGB",
    "CELL_NAMES",
    "COCO_KEYPOINTS",
    "COCO_SKELETON",
    "COLOURS",
    "GRID",
    "INK_RGB",
    "POSES",
    "SHAPES",
    "SIZES",
    "SIZE_RADIUS",
    "WORDS",
    "Scene",
    "StickFigure",
    "TextItem",
    "WorldConfig",
    "WorldObject",
    "cell_center",
    "cell_of",
    "figure_keypoints",
    "recolour_conflicts",
    "sample_object",
    "sample_scene",
    "scene_rng",
]

# --------------------------------------------------------------------- vocabulary
#: Object colours, well separated in hue (0, 50, 134, 184, 230 and 280 degrees).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "yellow": (235, 200, 30),
    "green": (40, 170, 70),
    "cyan": (30, 190, 200),
    "blue": (40, 70, 220),
    "purple": (150, 50, 200),
}
SHAPES: tuple[str, ...] = SHAPE_NAMES
SIZES: tuple[str, ...] = ("small", "large")
#: Half-extent of an object as a fraction of the image side.
SIZE_RADIUS: dict[str, float] = {"small": 0.12, "large": 0.19}
BACKGROUND_RGB: tuple[int, int, int] = (235, 235, 235)
#: Colour of the stick figure and of painted text.
INK_RGB: tuple[int, int, int] = (25, 25, 25)
GRID = 3
CELL_NAMES: dict[tuple[int, int], str] = {
    (0, 0): "top left",
    (0, 1): "top",
    (0, 2): "top right",
    (1, 0): "left",
    (1, 1): "center",
    (1, 2): "right",
    (2, 0): "bottom left",
    (2, 1): "bottom",
    (2, 2): "bottom right",
}
#: Short upper-case words painted on the wall (at most 5 letters: they fit 32 px).
WORDS: tuple[str, ...] = (
    "CAT", "DOG", "SUN", "TREE", "STOP", "OPEN", "BOOK", "FISH", "STAR", "MOON",
    "BIRD", "CAKE", "BOAT", "RAIN", "SNOW", "LION", "HAT", "CUP", "PEN", "MAP",
    "BUS", "KEY", "BOX", "EXIT", "SALE", "HELLO", "WATER", "HAPPY", "PIZZA", "MUSIC",
    "HOUSE", "LOVE",
)  # fmt: skip

#: The 17 COCO person keypoints, in COCO order ("left" is the person's left).
COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
#: COCO's 1-based limb pairs (``categories[0]["skeleton"]`` of person_keypoints files).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7),
    (6, 8), (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip

#: Joint angles in degrees from straight down, positive = away from the body:
#: (left shoulder, left elbow, right shoulder, right elbow, left hip, left knee,
#: right hip, right knee); elbow/knee angles are relative to the upper limb.
POSES: dict[str, tuple[float, ...]] = {
    "standing": (15, 0, 15, 0, 6, 0, 6, 0),
    "arms up": (160, 0, 160, 0, 6, 0, 6, 0),
    "arms out": (90, 0, 90, 0, 6, 0, 6, 0),
    "waving": (15, 0, 120, 45, 6, 0, 6, 0),
    "jumping": (135, 15, 135, 15, 30, -30, 30, -30),
    "kicking": (45, 0, 45, 0, 75, -20, 4, 0),
}


# -------------------------------------------------------------------- geometry
def cell_center(cell: tuple[int, int], image_size: int) -> tuple[float, float]:
    """``(x, y)`` centre in pixels of grid cell ``(row, col)``."""
    step = image_size / GRID
    return ((cell[1] + 0.5) * step, (cell[0] + 0.5) * step)


def cell_of(x: float, y: float, image_size: int) -> tuple[int, int]:
    """The ``(row, col)`` grid cell containing the point ``(x, y)`` (clamped to the image)."""
    step = image_size / GRID
    col = min(GRID - 1, max(0, int(x // step)))
    row = min(GRID - 1, max(0, int(y // step)))
    return (row, col)


# ----------------------------------------------------------------- scene types
@dataclass(frozen=True)
class WorldObject:
    """One coloured shape.

    Attributes:
        shape: one of :data:`SHAPES`.
        colour: one of :data:`COLOURS`.
        size: ``"small"`` or ``"large"``.
        cell: ``(row, col)`` grid cell it was placed in.
        center: ``(x, y)`` centre in pixels.
        radius: half-extent in pixels.
        z: drawing order among the scene's elements; larger is nearer the viewer.
    """

    shape: str
    colour: str
    size: str
    cell: tuple[int, int]
    center: tuple[float, float]
    radius: float
    z: int = 0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; world shapes: {', '.join(SHAPES)}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; world colours: {', '.join(COLOURS)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; world sizes: {', '.join(SIZES)}")
        if tuple(self.cell) not in CELL_NAMES:
            raise ValueError(f"cell {self.cell!r} is not a (row, col) of the {GRID}x{GRID} grid")

    @property
    def position(self) -> str:
        """Name of the grid cell (``"top left"``, ``"center"``, ...)."""
        return CELL_NAMES[tuple(self.cell)]

    @property
    def label(self) -> str:
        """``"red circle"``: the object's category name."""
        return f"{self.colour} {self.shape}"

    def replace(self, **changes: Any) -> WorldObject:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class StickFigure:
    """An articulated person drawn with lines, standing in two cells of one column.

    Attributes:
        pose: one of :data:`POSES`.
        column: grid column.
        rows: the two grid rows it spans (top, bottom).
        keypoints: 17 ``(x, y)`` pixel positions in :data:`COCO_KEYPOINTS` order.
        head_radius: radius of the head disc in pixels.
        thickness: line width in pixels.
        z: drawing order (larger is nearer).
    """

    pose: str
    column: int
    rows: tuple[int, int]
    keypoints: tuple[tuple[float, float], ...]
    head_radius: float
    thickness: float
    z: int = 0

    def __post_init__(self) -> None:
        if self.pose not in POSES:
            raise ValueError(f"unknown pose {self.pose!r}; world poses: {', '.join(POSES)}")
        if len(self.keypoints) != len(COCO_KEYPOINTS):
            raise ValueError(f"a stick figure needs 17 keypoints, got {len(self.keypoints)}")

    @property
    def cells(self) -> tuple[tuple[int, int], ...]:
        return tuple((r, self.column) for r in self.rows)

    @property
    def position(self) -> str:
        return ("left", "center", "right")[self.column]


@dataclass(frozen=True)
class TextItem:
    """A word painted on the wall in :data:`INK_RGB`.

    Attributes:
        word: upper-case letters.
        row: grid row it is written across.
        origin: ``(x, y)`` top-left pixel of the first glyph.
        scale: integer glyph magnification (glyphs are 5x7 at scale 1).
    """

    word: str
    row: int
    origin: tuple[int, int]
    scale: int = 1

    @property
    def position(self) -> str:
        return ("top", "middle", "bottom")[self.row]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """COCO ``[x, y, w, h]`` of the rendered word."""
        w, h = text_extent(self.word, self.scale)
        return (self.origin[0], self.origin[1], w, h)


@dataclass(frozen=True)
class Scene:
    """Ground truth of one image of the world.

    Attributes:
        image_size: side of the square image in pixels.
        objects: the coloured shapes, in placement order.
        figure: the stick figure, if any.
        text: the painted word, if any.
        index: position of the scene in its world (``-1`` if made by hand).
    """

    image_size: int
    objects: tuple[WorldObject, ...]
    figure: StickFigure | None = None
    text: TextItem | None = None
    index: int = -1

    def __post_init__(self) -> None:
        if not isinstance(self.objects, tuple):
            object.__setattr__(self, "objects", tuple(self.objects))

    @property
    def occupied(self) -> set[tuple[int, int]]:
        """Cells taken by objects, the figure, or the text row."""
        cells = {tuple(o.cell) for o in self.objects}
        if self.figure is not None:
            cells.update(self.figure.cells)
        if self.text is not None:
            cells.update((self.text.row, c) for c in range(GRID))
        return cells  # type: ignore[return-value]

    @property
    def free_cells(self) -> list[tuple[int, int]]:
        taken = self.occupied
        return [c for c in CELL_NAMES if c not in taken]

    def max_z(self) -> int:
        zs = [o.z for o in self.objects] + ([self.figure.z] if self.figure else [])
        return max(zs, default=-1)

    def replace(self, **changes: Any) -> Scene:
        return dataclasses.replace(self, **changes)

    def signature(self) -> str:
        """The scene's discrete content: objects, figure and word, as the texts name them.

        Objects as sorted ``size colour shape row,col`` items, the figure's pose and
        cells, the painted word and its row.  Continuous jitter (centres, radii,
        keypoints) and the occlusion order are left out, so scenes that differ only in
        those (whose captions and questions differ at most in an "in front of" clause and
        in the phrasings drawn per scene) share a signature.  The splits are drawn from
        it: a held-out scene never repeats a training scene's objects, figure and word.
        """
        items = sorted(f"{o.size} {o.colour} {o.shape} {o.cell[0]},{o.cell[1]}" for o in self.objects)
        parts = ["objects=" + ";".join(items)]
        if self.figure is not None:
            parts.append(f"figure={self.figure.pose} {self.figure.column} {self.figure.rows[0]}-{self.figure.rows[1]}")
        if self.text is not None:
            parts.append(f"text={self.text.word} {self.text.row}")
        return "|".join(parts)

    # -------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-able ground truth (inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {
            "index": self.index,
            "image_size": self.image_size,
            "objects": [
                {
                    "shape": o.shape,
                    "colour": o.colour,
                    "size": o.size,
                    "cell": list(o.cell),
                    "position": o.position,
                    "center": [round(o.center[0], 4), round(o.center[1], 4)],
                    "radius": round(o.radius, 4),
                    "z": o.z,
                }
                for o in self.objects
            ],
            "figure": None,
            "text": None,
        }
        if self.figure is not None:
            f = self.figure
            out["figure"] = {
                "pose": f.pose,
                "column": f.column,
                "rows": list(f.rows),
                "keypoints": [[round(x, 4), round(y, 4)] for x, y in f.keypoints],
                "head_radius": round(f.head_radius, 4),
                "thickness": round(f.thickness, 4),
                "z": f.z,
            }
        if self.text is not None:
            t = self.text
            out["text"] = {"word": t.word, "row": t.row, "origin": list(t.origin), "scale": t.scale}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<scene>") -> Scene:
        """Rebuild a scene from :meth:`to_dict` output; errors name ``source`` and the key."""
        try:
            objects = tuple(
                WorldObject(
                    shape=o["shape"],
                    colour=o["colour"],
                    size=o["size"],
                    cell=(int(o["cell"][0]), int(o["cell"][1])),
                    center=(float(o["center"][0]), float(o["center"][1])),
                    radius=float(o["radius"]),
                    z=int(o.get("z", 0)),
                )
                for o in data["objects"]
            )
            figure = None
            if data.get("figure"):
                f = data["figure"]
                figure = StickFigure(
                    pose=f["pose"],
                    column=int(f["column"]),
                    rows=(int(f["rows"][0]), int(f["rows"][1])),
                    keypoints=tuple((float(x), float(y)) for x, y in f["keypoints"]),
                    head_radius=float(f["head_radius"]),
                    thickness=float(f["thickness"]),
                    z=int(f.get("z", 0)),
                )
            text = None
            if data.get("text"):
                t = data["text"]
                text = TextItem(
                    word=str(t["word"]),
                    row=int(t["row"]),
                    origin=(int(t["origin"][0]), int(t["origin"][1])),
                    scale=int(t.get("scale", 1)),
                )
            return cls(
                image_size=int(data["image_size"]),
                objects=objects,
                figure=figure,
                text=text,
                index=int(data.get("index", -1)),
            )
        except KeyError as err:
            raise ValueError(f"{source}: scene is missing key {err.args[0]!r}") from None
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"{source}: malformed scene: {err}") from None


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the scene sampler.

    Attributes:
        image_size: image side in pixels (32-128; 32 by default).
        min_objects: fewest coloured shapes per scene (>= 1).
        max_objects: most coloured shapes per scene (<= 3).
        p_figure: probability that a scene has a stick figure.
        p_text: probability that a scene has a painted word.
        jitter: maximum offset of an object from its cell centre, as a fraction of the side.
    """

    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 3
    p_figure: float = 0.25
    p_text: float = 0.25
    jitter: float = 0.04

    def __post_init__(self) -> None:
        if not 32 <= self.image_size <= 128:
            raise ValueError(f"image_size must be in [32, 128], got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects <= 3:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= 3, got {self.min_objects}, {self.max_objects}"
            )
        for name in ("p_figure", "p_text"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if not 0.0 <= self.jitter <= 0.1:
            raise ValueError(f"jitter must be in [0, 0.1], got {self.jitter}")

    @property
    def text_scale(self) -> int:
        """Glyph magnification of painted words (1 at 32-63 px, 2 at 64-95 px, ...)."""
        return self.image_size // 32


# -------------------------------------------------------------------- sampling
def scene_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Generator for scene ``index`` of world ``seed`` (``stream`` separates uses)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng([seed, index, stream])


def figure_keypoints(
    pose: str, cx: float, top: float, height: float, jitter: np.ndarray | None = None
) -> np.ndarray:
    """The 17 COCO keypoints ``(17, 2)`` of a front-facing stick figure.

    Args:
        pose: one of :data:`POSES`.
        cx: x of the body's axis in pixels.
        top: y of the top of the head.
        height: head-to-feet height in pixels.
        jitter: optional ``(8,)`` degrees added to the pose's joint angles.
    """
    angles = np.asarray(POSES[pose], dtype=float)
    if jitter is not None:
        angles = angles + jitter
    h = height
    kp = np.zeros((17, 2))
    kp[0] = (cx, top + 0.11 * h)  # nose
    kp[1] = (cx + 0.035 * h, top + 0.085 * h)  # left eye (the person's left = image right)
    kp[2] = (cx - 0.035 * h, top + 0.085 * h)
    kp[3] = (cx + 0.075 * h, top + 0.10 * h)
    kp[4] = (cx - 0.075 * h, top + 0.10 * h)
    kp[5] = (cx + 0.11 * h, top + 0.23 * h)  # shoulders
    kp[6] = (cx - 0.11 * h, top + 0.23 * h)
    kp[11] = (cx + 0.07 * h, top + 0.55 * h)  # hips
    kp[12] = (cx - 0.07 * h, top + 0.55 * h)

    def limb(start: np.ndarray, side: float, a1: float, a2: float, l1: float, l2: float) -> tuple:
        r1, r2 = math.radians(a1), math.radians(a1 + a2)
        mid = start + np.array([side * math.sin(r1), math.cos(r1)]) * l1 * h
        end = mid + np.array([side * math.sin(r2), math.cos(r2)]) * l2 * h
        return mid, end

    ls, le, rs, re, lh, lk, rh, rk = angles
    kp[7], kp[9] = limb(kp[5], +1.0, ls, le, 0.16, 0.15)  # left elbow, wrist
    kp[8], kp[10] = limb(kp[6], -1.0, rs, re, 0.16, 0.15)
    kp[13], kp[15] = limb(kp[11], +1.0, lh, lk, 0.21, 0.21)  # left knee, ankle
    kp[14], kp[16] = limb(kp[12], -1.0, rh, rk, 0.21, 0.21)
    return kp


def _sample_text(rng: np.random.Generator, config: WorldConfig) -> TextItem:
    size, scale = config.image_size, config.text_scale
    fitting = [w for w in WORDS if text_extent(w, scale)[0] <= size - 2]
    word = fitting[int(rng.integers(len(fitting)))]
    row = int(rng.choice([0, GRID - 1]))
    w, h = text_extent(word, scale)
    step = size / GRID
    slack = max(0, (size - w) // 2 - 1)
    dx = int(rng.integers(-min(slack, 2), min(slack, 2) + 1)) if slack else 0
    x = (size - w) // 2 + dx
    y = int(round((row + 0.5) * step - h / 2))
    return TextItem(word=word, row=row, origin=(x, max(0, min(size - h, y))), scale=scale)


def _sample_figure(rng: np.random.Generator, config: WorldConfig, free: set) -> StickFigure | None:
    spots = [
        (c, r)
        for c in range(GRID)
        for r in range(GRID - 1)
        if (r, c) in free and (r + 1, c) in free
    ]
    if not spots:
        return None
    col, row = spots[int(rng.integers(len(spots)))]
    size = config.image_size
    step = size / GRID
    pose = list(POSES)[int(rng.integers(len(POSES)))]
    height = 0.9 * 2 * step
    top = row * step + 0.05 * 2 * step
    cx = (col + 0.5) * step + rng.uniform(-1, 1) * config.jitter * size
    kp = figure_keypoints(pose, cx, top, height, jitter=rng.uniform(-8, 8, size=8))
    return StickFigure(
        pose=pose,
        column=col,
        rows=(row, row + 1),
        keypoints=tuple((float(x), float(y)) for x, y in kp),
        head_radius=0.085 * height,
        thickness=max(1.0, size / 32),
        z=0,
    )


def sample_object(
    rng: np.random.Generator, cell: tuple[int, int], config: WorldConfig, z: int = 0
) -> WorldObject:
    """A random coloured shape placed (with jitter) in ``cell``."""
    size = config.image_size
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    size_name = SIZES[int(rng.integers(len(SIZES)))]
    cx, cy = cell_center(cell, size)
    jx, jy = rng.uniform(-1, 1, size=2) * config.jitter * size
    return WorldObject(
        shape=shape,
        colour=colour,
        size=size_name,
        cell=cell,
        center=(float(cx + jx), float(cy + jy)),
        radius=SIZE_RADIUS[size_name] * size,
        z=z,
    )


def recolour_conflicts(
    objects: list[WorldObject], rng: np.random.Generator, size: int
) -> list[WorldObject]:
    """Give the later object of every touching same-coloured pair a colour none of its
    neighbours has, so that no two objects ever merge into one blob of colour."""
    objects = list(objects)
    for _ in range(len(objects)):
        conflicts = colour_conflicts(objects, size)
        if not conflicts:
            return objects
        _, j = conflicts[0]
        taken = {o.colour for o in objects}
        free = [c for c in COLOURS if c not in taken]
        objects[j] = objects[j].replace(colour=free[int(rng.integers(len(free)))])
    return objects


def sample_scene(
    rng: np.random.Generator, config: WorldConfig | None = None, *, index: int = -1
) -> Scene:
    """Sample one scene.

    Args:
        rng: the randomness (see :func:`scene_rng` for per-scene generators).
        config: sampler knobs; defaults to :class:`WorldConfig`.
        index: recorded in :attr:`Scene.index`.
    """
    config = config or WorldConfig()
    free = set(CELL_NAMES)
    text = _sample_text(rng, config) if rng.random() < config.p_text else None
    if text is not None:
        free -= {(text.row, c) for c in range(GRID)}
    figure = _sample_figure(rng, config, free) if rng.random() < config.p_figure else None
    if figure is not None:
        free -= set(figure.cells)
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    order = sorted(free)
    picks = rng.choice(len(order), size=min(n, len(order)), replace=False)
    objects = [sample_object(rng, order[int(i)], config) for i in picks]
    objects = recolour_conflicts(objects, rng, config.image_size)
    n_elements = len(objects) + (figure is not None)
    zs = rng.permutation(n_elements)
    objects = [o.replace(z=int(z)) for o, z in zip(objects, zs, strict=False)]
    if figure is not None:
        figure = dataclasses.replace(figure, z=int(zs[-1]))
    return Scene(config.image_size, tuple(objects), figure, text, index)
