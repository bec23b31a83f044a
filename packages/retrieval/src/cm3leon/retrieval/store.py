"""Row -> document storage for memory banks.

A bank keeps its own copy of the documents it indexes, so that it stays valid
when the source shards move: ``documents.jsonl`` (one
:meth:`cm3leon.core.documents.Document.to_json` per line, images as PNG) plus
``documents.offsets.npy`` (``(N + 1,)`` int64 byte offsets) for random access.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from cm3leon.core.documents import Document

__all__ = [
    "DOCUMENTS_FILE",
    "OFFSETS_FILE",
    "DocumentStore",
    "JsonlDocumentStore",
    "ListDocumentStore",
    "write_jsonl_documents",
]

DOCUMENTS_FILE = "documents.jsonl"
OFFSETS_FILE = "documents.offsets.npy"


@runtime_checkable
class DocumentStore(Protocol):
    """Random access to the documents of a bank, by row."""

    def __len__(self) -> int: ...

    def get(self, rows: Sequence[int]) -> list[Document]:
        """Documents at ``rows`` (in that order)."""
        ...


class ListDocumentStore:
    """Documents held in memory."""

    def __init__(self, docs: Sequence[Document]) -> None:
        self.docs = list(docs)

    def __len__(self) -> int:
        return len(self.docs)

    def get(self, rows: Sequence[int]) -> list[Document]:
        return [self.docs[int(r)] for r in rows]


def write_jsonl_documents(docs: Iterable[Document], directory: str | Path) -> tuple[Path, int]:
    """Stream ``documents.jsonl`` + offsets into ``directory``; returns ``(path, count)``.

    The files are written in place: call it inside
    :func:`cm3leon.core.io.atomic_directory` (as bank saving does).
    """
    directory = Path(directory)
    offsets = [0]
    with open(directory / DOCUMENTS_FILE, "wb") as fh:
        for doc in docs:
            line = (json.dumps(doc.to_json(), sort_keys=True) + "\n").encode("utf-8")
            fh.write(line)
            offsets.append(offsets[-1] + len(line))
    np.save(directory / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64), allow_pickle=False)
    return directory / DOCUMENTS_FILE, len(offsets) - 1


class JsonlDocumentStore:
    """Documents in ``documents.jsonl``, read by byte offset (the file is opened lazily)."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / DOCUMENTS_FILE
        offsets_path = Path(directory) / OFFSETS_FILE
        if not self.path.is_file() or not offsets_path.is_file():
            raise FileNotFoundError(f"{directory}: missing {DOCUMENTS_FILE} or {OFFSETS_FILE}")
        self.offsets = np.load(offsets_path, allow_pickle=False)
        size = self.path.stat().st_size
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or int(self.offsets[-1]) != size:
            raise ValueError(f"{offsets_path}: offsets do not match {self.path} ({size} bytes)")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, rows: Sequence[int]) -> list[Document]:
        out: list[Document] = []
        with open(self.path, "rb") as fh:
            for r in rows:
                r = int(r)
                if not 0 <= r < len(self):
                    raise IndexError(f"{self.path}: row {r} out of range [0, {len(self)})")
                fh.seek(int(self.offsets[r]))
                raw = fh.read(int(self.offsets[r + 1] - self.offsets[r]))
                try:
                    data = json.loads(raw)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.path}: row {r} is not valid JSON: {err}") from None
                out.append(Document.from_json(data, source=f"{self.path}:row {r}"))
        return out
