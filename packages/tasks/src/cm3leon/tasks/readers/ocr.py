"""OCR ("how to write") reader: cm3leon's ``ocr.jsonl`` format.

There is no standard public format for this task (the paper mined Shutterstock
with an OCR detector), so cm3leon defines one, which the procedural world exports::

    {"image": "<path relative to the JSONL file>", "text": "OPEN 24 HOURS"}

one JSON object per line.  ``path`` is the file or a folder holding ``ocr.jsonl``
(with ``split``: ``ocr_<split>.jsonl`` or ``<split>/ocr.jsonl``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cm3leon.tasks.readers.common import (
    FormatError,
    ReadContext,
    entry_field,
    iter_jsonl,
    load_image,
    reader,
)

__all__ = ["read_ocr"]


@reader
def read_ocr(path: Path, *, split: str | None, ctx: ReadContext) -> Iterator[dict]:
    """One :class:`OCRRecord` per line: ``{"id": "<line>", "image", "text"}``."""
    names = [f"ocr_{split}.jsonl", f"{split}/ocr.jsonl"] if split else ["ocr.jsonl"]
    file = path if path.is_file() else next((path / n for n in names if (path / n).is_file()), None)
    if file is None:
        raise FormatError(f"{path}: no {' or '.join(names)} here")
    for lineno, obj in iter_jsonl(file, ctx):
        where = f"{file}: line {lineno}"

        def make(o: dict = obj, w: str = where, n: int = lineno) -> dict:
            text = entry_field(o, "text", str, w)
            image = load_image(file.parent / entry_field(o, "image", str, w), w)
            return {"id": str(o.get("id", n)), "image": image, "text": text}

        record = ctx.build(make)
        if record is not None:
            yield record
