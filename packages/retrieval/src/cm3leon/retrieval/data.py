"""Reading the input documents of the retrieval commands from document shards.

Documents come from ``cm3leon data prepare`` output (MDS document shards, see
:mod:`cm3leon.core.shards`), read in order across the configured directories.
Row ``i`` of a bank is the ``i``-th document of this stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.documents import Document
from cm3leon.retrieval.config import DocumentsConfig

__all__ = ["count_documents", "iter_documents", "iter_rows", "load_documents"]


def _shards(cfg: DocumentsConfig) -> list[Path]:
    if not cfg.shards:
        raise ValueError("data.shards: no document-shard directories configured")
    return [Path(p) for p in cfg.shards]


def count_documents(cfg: DocumentsConfig) -> int:
    """Number of documents the config selects (shards are verified first)."""
    from cm3leon.core.shards import verify_dataset

    total = 0
    for path in _shards(cfg):
        info = verify_dataset(path, check_hashes=cfg.verify)
        if info.kind != "documents":
            raise ValueError(f"{path}: holds {info.kind} shards; retrieval reads document shards")
        total += info.num_samples
    return min(total, cfg.limit) if cfg.limit > 0 else total


def iter_rows(cfg: DocumentsConfig, wanted: Any = None) -> Iterator[tuple[int, Document | None]]:
    """Yield ``(row, document)`` in order; rows not in ``wanted`` yield ``None`` (not decoded).

    Args:
        cfg: the input selection.
        wanted: a container of rows to decode (``None`` = all), so a rank can skip the
            images of rows it does not own cheaply.
    """
    from cm3leon.core.shards import iter_samples

    count_documents(cfg)  # verifies kinds and hashes before anything is decoded
    row = 0
    for path in _shards(cfg):
        for index, sample in iter_samples(path, verify=False):
            if cfg.limit > 0 and row >= cfg.limit:
                return
            if wanted is None or row in wanted:
                where = f"{path}: sample {index} (id {sample['id']!r})"
                yield row, Document.from_json(sample["document"], source=where)
            else:
                yield row, None
            row += 1


def iter_documents(cfg: DocumentsConfig) -> Iterator[Document]:
    """The selected documents, in order."""
    for _, doc in iter_rows(cfg):
        assert doc is not None
        yield doc


def load_documents(cfg: DocumentsConfig) -> list[Document]:
    """All selected documents in memory."""
    return list(iter_documents(cfg))
