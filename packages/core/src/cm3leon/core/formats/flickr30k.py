"""Flickr30k in Karpathy's split file ``dataset_flickr30k.json`` -- read and written.

Format::

    {"dataset": "flickr30k",
     "images": [{"filename": "1000092795.jpg", "imgid": 0, "split": "train" | "val" | "test",
                 "sentences": [{"raw": "Two young guys ...", "tokens": [...], "imgid": 0,
                                "sentid": 0}, ...],
                 "sentids": [0, ...]}]}

with the images in ``flickr30k-images/<filename>``.  ``imgid``, ``sentid`` and
``tokens`` are derived when writing (``tokens``: lower-cased ``[a-z0-9]+`` runs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cm3leon.core.formats.common import EntryError, FormatError, entry_field, load_json, write_json

__all__ = ["KarpathyImage", "load_karpathy", "parse_karpathy_image", "write_karpathy"]


@dataclass(frozen=True)
class KarpathyImage:
    """One image of a Karpathy split file with its sentences (``raw``, as written)."""

    filename: str
    split: str
    sentences: tuple[str, ...]


def load_karpathy(path: Path) -> list[Any]:
    """The raw ``images`` entries (checked by :func:`parse_karpathy_image`).

    Raises:
        FormatError: not JSON, or no top-level ``images`` list.
    """
    data = load_json(path)
    if not isinstance(data.get("images"), list):
        raise FormatError(f"{path}: needs a top-level 'images' list")
    return data["images"]


def parse_karpathy_image(entry: Any, where: str) -> KarpathyImage:
    """An image entry checked: ``filename`` and at least one sentence with a ``raw`` string."""
    filename = entry_field(entry, "filename", str, where)
    sentences = entry_field(entry, "sentences", list, where)
    raws = tuple(entry_field(s, "raw", str, f"{where}.sentences[{k}]") for k, s in enumerate(sentences))
    if not raws:
        raise EntryError(f"{where}: no sentences", reason="empty_text")
    return KarpathyImage(filename, str(entry.get("split", "")), raws)


def write_karpathy(path: Path, images: Sequence[KarpathyImage], dataset: str = "flickr30k") -> None:
    """``dataset_<dataset>.json``; ``imgid`` is the image's position, ``sentid`` counts on."""
    rows, sent_id = [], 0
    for imgid, image in enumerate(images):
        sentences = []
        for raw in image.sentences:
            tokens = re.findall(r"[a-z0-9]+", raw.lower())
            sentences.append({"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sent_id})
            sent_id += 1
        rows.append({"filename": image.filename, "imgid": imgid, "split": image.split,
                     "sentences": sentences, "sentids": [s["sentid"] for s in sentences]})  # fmt: skip
    write_json(path, {"images": rows, "dataset": dataset})
