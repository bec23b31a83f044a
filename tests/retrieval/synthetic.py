"""Coloured-shape caption-image documents for retrieval tests (no external data)."""

from __future__ import annotations

import numpy as np

from cm3leon.core.documents import Document

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (230, 210, 30),
    "purple": (140, 40, 180),
    "orange": (240, 130, 20),
}
SHAPES = ("square", "circle", "triangle")
PLACES = ("left", "right")


def render(colour: str, shape: str, place: str, size: int = 32) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 image: one filled shape on a grey background."""
    img = np.full((size, size, 3), 200, dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    cx = size * (0.3 if place == "left" else 0.7)
    cy, r = size / 2, size * 0.22
    if shape == "square":
        mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    elif shape == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    else:
        mask = (yy >= cy - r) & (yy <= cy + r) & (abs(xx - cx) <= (yy - (cy - r)) / 2)
    img[mask] = COLOURS[colour]
    return img


def shape_documents(n: int, *, seed: int = 0, size: int = 32, prefix: str = "doc") -> list[Document]:
    """``n`` documents ``caption + image`` with random colour, shape and place."""
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    docs = []
    for i in range(n):
        c = colours[rng.integers(len(colours))]
        s = SHAPES[rng.integers(len(SHAPES))]
        p = PLACES[rng.integers(len(PLACES))]
        caption = f"a {c} {s} on the {p}"
        docs.append(Document.of(caption, render(c, s, p, size), id=f"{prefix}-{i:05d}",
                                meta={"colour": c, "shape": s, "place": p}))
    return docs


def all_combinations(size: int = 32) -> list[Document]:
    """One document per (colour, shape, place) combination (36)."""
    docs = []
    for c in COLOURS:
        for s in SHAPES:
            for p in PLACES:
                docs.append(Document.of(f"a {c} {s} on the {p}", render(c, s, p, size), id=f"{c}-{s}-{p}"))
    return docs
