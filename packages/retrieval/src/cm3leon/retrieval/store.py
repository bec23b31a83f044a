"""Row -> document storage for memory banks.

Two on-disk forms, named by the bank manifest's ``documents.kind``:

* ``"shards"`` (what ``cm3leon retrieval build`` writes): documents **by reference**.
  ``documents.refs.npy`` (``(N, 2)`` int64: source index, sample index within that
  source) points into the document-shard directories the bank was built from; the
  manifest lists each source's path and the SHA-256 of its ``index.json``.  A document
  is decoded from its MDS shard file when it is retrieved
  (:class:`ShardDocumentStore`); 16 bytes per document instead of a PNG copy.
* ``"jsonl"`` (banks built in memory from documents that live in no dataset, and every
  bank of format 1): a copy of each document, ``documents.jsonl`` (one
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
from cm3leon.retrieval.sources import SourceError

__all__ = [
    "DOCUMENTS_FILE",
    "OFFSETS_FILE",
    "REFS_FILE",
    "DocumentStore",
    "JsonlDocumentStore",
    "ListDocumentStore",
    "ShardDocumentStore",
    "write_jsonl_documents",
]

DOCUMENTS_FILE = "documents.jsonl"
OFFSETS_FILE = "documents.offsets.npy"
REFS_FILE = "documents.refs.npy"


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

    files = (DOCUMENTS_FILE, OFFSETS_FILE)

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


class ShardDocumentStore:
    """Documents by reference: rows -> ``(source, sample)`` in document-shard directories.

    Args:
        sources: ``[{"path", "index_sha256", "num_samples"}, ...]``
            (:func:`cm3leon.retrieval.sources.source_record`).
        refs: ``(N, 2)`` int64, row -> (source index, sample index within the source).
        verify: SHA-256-check each shard file (against the pinned ``index.json``) the first
            time a document of it is fetched; sizes are always checked.
        where: what to name in errors (the bank directory).

    Raises:
        SourceError: a source directory is missing, or its ``index.json`` is not the one the
            bank was built from, or a reference points outside it.
    """

    files = (REFS_FILE,)

    def __init__(self, sources: Sequence[dict], refs: np.ndarray, *, verify: bool = True,
                 where: str | Path = "<bank>") -> None:
        refs = np.asarray(refs, dtype=np.int64)
        if refs.ndim != 2 or refs.shape[1] != 2:
            raise ValueError(f"{where}: document references must be (N, 2), got {refs.shape}")
        self.sources = [dict(s) for s in sources]
        self.refs = refs
        self.verify = verify
        self.where = str(where)
        self._entries = [self._check_source(i, s) for i, s in enumerate(self.sources)]
        self._starts = [np.cumsum([0] + [int(e["samples"]) for e in entries]) for entries in self._entries]
        self._readers: dict[tuple[int, int], object] = {}
        for i, source in enumerate(self.sources):
            mine = refs[refs[:, 0] == i, 1]
            if len(mine) and (mine.min() < 0 or mine.max() >= int(self._starts[i][-1])):
                raise SourceError(f"{self.where}: references samples outside {source['path']}")
        if len(refs) and (refs[:, 0].min() < 0 or refs[:, 0].max() >= len(self.sources)):
            raise SourceError(f"{self.where}: references a source index outside 0..{len(self.sources) - 1}")

    def _check_source(self, i: int, source: dict) -> list[dict]:
        from cm3leon.core.io import sha256_file
        from cm3leon.core.shards import INDEX_FILE
        from cm3leon.retrieval.sources import dataset_shards

        path = Path(source["path"])
        hint = "restore it there, or rebuild the bank (cm3leon retrieval build)"
        if not (path / INDEX_FILE).is_file():
            raise SourceError(f"{self.where}: its documents live in {path}, which is missing ({hint})")
        digest = sha256_file(path / INDEX_FILE)
        if digest != source["index_sha256"]:
            raise SourceError(f"{self.where}: document source {path} changed since the bank was built "
                              f"({INDEX_FILE} SHA-256 {digest[:12]}..., bank recorded "
                              f"{source['index_sha256'][:12]}...); {hint}")
        try:
            return dataset_shards(path)[1]
        except ValueError as err:
            raise SourceError(f"{self.where}: document source {path}: {err}") from None

    def __len__(self) -> int:
        return len(self.refs)

    def get(self, rows: Sequence[int]) -> list[Document]:
        from cm3leon.retrieval.sources import sample_document

        out: list[Document] = []
        for r in rows:
            r = int(r)
            if not 0 <= r < len(self):
                raise IndexError(f"{self.where}: row {r} out of range [0, {len(self)})")
            source, sample = (int(v) for v in self.refs[r])
            shard = int(np.searchsorted(self._starts[source], sample, side="right")) - 1
            reader = self._reader(source, shard)
            path, entry = Path(self.sources[source]["path"]), self._entries[source][shard]
            out.append(sample_document(reader, path, entry, sample - int(self._starts[source][shard])))
        return out

    def _reader(self, source: int, shard: int) -> object:
        from cm3leon.retrieval.sources import open_shard

        key = (source, shard)
        if key not in self._readers:
            path = Path(self.sources[source]["path"])
            self._readers[key] = open_shard(path, self._entries[source][shard], check_hash=self.verify)
        return self._readers[key]

    def write(self, directory: Path) -> dict:
        """Write ``documents.refs.npy`` into ``directory``; returns the manifest's ``documents``."""
        np.save(directory / REFS_FILE, self.refs, allow_pickle=False)
        return {"kind": "shards", "sources": self.sources}

    @classmethod
    def load(cls, directory: Path, documents: dict, *, verify: bool = True) -> ShardDocumentStore:
        refs = np.load(directory / REFS_FILE, allow_pickle=False)
        return cls(documents.get("sources") or [], refs, verify=verify, where=directory)
