"""The memory bank: a FAISS index over document vectors, ids and the documents.

On disk (written atomically as one directory, ``COMPLETE`` marker last)::

    bank/
      manifest.json            kind, size, dim, factory string, search params,
                               encoder fingerprint, documents (kind, sources),
                               sizes + SHA-256 of every file
      index.faiss              the FAISS index (row i = document i)
      ids.json                 row -> document id
      documents.refs.npy       row -> (source, sample): documents by reference into the
                               document shards listed (path + index.json SHA-256) in the
                               manifest -- what ``cm3leon retrieval build`` writes
      documents.jsonl          or: row -> a copy of the document (banks built in memory
      documents.offsets.npy        from documents that live in no dataset; format-1 banks)
      vectors.npy              only with ``index.rerank.source: disk``: the float vectors
                               (row i = document i), memory-mapped at load, not resident;
                               searches re-rank the index's shortlist against them
                               (:mod:`cm3leon.retrieval.rerank`); the manifest's ``rerank``
                               field records dtype and shortlist
      COMPLETE

:meth:`MemoryBank.load` checks the marker, the manifest, every file's size and
hash, the index file's size against a byte limit
(:func:`cm3leon.retrieval.index.max_index_bytes`) and the index header's dimension
before FAISS reads the index; after reading, ``index.ntotal`` must equal the manifest's
size, the number of ids and the number of documents (errors name the files).  A bank
by reference also checks that each source directory exists and still has the
``index.json`` it was built from (:class:`cm3leon.retrieval.store.ShardDocumentStore`);
banks of format 1 (with document copies) load as before, and so do banks without
``vectors.npy`` (their manifest has no ``rerank`` field, or an empty one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.retrieval.index import (
    IndexIntegrityError,
    add_vectors,
    configure_search,
    make_index,
    read_index_verified,
    reconstruct,
    train_index,
    write_index,
)
from cm3leon.retrieval.rerank import (
    VECTORS_FILE,
    open_vectors,
    row_blocks,
    search_reranked,
    write_vectors,
)
from cm3leon.retrieval.store import (
    DOCUMENTS_FILE,
    OFFSETS_FILE,
    DocumentStore,
    JsonlDocumentStore,
    ListDocumentStore,
    ShardDocumentStore,
    write_jsonl_documents,
)

__all__ = [
    "BANK_FORMAT",
    "IDS_FILE",
    "INDEX_FILE",
    "MANIFEST_FILE",
    "BankError",
    "BankManifest",
    "MemoryBank",
    "read_manifest",
    "verify_files",
]

BANK_FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: documents always copied (documents.jsonl); no "documents" field
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"


class BankError(ValueError):
    """A bank directory is incomplete, inconsistent or of the wrong kind."""


@dataclass(frozen=True)
class BankManifest:
    """What a bank directory holds; every file is recorded with its size and SHA-256.

    Attributes:
        kind: ``"faiss"`` (dense) or ``"bm25"``.
        size: number of documents (rows).
        dim: vector dimension (0 for banks without vectors).
        factory: FAISS index-factory string.
        search_params: FAISS ``ParameterSpace`` string applied after loading.
        encoder: name and fingerprint of the encoder that produced the vectors.
        files: file name -> ``{"bytes": n, "sha256": hex}``.
        extra: kind-specific settings (BM25 ``k1``/``b``, training sample size, ...).
        documents: how documents are stored: ``{"kind": "jsonl"}`` (copies) or
            ``{"kind": "shards", "sources": [{"path", "index_sha256", "num_samples"}]}``.
        rerank: empty, or ``{"source": "disk", "file": "vectors.npy", "dtype", "shortlist"}``
            for a bank whose vectors are kept on disk for exact re-ranking.
    """

    kind: str
    size: int
    dim: int = 0
    factory: str = ""
    search_params: str = ""
    encoder: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=lambda: {"kind": "jsonl"})
    format: int = BANK_FORMAT
    rerank: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.rerank:  # banks without vectors on disk stay readable by earlier versions
            del out["rerank"]
        return out


def read_manifest(directory: str | Path, *, kind: str | None = None) -> BankManifest:
    """Read and validate ``manifest.json`` of a complete bank directory."""
    from cm3leon.core.io import is_complete, read_json

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: bank directory not found")
    if not is_complete(directory):
        raise BankError(f"{directory}: no COMPLETE marker (an interrupted build?); rebuild the bank")
    data = read_json(directory / MANIFEST_FILE)
    if not isinstance(data, dict):
        raise BankError(f"{directory / MANIFEST_FILE}: must hold a JSON object")
    try:
        manifest = BankManifest(**data)
    except TypeError as err:
        raise BankError(f"{directory / MANIFEST_FILE}: unexpected manifest fields: {err}") from None
    if manifest.format not in READABLE_FORMATS:
        raise BankError(f"{directory}: bank format {manifest.format}, this version reads formats "
                        f"{', '.join(map(str, READABLE_FORMATS))}; rebuild it with `cm3leon retrieval build`")
    if manifest.documents.get("kind") not in ("jsonl", "shards"):
        raise BankError(f"{directory / MANIFEST_FILE}: unknown documents kind {manifest.documents.get('kind')!r}")
    if kind is not None and manifest.kind != kind:
        raise BankError(f"{directory}: a {manifest.kind!r} bank, expected a {kind!r} bank")
    return manifest


def file_record(path: Path) -> dict[str, Any]:
    from cm3leon.core.io import sha256_file

    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def verify_files(directory: Path, manifest: BankManifest, names: Sequence[str]) -> None:
    """Check size and SHA-256 of ``names`` against the manifest (before parsing them)."""
    from cm3leon.core.io import sha256_file

    for name in names:
        rec = manifest.files.get(name)
        if rec is None:
            raise BankError(f"{directory / MANIFEST_FILE}: no record for {name}")
        path = directory / name
        if not path.is_file():
            raise BankError(f"{path}: missing (listed in the manifest)")
        if path.stat().st_size != rec["bytes"] or sha256_file(path) != rec["sha256"]:
            raise IndexIntegrityError(f"{path}: size or SHA-256 does not match the manifest; refusing to load")


class MemoryBank:
    """Dense document vectors in a FAISS index, with ids and documents.

    Args:
        index: a FAISS index holding ``len(ids)`` unit vectors (row = position).
        ids: document id per row.
        store: documents per row.
        factory: the index-factory string the index was built from.
        search_params: FAISS search parameters in effect.
        encoder: ``{"name", "fingerprint"}`` of the encoder that produced the vectors.
        extra: free-form build settings recorded in the manifest.
        manifest: set when loaded from / saved to disk.
        disk_vectors: ``(N, D)`` float vectors (a read-only memmap of ``vectors.npy`` once
            loaded); when given, :meth:`search` re-ranks ``shortlist`` index candidates
            against them and :meth:`vectors` reads them (the index needs no direct map).
        shortlist: candidates per query re-ranked against ``disk_vectors``.
    """

    def __init__(
        self,
        index: Any,
        ids: Sequence[str],
        store: DocumentStore,
        *,
        factory: str = "Flat",
        search_params: str = "",
        encoder: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        manifest: BankManifest | None = None,
        disk_vectors: np.ndarray | None = None,
        shortlist: int = 100,
    ) -> None:
        if index.ntotal != len(ids) or len(store) != len(ids):
            raise BankError(f"bank rows disagree: index {index.ntotal}, ids {len(ids)}, documents {len(store)}")
        if disk_vectors is not None and tuple(disk_vectors.shape) != (len(ids), index.d):
            raise BankError(f"disk vectors of shape {tuple(disk_vectors.shape)} do not match {len(ids)} rows x {index.d}")
        if disk_vectors is not None and shortlist < 1:
            raise BankError(f"rerank shortlist must be >= 1, got {shortlist}")
        self.disk_vectors = disk_vectors
        self.shortlist = int(shortlist)
        self.index = index
        self.ids = list(ids)
        self.store = store
        self.factory = factory
        self.search_params = search_params
        self.encoder = dict(encoder or {})
        self.extra = dict(extra or {})
        self.manifest = manifest

    # ----------------------------------------------------------------- build
    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        docs: Sequence[Document],
        *,
        factory: str = "Flat",
        search_params: str = "",
        train_size: int = 65536,
        seed: int = 0,
        encoder: dict[str, str] | None = None,
        rerank: dict[str, Any] | None = None,
    ) -> MemoryBank:
        """Index ``vectors (N, D)`` of ``docs`` in memory (single process).

        Indexes that need training are trained on ``train_size`` rows sampled with ``seed``.
        ``rerank`` (``{"shortlist": N, "dtype": "float16"}``): also keep the vectors (in that
        dtype) for exact re-ranking; :meth:`save` writes them to ``vectors.npy``.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(docs):
            raise BankError(f"{len(docs)} documents but vectors of shape {vectors.shape}")
        index = make_index(vectors.shape[1], factory)
        train_index(index, training_sample(vectors, train_size, seed))
        add_vectors(index, vectors)
        configure_search(index, search_params, direct_map=rerank is None)
        disk = None if rerank is None else vectors.astype(rerank.get("dtype", "float16"))
        return cls(
            index, [d.id for d in docs], ListDocumentStore(docs), factory=factory,
            search_params=search_params, encoder=encoder, extra={"train_size": train_size, "seed": seed},
            disk_vectors=disk, shortlist=int((rerank or {}).get("shortlist", 100)),
        )

    # ---------------------------------------------------------------- access
    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """MIPS: ``scores (Q, k')``, ``rows (Q, k')`` with ``k' = min(k, size)``; -1 = no result."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"query vectors of shape {vectors.shape} do not match bank dim {self.dim}")
        k = min(int(k), self.size)
        if k <= 0 or len(vectors) == 0:
            return np.zeros((len(vectors), 0), np.float32), np.zeros((len(vectors), 0), np.int64)
        if self.disk_vectors is not None:
            scores, rows, _ = search_reranked(self.index, self.disk_vectors, vectors, k, self.shortlist)
            return scores, rows
        scores, rows = self.index.search(vectors, k)
        return scores, rows

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Stored vectors of ``rows`` ``(n, D)``: read from ``vectors.npy`` when the bank keeps
        its vectors on disk, else reconstructed by the index (quantised)."""
        if self.disk_vectors is not None:
            rows = np.asarray(rows, dtype=np.int64)
            return np.asarray(self.disk_vectors[rows], dtype=np.float32).reshape(len(rows), self.dim)
        return reconstruct(self.index, rows)

    @property
    def rerank(self) -> dict[str, Any]:
        """The manifest's ``rerank`` field for this bank (empty without disk vectors)."""
        if self.disk_vectors is None:
            return {}
        return {"source": "disk", "file": VECTORS_FILE, "dtype": str(self.disk_vectors.dtype),
                "shortlist": self.shortlist}

    def documents(self, rows: Sequence[int]) -> list[Document]:
        return self.store.get(rows)

    # ----------------------------------------------------------- persistence
    def save(self, directory: str | Path, *, overwrite: bool = False, move_vectors: bool = False) -> Path:
        """Write the bank directory atomically (see the module docstring).

        ``move_vectors``: the disk vectors are a memory-mapped ``.npy`` file of their own
        dtype that may be moved into the bank instead of copied (a build's work file; the
        bank then maps its own ``vectors.npy``).
        """
        from cm3leon.core.io import atomic_directory, atomic_write_json, mark_complete

        with atomic_directory(directory, overwrite=overwrite) as tmp:
            write_index(self.index, tmp / INDEX_FILE)
            atomic_write_json(tmp / IDS_FILE, self.ids, indent=0)
            documents, names = write_store(self.store, tmp, self._iter_documents)
            if self.disk_vectors is not None:
                _place_vectors(self.disk_vectors, tmp / VECTORS_FILE, move=move_vectors)
                names = (*names, VECTORS_FILE)
            files = {name: file_record(tmp / name) for name in (INDEX_FILE, IDS_FILE, *names)}
            manifest = BankManifest(
                kind="faiss", size=self.size, dim=self.dim, factory=self.factory,
                search_params=self.search_params, encoder=self.encoder, files=files, extra=self.extra,
                documents=documents, rerank=self.rerank,
            )
            atomic_write_json(tmp / MANIFEST_FILE, manifest.to_json())
            mark_complete(tmp, {"kind": "faiss", "size": self.size})
        self.manifest = manifest
        if self.disk_vectors is not None and move_vectors:
            self.disk_vectors = open_vectors(Path(directory) / VECTORS_FILE, rows=self.size, dim=self.dim,
                                             dtype=str(self.disk_vectors.dtype))
        return Path(directory)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        expected_dim: int | None = None,
        encoder_fingerprint: str | None = None,
        search_params: str | None = None,
        max_index_bytes: int | None = None,
        verify_documents: bool = True,
        shortlist: int | None = None,
    ) -> MemoryBank:
        """Load a bank, verifying it before FAISS reads anything.

        Args:
            directory: bank directory.
            expected_dim: refuse a bank whose dimension differs (the encoder's ``dim``).
            encoder_fingerprint: refuse a bank built with a different encoder.
            search_params: override the manifest's FAISS search parameters.
            max_index_bytes: refuse a larger ``index.faiss`` before reading it (default:
                :func:`cm3leon.retrieval.index.max_index_bytes`).
            verify_documents: for a bank by reference, SHA-256-check each source shard file
                the first time a document of it is fetched (sizes and the sources'
                ``index.json`` hashes are always checked).
            shortlist: override the manifest's re-ranking shortlist (banks with ``vectors.npy``).

        Raises:
            BankError / IndexIntegrityError: incomplete directory, dimension or encoder
                mismatch, an index over the byte limit, any file whose size or SHA-256
                differs from the manifest, or row counts that disagree (index ``ntotal``,
                ids, documents).
            SourceError: a bank by reference whose source directory is missing or changed.
        """
        directory = Path(directory)
        manifest = read_manifest(directory, kind="faiss")
        if expected_dim is not None and manifest.dim != expected_dim:
            raise BankError(f"{directory}: bank dimension {manifest.dim} != encoder dimension {expected_dim}")
        fp = manifest.encoder.get("fingerprint")
        if encoder_fingerprint is not None and fp and fp != encoder_fingerprint:
            raise BankError(
                f"{directory}: bank was built with encoder {fp} ({manifest.encoder.get('name')}), "
                f"not with the given encoder {encoder_fingerprint}"
            )
        rec = manifest.files.get(INDEX_FILE)
        if rec is None:
            raise BankError(f"{directory / MANIFEST_FILE}: no record for {INDEX_FILE}")
        index = read_index_verified(
            directory / INDEX_FILE, size=rec["bytes"], sha256=rec["sha256"], dim=manifest.dim,
            max_bytes=max_index_bytes,
        )
        by_reference = manifest.documents.get("kind") == "shards"
        store_files = ShardDocumentStore.files if by_reference else JsonlDocumentStore.files
        verify_files(directory, manifest, (IDS_FILE, *store_files))
        ids = _read_ids(directory / IDS_FILE)
        if by_reference:
            store: DocumentStore = ShardDocumentStore.load(directory, manifest.documents, verify=verify_documents)
        else:
            store = JsonlDocumentStore(directory)
        _check_rows(directory, int(index.ntotal), manifest.size, len(ids), len(store), store_files[-1])
        disk = _load_disk_vectors(directory, manifest)
        params = manifest.search_params if search_params is None else search_params
        configure_search(index, params, direct_map=disk is None)
        return cls(
            index, ids, store, factory=manifest.factory, search_params=params,
            encoder=manifest.encoder, extra=manifest.extra, manifest=manifest, disk_vectors=disk,
            shortlist=int(shortlist if shortlist is not None else manifest.rerank.get("shortlist", 100)),
        )

    # -------------------------------------------------------------- helpers
    def _iter_documents(self, chunk: int = 1024):
        for start in range(0, self.size, chunk):
            yield from self.store.get(range(start, min(start + chunk, self.size)))


def write_store(store: DocumentStore, directory: Path, iter_documents: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Write ``store``'s files into ``directory``: ``(manifest documents field, file names)``.

    Stores that know their own form write it (references, or JSONL copied byte for byte);
    any other store is written as JSONL copies from ``iter_documents()``.
    """
    write = getattr(store, "write", None)
    if write is not None:
        return write(directory), tuple(store.files)
    write_jsonl_documents(iter_documents(), directory)
    return {"kind": "jsonl"}, (DOCUMENTS_FILE, OFFSETS_FILE)


def _place_vectors(vectors: np.ndarray, path: Path, *, move: bool) -> None:
    """Put ``vectors`` at ``path`` as a ``.npy``: moved when allowed and possible (a memory
    map of a whole ``.npy`` file on the same filesystem), else written in blocks."""
    import os

    source = getattr(vectors, "filename", None)
    if move and isinstance(vectors, np.memmap) and source is not None:
        try:
            os.replace(source, path)
            return
        except OSError:  # another filesystem: copy
            pass
    write_vectors(path, row_blocks(vectors), rows=len(vectors), dim=vectors.shape[1], dtype=str(vectors.dtype))


def _load_disk_vectors(directory: Path, manifest: BankManifest) -> np.ndarray | None:
    """``vectors.npy`` memory-mapped, after its size and SHA-256 were checked; ``None``
    for a bank without one (no ``rerank`` in the manifest)."""
    rerank = manifest.rerank
    if not rerank:
        return None
    if rerank.get("source") != "disk" or rerank.get("file") != VECTORS_FILE:
        raise BankError(f"{directory / MANIFEST_FILE}: unknown rerank record {rerank!r}")
    verify_files(directory, manifest, (VECTORS_FILE,))
    return open_vectors(directory / VECTORS_FILE, rows=manifest.size, dim=manifest.dim, dtype=str(rerank.get("dtype")))


def _read_ids(path: Path) -> list[str]:
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BankError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BankError(f"{path}: must hold a JSON list of document ids (strings)")
    return ids


def _check_rows(directory: Path, ntotal: int, size: int, n_ids: int, n_docs: int, docs_file: str) -> None:
    """The index, the manifest, ``ids.json`` and the document store must agree on the row count."""
    index = directory / INDEX_FILE
    if ntotal != size:
        raise IndexIntegrityError(f"{index}: holds {ntotal} vectors, {directory / MANIFEST_FILE} says {size}")
    if ntotal != n_ids:
        raise IndexIntegrityError(f"{index}: holds {ntotal} vectors but {directory / IDS_FILE} has {n_ids} ids")
    if ntotal != n_docs:
        raise IndexIntegrityError(
            f"{index}: holds {ntotal} vectors but {directory / docs_file} indexes {n_docs} documents"
        )


def training_sample(vectors: np.ndarray, size: int, seed: int) -> np.ndarray:
    """At most ``size`` rows of ``vectors`` chosen without replacement by ``seed``."""
    if len(vectors) <= size:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=size, replace=False))
    return vectors[rows]
