"""Stanford Image Paragraph (Krause et al., 2017) -- read and written.

Format::

    paragraphs_v1.json   [{"image_id": 2356347, "url": "https://.../VG_100K_2/2356347.jpg",
                           "paragraph": "A large building with a clock tower. ..."}, ...]
    train_split.json     [2356347, ...]      (also val_split.json, test_split.json)

Images (Visual Genome) are named by the basename of ``url``, else ``<image_id>.jpg``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cm3leon.core.formats.common import FormatError, entry_field, load_json, write_json

__all__ = [
    "Paragraph",
    "image_names",
    "load_paragraphs",
    "load_split_ids",
    "parse_paragraph",
    "write_image_paragraph",
]


@dataclass(frozen=True)
class Paragraph:
    """One paragraph entry (the paragraph as written)."""

    image_id: int | str
    url: str | None
    paragraph: str


def load_paragraphs(path: Path) -> list[Any]:
    """The raw entries of ``paragraphs_v1.json`` (checked by :func:`parse_paragraph`)."""
    return load_json(path, list)


def load_split_ids(path: Path, split: str) -> set[str]:
    """The image ids (as strings) of ``<split>_split.json`` next to the paragraphs file ``path``.

    Raises:
        FormatError: the split file does not exist or is not a JSON array.
    """
    split_file = path.parent / f"{split}_split.json"
    if not split_file.is_file():
        raise FormatError(f"{path}: split {split!r} needs {split_file}")
    return {str(i) for i in load_json(split_file, list)}


def parse_paragraph(entry: Any, where: str) -> Paragraph:
    """An entry checked: ``image_id`` (int or str) and a non-empty ``paragraph``."""
    image_id = entry_field(entry, "image_id", (int, str), where)
    paragraph = entry_field(entry, "paragraph", str, where)
    url = entry.get("url")
    return Paragraph(image_id, url if isinstance(url, str) else None, paragraph)


def image_names(entry: Any) -> list[str]:
    """File names the image of a raw entry may have: ``url``'s basename, ``<image_id>.jpg|.png``."""
    names = []
    if isinstance(entry, dict):
        if isinstance(entry.get("url"), str) and entry["url"].strip():
            names.append(entry["url"].rstrip("/").rsplit("/", 1)[-1])
        if isinstance(entry.get("image_id"), (int, str)):
            names += [f"{entry['image_id']}.jpg", f"{entry['image_id']}.png"]
    return names or ["<no image name>"]


def write_image_paragraph(root: Path, paragraphs: Sequence[Paragraph], splits: Mapping[str, Sequence[Any]]) -> None:
    """``root/paragraphs_v1.json`` and ``root/<split>_split.json`` for each of ``splits``."""
    write_json(root / "paragraphs_v1.json",
               [{"url": p.url, "image_id": p.image_id, "paragraph": p.paragraph} for p in paragraphs])  # fmt: skip
    for split, ids in splits.items():
        write_json(root / f"{split}_split.json", list(ids))
