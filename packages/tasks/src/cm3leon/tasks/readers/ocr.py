"""OCR ("how to write") reader: cm3leon's ``ocr.jsonl`` format.

There is no standard public format for this task (the paper mined Shutterstock
with an OCR detector), so cm3leon defines one, which the procedural world exports::

    {"image": "<path relative to the JSONL file>", "text": "OPEN 24 HOURS"}

one JSON object per line.  ``path`` is the file or a folder holding ``ocr.jsonl``
(with ``split``: ``ocr_<split>.jsonl`` or ``<split>/ocr.jsonl``).  The format is
:mod:`cm3leon.core.formats.ocr`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cm3leon.core.formats.ocr import ocr_file_names, parse_ocr_line
from cm3leon.tasks.readers.common import (
    FormatError,
    ReadContext,
    iter_jsonl,
    load_image,
    reader,
)

__all__ = ["read_ocr"]


@reader
def read_ocr(path: Path, *, split: str | None, ctx: ReadContext) -> Iterator[dict]:
    """One :class:`OCRRecord` per line: ``{"id": "<line>", "image", "text"}``."""
    names = ocr_file_names(split)
    file = path if path.is_file() else next((path / n for n in names if (path / n).is_file()), None)
    if file is None:
        raise FormatError(f"{path}: no {' or '.join(names)} here")
    for lineno, obj in iter_jsonl(file, ctx):
        where = f"{file}: line {lineno}"

        def make(o: dict = obj, w: str = where, n: int = lineno) -> dict:
            row = parse_ocr_line(o, w)
            image = load_image(file.parent / row.image, w)
            return {"id": row.id if row.id is not None else str(n), "image": image, "text": row.text}

        record = ctx.build(make)
        if record is not None:
            yield record
