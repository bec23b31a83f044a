"""cm3leon's OCR ("how to write") format, ``ocr.jsonl`` -- read and written.

There is no public format for this task (the paper mined Shutterstock with an OCR
detector), so cm3leon defines one, which the procedural world exports::

    <split>/ocr.jsonl           {"image": "images/<id12>.jpg", "text": "OPEN 24 HOURS"} per line
    <split>/images/<id12>.jpg   image paths are relative to the JSONL file

An optional ``"id"`` names the line (default: its line number).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cm3leon.core.formats.common import entry_field, write_jsonl

__all__ = ["OCRLine", "ocr_file_names", "parse_ocr_line", "write_ocr"]


@dataclass(frozen=True)
class OCRLine:
    """One image with the text written in it (``id``: the line's, else None)."""

    image: str
    text: str
    id: str | None = None


def ocr_file_names(split: str | None) -> list[str]:
    """Where the JSONL of ``split`` may sit in a dataset folder."""
    return [f"ocr_{split}.jsonl", f"{split}/ocr.jsonl"] if split else ["ocr.jsonl"]


def parse_ocr_line(obj: Any, where: str) -> OCRLine:
    """A line checked: ``text`` and ``image`` strings."""
    text = entry_field(obj, "text", str, where)
    image = entry_field(obj, "image", str, where)
    return OCRLine(image, text, str(obj["id"]) if "id" in obj else None)


def write_ocr(path: Path, lines: Sequence[OCRLine]) -> None:
    """One ``ocr.jsonl`` (``id`` written only where set)."""
    write_jsonl(path, [{"image": x.image, "text": x.text} | ({"id": x.id} if x.id is not None else {})
                       for x in lines])  # fmt: skip
