"""Exact re-ranking against float vectors kept on disk (``bank.index.rerank.source: disk``).

The compressed index (PQ codes, IVF fast-scan lists, ...) stays in RAM and proposes a
``shortlist`` of candidates per query; their full-precision vectors are read from
``vectors.npy`` in the bank directory, opened with ``np.load(mmap_mode="r")`` (so they
are **not** resident: the operating system pages in the rows a query touches, and may
keep them in its page cache), scored exactly and the top ``k`` returned.  Memory is the
index; disk is the index plus ``dim x itemsize`` bytes per vector (1,024 B at 512
dimensions in float16); each query reads at most ``shortlist`` vectors.

The same file serves :meth:`cm3leon.retrieval.bank.MemoryBank.vectors` (the relevance and
near-duplicate rules of :mod:`cm3leon.retrieval.strategy`), so an IVF index then needs no
direct map (8 B/vector of RAM less).

``vectors.npy`` is written under a temporary name and renamed when complete
(:func:`write_vectors`), recorded with its size and SHA-256 in the bank manifest like every
bank file, and checked against both before it is opened (:func:`open_vectors`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DTYPES", "SOURCES", "VECTORS_FILE", "check_rerank", "open_vectors", "row_blocks", "search_reranked",
           "write_vectors"]

VECTORS_FILE = "vectors.npy"
SOURCES = ("none", "disk")
DTYPES = ("float16", "float32")


def check_rerank(source: str, shortlist: int, dtype: str, *, key: str = "bank.index.rerank") -> None:
    """Validate re-ranking options.

    Raises:
        ConfigError: an unknown source or dtype, or a shortlist < 1 with ``source: disk``
            (the message names ``key``).
    """
    from cm3leon.core.config import ConfigError

    if source not in SOURCES:
        raise ConfigError(f"{key}.source: must be one of {', '.join(SOURCES)}, got {source!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"{key}.dtype: must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if source == "disk" and int(shortlist) < 1:
        raise ConfigError(f"{key}.shortlist: must be >= 1 with source 'disk', got {shortlist}")


def row_blocks(vectors: np.ndarray, rows: int = 65536) -> Iterator[np.ndarray]:
    """Consecutive blocks of at most ``rows`` rows of ``vectors`` (what :func:`write_vectors` takes)."""
    for start in range(0, len(vectors), rows):
        yield vectors[start : start + rows]


def write_vectors(path: str | Path, blocks: Iterable[np.ndarray], *, rows: int, dim: int, dtype: str) -> Path:
    """Write ``blocks`` (consecutive ``(n_i, dim)`` arrays, ``rows`` in all) as one ``.npy``
    of ``dtype``, streamed under a temporary name, synced and renamed into place.

    Raises:
        ValueError: the blocks' shapes or total row count do not match ``rows`` x ``dim``.
    """
    from numpy.lib.format import open_memmap

    from cm3leon.core.io import fsync_path

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    out = open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=(int(rows), int(dim)))
    try:
        start = 0
        for block in blocks:
            block = np.asarray(block)
            if block.ndim != 2 or block.shape[1] != dim or start + len(block) > rows:
                raise ValueError(f"{path}: a block of shape {block.shape} does not fit {rows} x {dim} from row {start}")
            out[start : start + len(block)] = block
            start += len(block)
        if start != rows:
            raise ValueError(f"{path}: {start} vectors written, {rows} expected")
        out.flush()
        del out
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def open_vectors(path: str | Path, *, rows: int, dim: int, dtype: str) -> np.ndarray:
    """``vectors.npy`` memory-mapped read-only (check its size and hash first: the bank does).

    Raises:
        IndexIntegrityError: shape or dtype differ from the manifest, or the file is not a
            ``.npy`` array.
    """
    from cm3leon.retrieval.index import IndexIntegrityError

    path = Path(path)
    try:
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise IndexIntegrityError(f"{path}: not a readable .npy array: {err}") from None
    if mm.shape != (rows, dim) or mm.dtype != np.dtype(dtype):
        raise IndexIntegrityError(
            f"{path}: holds {mm.dtype} {mm.shape}, the manifest says {dtype} ({rows}, {dim})"
        )
    return mm


def search_reranked(index: Any, vectors: np.ndarray, queries: np.ndarray, k: int,
                    shortlist: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Top ``k`` of ``index``'s ``max(shortlist, k)`` candidates, re-scored exactly against
    ``vectors`` (row = id): ``scores (Q, k)``, ``rows (Q, k)`` (-1 = none) and the number of
    distinct vectors read from ``vectors``.

    Candidates are read once per batch, in row order (sequential where they cluster).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    depth = min(max(int(shortlist), int(k)), int(index.ntotal))
    _, cand = index.search(queries, depth)  # (Q, S)
    valid = cand >= 0
    unique = np.unique(cand[valid])  # sorted: rows read in file order
    if len(unique) == 0:
        empty = (len(queries), min(int(k), depth))
        return np.full(empty, -np.inf, np.float32), np.full(empty, -1, np.int64), 0
    stored = np.asarray(vectors[unique], dtype=np.float32)  # (U, D), read from disk
    where = np.searchsorted(unique, np.where(valid, cand, unique[0]))  # (Q, S); invalid slots masked below
    exact = np.full(cand.shape, -np.inf, dtype=np.float32)
    step = max(1, (32 << 20) // max(1, 4 * depth * queries.shape[1]))  # queries per (q, S, D) block of <= 32 MiB
    for s in range(0, len(queries), step):
        block = stored[where[s : s + step]]  # (q, S, D)
        exact[s : s + step] = np.einsum("qsd,qd->qs", block, queries[s : s + step])
    exact[~valid] = -np.inf
    k = min(int(k), depth)
    top = np.argsort(-exact, axis=1, kind="stable")[:, :k]  # (Q, k)
    scores = np.take_along_axis(exact, top, axis=1)
    rows = np.where(np.isfinite(scores), np.take_along_axis(cand, top, axis=1), -1)
    return scores, rows.astype(np.int64), int(len(unique))
