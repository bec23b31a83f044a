"""FAISS index building, merging and hash-checked persistence.

Indexes are chosen by a FAISS *index-factory* string with inner-product metric
(MIPS over unit vectors = cosine):

* ``"Flat"`` (default): exact search, no training;
* ``"IVF4096,Flat"`` / ``"IVF1024,PQ32"``: inverted lists (optionally product
  quantised), trained on a sample of the bank;
* ``"HNSW32"``: graph search, no training.

Search-time knobs are FAISS ``ParameterSpace`` strings (``"nprobe=32"``,
``"efSearch=128"``).  An index file is only ever handed to FAISS after its size,
SHA-256 and header dimension were checked against the manifest that describes it
(:func:`read_index_verified`), so a truncated or tampered file is refused before
FAISS parses a byte of it.  Deserialisation is also bounded: a file larger than
:func:`max_index_bytes` (``CM3LEON_MAX_INDEX_BYTES``, default 64 GiB, or the caller's
``max_bytes``) is refused before it is read, and while FAISS parses it its per-vector
byte limit (``faiss.set_deserialization_vector_byte_limit``) is lowered to the file's size,
so no length field, even in a file whose hash was re-recorded, can make it allocate more
than the file holds.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_INDEX_BYTES",
    "MAX_INDEX_BYTES_ENV",
    "IndexIntegrityError",
    "add_vectors",
    "configure_search",
    "make_index",
    "max_index_bytes",
    "merge_indexes",
    "read_index_verified",
    "reconstruct",
    "train_index",
    "write_index",
]

# Above this size the verified bytes are not kept in memory: the file is hashed in a
# streaming pass and then read by FAISS from disk.
_IN_MEMORY_LIMIT = 512 * 1024 * 1024

MAX_INDEX_BYTES_ENV = "CM3LEON_MAX_INDEX_BYTES"
DEFAULT_MAX_INDEX_BYTES = 64 << 30  # 64 GiB: a billion 16-byte PQ codes with room to spare


class IndexIntegrityError(ValueError):
    """An index file does not match its manifest (size, hash or dimension)."""


def _faiss() -> Any:
    import faiss

    return faiss


def make_index(dim: int, factory: str = "Flat") -> Any:
    """An empty inner-product index from a factory string.

    Raises:
        ValueError: the factory string is not understood by FAISS (message names it).
    """
    faiss = _faiss()
    if dim < 1:
        raise ValueError(f"index dimension must be >= 1, got {dim}")
    try:
        return faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else str(err)
        raise ValueError(f"invalid FAISS index factory string {factory!r}: {first}") from None


def train_index(index: Any, sample: np.ndarray) -> Any:
    """Train ``index`` on ``sample (n, D)`` if it needs training; returns it.

    FAISS's *polysemous* training of PQ codes (simulated annealing that reorders each
    sub-quantizer's centroids so that Hamming distances between codes mimic real ones) is
    switched off, for IVF-PQ and flat PQ alike (behind a pre-transform or a refinement
    stage too): it only serves Hamming pre-filtering (``polysemous_ht``), which a bank
    never sets, leaves the search results unchanged, and costs minutes for 64-byte codes
    (11 minutes for a flat ``PQ64`` on 40k vectors, one thread).
    """
    if not index.is_trained:
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if len(sample) == 0:
            raise ValueError("index needs training but the training sample is empty")
        for part in _parts(index):
            if hasattr(part, "do_polysemous_training"):  # IndexPQ, IndexIVFPQ
                part.do_polysemous_training = False
        index.train(sample)
    return index


def _parts(index: Any) -> Iterator[Any]:
    """``index`` (downcast) and the indexes nested in it: the index behind a pre-transform,
    both stages of a refinement index."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    yield index
    if isinstance(index, faiss.IndexPreTransform):
        yield from _parts(index.index)
    elif isinstance(index, faiss.IndexRefine):
        yield from _parts(index.base_index)
        yield from _parts(index.refine_index)


def add_vectors(index: Any, vectors: np.ndarray) -> None:
    """Append ``vectors (n, D)`` (rows get the next sequential ids)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != index.d:
        raise ValueError(f"vectors of shape {vectors.shape} do not match index dimension {index.d}")
    if len(vectors):
        index.add(vectors)


def merge_indexes(shards: Sequence[Any]) -> Any:
    """Concatenate shard indexes in order: row ``i`` of shard ``r`` gets id ``offset_r + i``.

    IVF indexes are merged list by list (``merge_from`` with shifted ids), flat-code
    indexes by appending codes, re-ranking indexes (``...,RFlat`` / ``Refine(...)``) part
    by part; others (HNSW) by reconstructing the vectors and adding them to the first shard.
    """
    faiss = _faiss()
    if not shards:
        raise ValueError("merge_indexes: no shard indexes")
    dst = faiss.clone_index(shards[0])
    for src in shards[1:]:
        if src.d != dst.d:
            raise ValueError(f"merge_indexes: dimension mismatch {src.d} vs {dst.d}")
        if src.ntotal:
            _merge_into(faiss, faiss.downcast_index(dst), faiss.downcast_index(src))
    return dst


def _merge_into(faiss: Any, dst: Any, src: Any) -> None:
    """Append the vectors of ``src`` to ``dst`` (same structure), ids continuing ``dst``'s."""
    if isinstance(dst, faiss.IndexRefine):  # IndexRefine has no merge_from: its two parts do
        _merge_into(faiss, faiss.downcast_index(dst.base_index), faiss.downcast_index(src.base_index))
        _merge_into(faiss, faiss.downcast_index(dst.refine_index), faiss.downcast_index(src.refine_index))
        dst.ntotal = dst.base_index.ntotal
    elif faiss.try_extract_index_ivf(dst) is not None:
        dst.merge_from(src, dst.ntotal)  # shift the sequential ids of src
    elif isinstance(dst, faiss.IndexFlatCodes):
        dst.merge_from(src)  # flat codes: ids are positions
    else:
        dst.add(src.reconstruct_n(0, src.ntotal))


def configure_search(index: Any, params: str, *, direct_map: bool = True) -> None:
    """Apply FAISS ``ParameterSpace`` settings such as ``"nprobe=32,efSearch=64"``.

    ``direct_map``: give an IVF index a direct map (8 B/vector) so that :func:`reconstruct`
    works; a bank whose vectors are on disk (:mod:`cm3leon.retrieval.rerank`) needs none.
    """
    faiss = _faiss()
    if params.strip():
        try:
            faiss.ParameterSpace().set_index_parameters(index, params)
        except RuntimeError as err:
            raise ValueError(f"invalid FAISS search parameters {params!r}: {str(err).strip()}") from None
    ivf = faiss.try_extract_index_ivf(index)
    if direct_map and ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
        ivf.make_direct_map()  # needed by reconstruct() (near-duplicate rule)


def reconstruct(index: Any, rows: np.ndarray) -> np.ndarray:
    """Stored (possibly quantised) vectors ``(n, D)`` of ``rows``."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    return index.reconstruct_batch(rows)


def write_index(index: Any, path: str | Path) -> Path:
    """Serialise ``index`` to ``path`` atomically."""
    from cm3leon.core.io import atomic_write_bytes

    faiss = _faiss()
    return atomic_write_bytes(path, faiss.serialize_index(index).tobytes())


def max_index_bytes(value: int | None = None) -> int:
    """The largest index file that will be deserialised: ``value``, else the
    ``CM3LEON_MAX_INDEX_BYTES`` environment variable, else :data:`DEFAULT_MAX_INDEX_BYTES`."""
    if value is None:
        raw = os.environ.get(MAX_INDEX_BYTES_ENV, "").strip()
        try:
            value = int(raw) if raw else DEFAULT_MAX_INDEX_BYTES
        except ValueError:
            raise ValueError(f"{MAX_INDEX_BYTES_ENV}={raw!r} is not a whole number of bytes") from None
    if value < 1:
        raise ValueError(f"the index byte limit must be >= 1, got {value}")
    return int(value)


@contextlib.contextmanager
def _vector_byte_limit(file_bytes: int) -> Iterator[None]:
    """While active, FAISS refuses a serialised vector claiming more bytes than ``file_bytes``
    (no vector of a genuine index is as large as the whole file)."""
    faiss = _faiss()
    previous = faiss.get_deserialization_vector_byte_limit()
    faiss.set_deserialization_vector_byte_limit(min(file_bytes, previous))
    try:
        yield
    finally:
        faiss.set_deserialization_vector_byte_limit(previous)


def header_dimension(head: bytes, path: Path) -> int:
    """The vector dimension stored in a FAISS index header (bytes 4..8, int32)."""
    if len(head) < 8:
        raise IndexIntegrityError(f"{path}: {len(head)} bytes is too short for a FAISS index header")
    return int(struct.unpack("<i", head[4:8])[0])


def read_index_verified(path: str | Path, *, size: int, sha256: str, dim: int, max_bytes: int | None = None) -> Any:
    """Read a FAISS index only if it matches ``size`` bytes, ``sha256`` and ``dim``.

    Every check happens before FAISS sees the file; a file (or a recorded size) above
    ``max_bytes`` (:func:`max_index_bytes`) is refused before a byte of it is read.

    Raises:
        FileNotFoundError: the file is missing.
        IndexIntegrityError: truncated/extended file, hash mismatch, a file over the
            byte limit, or a header dimension different from ``dim``.
    """
    import hashlib

    from cm3leon.core.io import sha256_file

    faiss = _faiss()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: index file not found")
    actual = path.stat().st_size
    limit = max_index_bytes(max_bytes)
    if max(actual, size) > limit:
        raise IndexIntegrityError(
            f"{path}: index file of {max(actual, size)} bytes exceeds the limit of {limit} bytes; "
            f"raise it with max_index_bytes or {MAX_INDEX_BYTES_ENV} if the index is trusted"
        )
    if actual != size:
        raise IndexIntegrityError(
            f"{path}: index file has {actual} bytes, manifest records {size} (truncated or replaced)"
        )
    data: bytes | None = None
    if size <= _IN_MEMORY_LIMIT:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        head = data[:8]
    else:
        digest = sha256_file(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
    if digest != sha256:
        raise IndexIntegrityError(f"{path}: SHA-256 {digest} does not match manifest {sha256}; refusing to load")
    header_dim = header_dimension(head, path)
    if header_dim != dim:
        raise IndexIntegrityError(f"{path}: index dimension {header_dim} does not match manifest dim {dim}")
    try:
        with _vector_byte_limit(actual):
            if data is not None:
                index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            else:
                index = faiss.read_index(str(path))
    except RuntimeError as err:  # FAISS's own checks (vector limit, read errors) do not name the file
        last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise IndexIntegrityError(f"{path}: FAISS cannot deserialise the index: {last}") from None
    if index.d != dim:
        raise IndexIntegrityError(f"{path}: FAISS reports dimension {index.d}, manifest says {dim}")
    return index
