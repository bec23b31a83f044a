"""The document shards a bank is built from, one MDS shard file at a time.

A bank's rows are the documents of its ``data.shards`` directories in order (row ``i``
is the ``i``-th document, ``data.limit`` applied).  :func:`plan_shards` lays those rows
over the MDS shard files by reading each dataset's ``manifest.json`` and ``index.json``
only (``index.json`` is hash-checked; no shard file is opened), so every rank of a build
can agree on the plan while reading (and hash-checking) only the shard files it owns
(:func:`read_shard`).

A bank refers to its documents as ``(source, sample)`` pairs; :func:`source_record`
pins each source directory by the SHA-256 of its ``index.json`` (which records every
shard file's size and SHA-256), so a bank whose source changed or vanished is refused
with the path named (:class:`cm3leon.retrieval.store.ShardDocumentStore`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cm3leon.core.documents import Document
from cm3leon.retrieval.config import DocumentsConfig

__all__ = ["ShardFile", "SourceError", "dataset_shards", "open_shard", "plan_shards", "read_shard",
           "source_record", "verify_shard"]

log = logging.getLogger("cm3leon.retrieval.sources")


class SourceError(ValueError):
    """A document source of a bank is missing, changed or not a document dataset (names it)."""


@dataclass(frozen=True)
class ShardFile:
    """The rows of one MDS shard file that a bank uses.

    Attributes:
        source: index of the dataset directory in ``data.shards``.
        path: the dataset directory.
        entry: the shard's ``index.json`` entry (basename, bytes, sha256, samples).
        first_sample: sample index (within the dataset) of the shard's first sample.
        first_row: bank row of the shard's first sample.
        rows: how many of its samples the bank uses (``data.limit`` may cut the last one).
    """

    source: int
    path: Path
    entry: dict[str, Any]
    first_sample: int
    first_row: int
    rows: int

    @property
    def name(self) -> str:
        return str(self.entry["raw_data"]["basename"])

    @property
    def file(self) -> Path:
        return self.path / self.name


def dataset_shards(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(manifest, index entries)`` of a document dataset; ``index.json`` is hash-checked.

    Raises:
        FileNotFoundError: no such directory.
        ShardIntegrityError / SourceError: incomplete, tampered, or not document shards.
    """
    from cm3leon.core.shards import INDEX_FILE, parse_index, read_manifest, verify_files

    directory = Path(path)
    manifest = read_manifest(directory)
    if manifest["kind"] != "documents":
        raise SourceError(f"{directory}: holds {manifest['kind']} shards; retrieval reads document shards")
    verify_files(directory, manifest["files"], [INDEX_FILE], check_hashes=True)
    return manifest, parse_index(directory / INDEX_FILE, manifest)


def plan_shards(cfg: DocumentsConfig) -> list[ShardFile]:
    """The shard files (with rows) of ``cfg``, in bank-row order; reads no shard file."""
    if not cfg.shards:
        raise ValueError("data.shards: no document-shard directories configured")
    plan: list[ShardFile] = []
    row = 0
    for source, path in enumerate(cfg.shards):
        first_sample = 0
        for entry in dataset_shards(path)[1]:
            n = int(entry["samples"])
            if cfg.limit > 0:
                n = min(n, cfg.limit - row)
            if n <= 0:
                return plan
            plan.append(ShardFile(source, Path(path), entry, first_sample, row, n))
            first_sample += int(entry["samples"])
            row += n
    return plan


def row_runs(shards: Sequence[ShardFile], size: int) -> list[tuple[int, int, int]]:
    """``(shard, start, stop)``: bank rows in runs of at most ``size`` that never span two shard
    files, so whoever handles a run opens (and hash-checks) one file only."""
    return [(f, a, min(a + size, s.first_row + s.rows))
            for f, s in enumerate(shards) for a in range(s.first_row, s.first_row + s.rows, size)]  # fmt: skip


def middle_owner(start: int, stop: int, total: int, world_size: int) -> int:
    """The rank whose equal, contiguous share of ``total`` rows holds the middle of ``[start, stop)``."""
    return min(world_size - 1, (start + stop) * world_size // (2 * total))


def verify_shard(path: Path, entry: dict[str, Any], *, check_hash: bool = True) -> None:
    """Check one shard file's size (and SHA-256) against its ``index.json`` entry."""
    from cm3leon.core.io import sha256_file
    from cm3leon.core.shards import ShardIntegrityError

    raw = entry["raw_data"]
    file = path / raw["basename"]
    if not file.is_file():
        raise ShardIntegrityError(f"{file}: missing shard file listed in {path / 'index.json'}")
    if file.stat().st_size != int(raw["bytes"]):
        raise ShardIntegrityError(f"{file}: {file.stat().st_size} bytes, index.json says {raw['bytes']}")
    expected = (raw.get("hashes") or {}).get("sha256")
    if check_hash and expected and sha256_file(file) != expected:
        raise ShardIntegrityError(f"{file}: SHA-256 mismatch: the file is corrupt or was modified")


def open_shard(path: Path, entry: dict[str, Any], *, check_hash: bool = True) -> Any:
    """A verified MDS reader for one shard file (``reader.get_item(i)`` -> raw sample)."""
    from streaming.base.format import reader_from_json

    verify_shard(path, entry, check_hash=check_hash)
    reader = reader_from_json(str(path), None, entry)
    reader.validate(allow_unsafe_types=False)
    return reader


def sample_document(reader: Any, path: Path, entry: dict[str, Any], index: int) -> Document:
    """Decode sample ``index`` (within the shard file) of an open reader."""
    from cm3leon.core.shards import ShardIntegrityError

    where = f"{path / entry['raw_data']['basename']}: sample {index}"
    try:
        sample = reader.get_item(index)
    except Exception as err:  # a bad sample inside a shard read without its hash
        raise ShardIntegrityError(f"{where}: cannot decode: {err}") from err
    return Document.from_json(sample["document"], source=f"{where} (id {sample['id']!r})")


def read_shard(shard: ShardFile, rows: Sequence[int] | range, *, check_hash: bool = True,
               rank: int = 0) -> Iterator[tuple[int, Document]]:
    """Yield ``(bank row, document)`` for ``rows`` (bank rows inside ``shard``), in order.

    The shard file is size- and (``check_hash``) SHA-256-checked before its first sample is
    decoded; each call logs which file this rank reads.
    """
    log.info("rank %d reads %s (rows %d..%d)", rank, shard.file, shard.first_row, shard.first_row + shard.rows - 1)
    reader = open_shard(shard.path, shard.entry, check_hash=check_hash)
    for row in rows:
        local = row - shard.first_row
        if not 0 <= local < shard.rows:
            raise IndexError(f"{shard.file}: row {row} is not in this shard file")
        yield row, sample_document(reader, shard.path, shard.entry, local)


def source_record(path: str | Path) -> dict[str, Any]:
    """``{"path", "index_sha256", "num_samples"}`` pinning a document dataset for a bank."""
    from cm3leon.core.io import sha256_file
    from cm3leon.core.shards import INDEX_FILE

    manifest, _ = dataset_shards(path)
    directory = Path(path).resolve()
    return {"path": str(directory), "index_sha256": sha256_file(directory / INDEX_FILE),
            "num_samples": int(manifest["num_samples"])}
