"""InstructPix2Pix (Brooks et al., 2023): the released sample folders and the parquet release.

Folder layout (``clip-filtered-dataset``)::

    <root>/<sample>/prompt.json      {"input": "<input caption>", "edit": "<instruction>",
                                      "output": "<edited caption>"}
    <root>/<sample>/<seed>_0.jpg     input image of one seed
    <root>/<sample>/<seed>_1.jpg     edited image of that seed
    <root>/<sample>/metadata.jsonl   {"seed": <seed>} per seed

Parquet layout (the Hugging Face ``instructpix2pix`` datasets): columns
:data:`PARQUET_COLUMNS`, the image columns being structs ``{"bytes": ..., "path": ...}``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cm3leon.core.formats.common import (
    EntryError,
    FormatError,
    entry_field,
    save_jpeg,
    write_json,
    write_jsonl,
)

__all__ = [
    "PARQUET_COLUMNS",
    "Prompt",
    "decode_image_cell",
    "first_image",
    "iter_parquet_rows",
    "read_prompt",
    "sample_seeds",
    "write_sample",
]

PARQUET_COLUMNS = ("original_prompt", "original_image", "edit_prompt", "edited_prompt", "edited_image")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Prompt:
    """A sample's ``prompt.json`` (texts as written)."""

    input: str
    edit: str
    output: str


def read_prompt(file: Path) -> Prompt:
    """A ``prompt.json`` with non-empty ``input``, ``edit`` and ``output`` strings.

    Raises:
        EntryError: not JSON (``bad_json``), or a key missing or not a string.
    """
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EntryError(f"{file}: not valid JSON: {err}", reason="bad_json") from None
    values = [entry_field(data, k, str, str(file)) for k in ("input", "edit", "output")]
    return Prompt(*values)


def sample_seeds(sample: Path) -> list[str]:
    """The seeds of a sample folder that have a ``<seed>_0.jpg`` or ``<seed>_1.jpg``, sorted."""
    return sorted({p.name.rsplit("_", 1)[0] for p in sample.glob("*_[01].jpg")})


def first_image(sample: Path, suffix: str) -> Path | None:
    """The first (sorted) image of ``sample`` whose stem ends with ``suffix`` (``_0``/``_1``)."""
    found = sorted(p for p in sample.iterdir() if p.stem.endswith(suffix) and p.suffix.lower() in IMAGE_SUFFIXES)
    return found[0] if found else None


def write_sample(folder: Path, seed: int, source: np.ndarray, target: np.ndarray, prompt: Prompt) -> None:
    """One sample folder: ``<seed>_0.jpg``, ``<seed>_1.jpg``, ``prompt.json``, ``metadata.jsonl``."""
    save_jpeg(folder / f"{seed}_0.jpg", source)
    save_jpeg(folder / f"{seed}_1.jpg", target)
    write_json(folder / "prompt.json", {"input": prompt.input, "edit": prompt.edit, "output": prompt.output})
    write_jsonl(folder / "metadata.jsonl", [{"seed": seed}])


def iter_parquet_rows(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, {column: value})`` of a parquet file, streamed 64 rows at a time.

    Needs ``pyarrow`` (imported here only; ``cm3leon-tasks``, which reads the release, depends on it).

    Raises:
        FormatError: not a parquet file, or a column of :data:`PARQUET_COLUMNS` missing.
    """
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except Exception as err:  # pyarrow raises several types for non-parquet input
        raise FormatError(f"{file}: not a readable parquet file: {err}") from None
    missing = [c for c in PARQUET_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise FormatError(f"{file}: missing column(s) {missing}; has {pf.schema_arrow.names}")
    row = 0
    for batch in pf.iter_batches(batch_size=64, columns=list(PARQUET_COLUMNS)):
        for values in batch.to_pylist():
            yield row, values
            row += 1


def decode_image_cell(cell: Any, where: str) -> Any:
    """An image struct cell ``{"bytes", "path"}`` as an RGB ``PIL.Image``.

    Raises:
        EntryError: no bytes (``missing_image``) or undecodable bytes (``corrupt_image``).
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(cell, dict) or not isinstance(cell.get("bytes"), (bytes, bytearray)):
        raise EntryError(f"{where}: image must be a struct with 'bytes', got {type(cell).__name__}",
                         reason="missing_image")  # fmt: skip
    try:
        with Image.open(io.BytesIO(cell["bytes"])) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise EntryError(f"{where}: image bytes are corrupt: {err}", reason="corrupt_image") from None
