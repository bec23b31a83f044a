"""Tiny synthetic scenes for task examples, the conformance suite and tests.

:func:`synthetic_scene` draws a few coloured rectangles and ellipses on a plain
background and returns the pixels with full ground truth (object boxes and
polygons, a depth map from the drawing order, a COCO-style 17-keypoint figure),
so that every task and every condition extractor can be exercised without any
dataset.  It is deliberately minimal; the procedural world of ``cm3leon.world``
is the rich generator used by the demo.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COCO_SKELETON", "synthetic_scene", "synthetic_text_image"]

# COCO person skeleton, 1-based keypoint indices (as in person_keypoints_*.json).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip

_COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
}
_SHAPES = ("square", "circle")

# A standing figure in unit coordinates (x, y), COCO keypoint order.
_FIGURE = np.array(
    [
        (0.50, 0.10), (0.47, 0.08), (0.53, 0.08), (0.44, 0.10), (0.56, 0.10),
        (0.40, 0.25), (0.60, 0.25), (0.33, 0.42), (0.67, 0.42), (0.30, 0.58),
        (0.70, 0.58), (0.43, 0.58), (0.57, 0.58), (0.42, 0.76), (0.58, 0.76),
        (0.41, 0.94), (0.59, 0.94),
    ]
)  # fmt: skip


def synthetic_scene(rng: np.random.Generator, size: int = 32, max_objects: int = 3) -> dict[str, Any]:
    """Draw a random scene.

    Returns:
        A dict with ``image`` (RGB ``PIL.Image``), ``caption``, ``objects`` (label, COCO
        box, polygon ``segmentation``, ``category_id``), ``depth`` (``(size, size)``
        float32, larger = farther), ``keypoints`` (one person, 51 numbers) and
        ``skeleton``.
    """
    from PIL import Image, ImageDraw

    background = tuple(int(v) for v in rng.integers(200, 256, size=3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    depth = np.full((size, size), 10.0, dtype=np.float32)
    objects, words = [], []
    n = int(rng.integers(1, max_objects + 1))
    for k in range(n):
        colour = str(rng.choice(list(_COLOURS)))
        shape = str(rng.choice(_SHAPES))
        w, h = (int(v) for v in rng.integers(size // 4, size // 2 + 1, size=2))
        x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        box = [x, y, x + w - 1, y + h - 1]
        mask = Image.new("L", (size, size), 0)
        for canvas, fill in ((draw, _COLOURS[colour]), (ImageDraw.Draw(mask), 255)):
            (canvas.rectangle if shape == "square" else canvas.ellipse)(box, fill=fill)
        if shape == "square":
            poly = [x, y, x + w, y, x + w, y + h, x, y + h]
        else:
            t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            px, py = x + w / 2 + w / 2 * np.cos(t), y + h / 2 + h / 2 * np.sin(t)
            poly = [float(v) for pair in zip(px, py, strict=True) for v in pair]
        depth[np.asarray(mask) > 0] = 8.0 - 2.0 * k  # later objects are drawn nearer
        label = f"{colour} {shape}"
        objects.append(
            {"label": label, "box": [float(x), float(y), float(w), float(h)],
             "category_id": 1 + _SHAPES.index(shape), "segmentation": [poly]}
        )  # fmt: skip
        words.append(f"a {label}")
    figure = _FIGURE * (size - 1)
    keypoints = [float(v) for x, y in figure for v in (x, y, 2.0)]
    caption = " and ".join(words) + f" on a {'light' if sum(background) > 690 else 'pale'} background"
    return {
        "image": image,
        "caption": caption,
        "objects": objects,
        "depth": depth,
        "keypoints": [keypoints],
        "skeleton": [list(p) for p in COCO_SKELETON],
    }


def synthetic_text_image(text: str, size: int = 64) -> Any:
    """Render ``text`` in black on white with PIL's default bitmap font."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (255, 255, 255))
    ImageDraw.Draw(image).text((2, size // 2 - 6), text, fill=(0, 0, 0))
    return image
