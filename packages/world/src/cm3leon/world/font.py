"""A 5x7 bitmap font for the world's rendered text (the OCR / "how to write" task).

The glyphs are drawn here rather than loaded from a font file so that rendering is
identical on every machine and never depends on which fonts are installed.  Only
upper-case ASCII letters exist; words are upper-cased before rendering.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["GLYPH_HEIGHT", "GLYPH_WIDTH", "glyph", "text_bitmap", "text_extent"]

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7

# Each glyph is 7 rows of 5 columns; "#" is ink.
_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
}


@functools.cache
def glyph(char: str) -> np.ndarray:
    """The ``(7, 5)`` boolean bitmap of one upper-case letter.

    Raises:
        ValueError: the character has no glyph.
    """
    rows = _GLYPHS.get(char.upper())
    if rows is None:
        raise ValueError(f"no glyph for character {char!r}; the world font has A-Z only")
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def text_extent(word: str, scale: int = 1) -> tuple[int, int]:
    """``(width, height)`` in pixels of ``word`` rendered at integer ``scale``."""
    if not word:
        return 0, 0
    width = (len(word) * (GLYPH_WIDTH + 1) - 1) * scale
    return width, GLYPH_HEIGHT * scale


@functools.lru_cache(maxsize=4096)
def text_bitmap(word: str, scale: int = 1) -> np.ndarray:
    """The ``(7*scale, width)`` boolean bitmap of ``word`` (one blank column between letters)."""
    if scale < 1:
        raise ValueError(f"text scale must be >= 1, got {scale}")
    width, height = text_extent(word, scale)
    out = np.zeros((GLYPH_HEIGHT, width // scale if width else 0), dtype=bool)
    for i, char in enumerate(word):
        x = i * (GLYPH_WIDTH + 1)
        out[:, x : x + GLYPH_WIDTH] = glyph(char)
    if scale > 1:
        out = np.kron(out, np.ones((scale, scale), dtype=bool))
    out.setflags(write=False)
    return out
