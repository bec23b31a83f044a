"""Size and memory estimate of a bank before it is built.

``cm3leon retrieval build`` prints it first; ``cm3leon retrieval estimate CONFIG
--documents N`` prints it alone.  The index size comes from the FAISS structure that
the configured factory string builds (:func:`index_size`): the empty index is
created and serialised (headers, PQ codebooks), and what grows with training and with
the vectors is added from the structure itself::

    Flat / SQ / PQ (flat codes)   code_size bytes per vector (Flat: 4 d, PQm: m, SQ8: d)
    IVF lists                     + 8 bytes of id per vector, + 8 bytes of direct map per
                                  vector (banks make one: reconstruct() serves the
                                  near-duplicate rule), + 8 bytes per list (list
                                  sizes), + the coarse quantizer (nlist vectors of its own
                                  kind, e.g. 4 d each for a flat quantizer); fast-scan
                                  lists are padded to 32-vector blocks (half a block per list)
    HNSWm                         + 4 (2m + m/(m-1)) bytes of links per vector (level 0 has
                                  2m neighbours, each upper level m; a vector has
                                  1/(m-1) upper levels on average) + 12 (level, offset)
    OPQ / PCA / RR transforms     + the d_in x d_out float matrix
    RFlat refinement              + 4 d per vector

With ``index.rerank.source: disk`` the bank also keeps ``vectors.npy`` (``d x 2`` bytes per
vector in float16, ``d x 4`` in float32) on disk, memory-mapped and not resident, and IVF
indexes carry no direct map; the estimate then reports the RAM the loaded bank holds (the
index) and that disk file separately, with the vectors read per query (the shortlist).

Documents are stored by reference: 16 bytes per document (``documents.refs.npy``)
plus ``ids.json`` (``id_chars + 4`` bytes per id).  Peak RAM is modelled per build phase
(:class:`BankEstimate`); it is a model, stated with its terms, not a measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BankEstimate", "IndexSize", "estimate_bank", "estimate_for_config", "index_size"]

PY_STR_OVERHEAD = 57  # CPython bytes of an empty str object + a list slot (49 + 8)
IN_MEMORY_LOAD_LIMIT = 512 * 1024 * 1024  # index.read_index_verified keeps smaller files in memory


@dataclass(frozen=True)
class IndexSize:
    """``bytes(n) = fixed + per_vector * n`` for one factory string at one dimension."""

    factory: str
    dim: int
    per_vector: float
    fixed: int
    ram_extra: int = 0  # in memory only (IVF-PQ precomputed tables)
    notes: tuple[str, ...] = ()

    def bytes(self, n: int) -> int:
        return int(round(self.fixed + self.per_vector * n))


def index_size(dim: int, factory: str, *, direct_map: bool = True) -> IndexSize:
    """The serialised size model of ``factory`` at dimension ``dim`` (see the module docstring).

    ``direct_map``: IVF indexes carry a direct map (8 bytes per vector), as every bank's
    do (:func:`cm3leon.retrieval.index.configure_search`).
    """
    import faiss

    from cm3leon.retrieval.index import make_index

    index = make_index(dim, factory)
    empty = len(faiss.serialize_index(index))
    notes: list[str] = []
    per, fixed, ram = _walk(faiss.downcast_index(index), notes)
    if direct_map and faiss.try_extract_index_ivf(index) is not None:
        per += 8
    return IndexSize(factory, dim, per, int(round(empty + fixed)), int(ram), tuple(notes))


def _walk(index: Any, notes: list[str]) -> tuple[float, float, float]:
    """``(bytes per vector, fixed bytes beyond the empty serialisation, RAM-only bytes)``."""
    import faiss

    if isinstance(index, faiss.IndexPreTransform):
        per, fixed, ram = _walk(faiss.downcast_index(index.index), notes)
        for i in range(index.chain.size()):
            t = faiss.downcast_VectorTransform(index.chain.at(i))
            fixed += 4 * t.d_in * t.d_out
            if isinstance(t, faiss.PCAMatrix):  # PCAMat (d_in^2), mean, eigenvalues, bias
                fixed += 4 * (t.d_in * t.d_in + t.d_in + t.d_in + t.d_out)
        return per, fixed, ram
    if isinstance(index, faiss.IndexRefine):
        base = _walk(faiss.downcast_index(index.base_index), notes)
        refine = _walk(faiss.downcast_index(index.refine_index), notes)
        return base[0] + refine[0], base[1] + refine[1], base[2] + refine[2]
    if isinstance(index, faiss.IndexIVF):
        return _walk_ivf(index, notes)
    if isinstance(index, faiss.IndexHNSW):
        m = index.hnsw.nb_neighbors(1)
        per, fixed, ram = _walk(faiss.downcast_index(index.storage), notes)
        links = 4 * (index.hnsw.nb_neighbors(0) + m / max(m - 1, 1)) + 12
        return per + links, fixed, ram
    if isinstance(index, faiss.IndexIDMap):
        per, fixed, ram = _walk(faiss.downcast_index(index.index), notes)
        return per + 8, fixed, ram
    if isinstance(index, faiss.IndexScalarQuantizer):
        return float(index.code_size), 8.0 * index.d, 0.0
    if isinstance(index, faiss.IndexFlatCodes):
        return float(index.code_size), 0.0, 0.0
    notes.append(f"{type(index).__name__}: sized by its sa_code_size() only")
    return float(index.sa_code_size()), 0.0, 0.0


def _walk_ivf(ivf: Any, notes: list[str]) -> tuple[float, float, float]:
    import faiss

    nlist = int(ivf.nlist)
    q_per, q_fixed, _ = _walk(faiss.downcast_index(ivf.quantizer), notes)
    fixed = nlist * q_per + q_fixed + 8 * nlist  # quantizer vectors + list sizes
    per = float(ivf.code_size) + 8  # code + id
    ram = 0.0
    if isinstance(ivf, faiss.IndexIVFFastScan):
        fixed += nlist * (ivf.bbs / 2) * ivf.code_size + 8 * nlist  # half a block of padding per list
    if isinstance(ivf, faiss.IndexIVFScalarQuantizer):
        fixed += 8.0 * ivf.d
    if isinstance(ivf, faiss.IndexIVFPQ) and ivf.by_residual:
        table = nlist * ivf.pq.M * ivf.pq.ksub * 4
        if table <= 2 << 30:  # FAISS precomputes the residual tables below this size
            ram = table
            notes.append(f"IVF-PQ precomputed tables: {_fmt(table)} of RAM when searching")
    return per, fixed, ram


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@dataclass(frozen=True)
class BankEstimate:
    """Disk and peak-RAM estimate of building and loading a bank.

    Peak RAM per phase (bytes; ``embed`` and ``add`` per rank, ``train`` and ``merge`` on
    rank 0): ``embed`` = encoder weights + 4 float copies of a chunk's vectors + one
    image batch; ``train`` = 2 x the training sample + the index's fixed part; ``add`` =
    2 x this rank's share of the index (vector growth) + one chunk; ``merge`` = the merged
    index written through ``faiss.serialize_index`` (3 x the index: index, serialised
    copy, bytes) or the rank shards plus a clone (whichever is larger), + ids as Python
    strings + references; ``load`` = what :meth:`MemoryBank.load` holds (the file's bytes
    and the index below 512 MiB, the index above) + ids.
    """

    documents: int
    dim: int
    factory: str
    world_size: int
    index: IndexSize
    vectors_bytes: int
    index_bytes: int
    refs_bytes: int
    ids_bytes: int
    peak_ram: dict[str, int] = field(default_factory=dict)
    assumptions: dict[str, Any] = field(default_factory=dict)
    disk_vectors_bytes: int = 0  # vectors.npy (rerank.source: disk); 0 without
    rerank_shortlist: int = 0

    @property
    def documents_bytes(self) -> int:
        return self.refs_bytes + self.ids_bytes

    @property
    def bank_bytes(self) -> int:
        return self.index_bytes + self.documents_bytes + self.disk_vectors_bytes

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(documents_bytes=self.documents_bytes, bank_bytes=self.bank_bytes)
        return out

    def _rerank_lines(self) -> list[str]:
        if not self.disk_vectors_bytes:
            return []
        n = self.documents
        return [
            f"  vectors.npy (disk, memmap, NOT resident)      {_fmt(self.disk_vectors_bytes):>12}   "
            f"({self.disk_vectors_bytes / n:.0f} B/vector; <= {self.rerank_shortlist} vectors read per query)",
            f"  RAM of the loaded bank (index resident)       {_fmt(self.peak_ram['load']):>12}   "
            f"(index {self.index.per_vector:.1f} B/vector, no direct map; ids as Python strings)",
        ]

    def render(self) -> str:
        i = self.index
        phase = max(self.peak_ram, key=self.peak_ram.get)
        lines = [
            f"bank estimate: {self.documents:,} documents x {self.dim} dims, factory {self.factory!r}, "
            f"{self.world_size} rank(s)",
            f"  vectors (float32, OUTPUT.work/ while building) {_fmt(self.vectors_bytes):>12}",
            f"  index.faiss                                   {_fmt(self.index_bytes):>12}   "
            f"({i.per_vector:.1f} B/vector + {_fmt(i.fixed)} fixed)",
            f"  documents by reference (refs + ids.json)      {_fmt(self.documents_bytes):>12}   "
            f"(16 B/doc + ids of {self.assumptions['id_chars']} chars)",
            *self._rerank_lines(),
            f"  bank on disk                                  {_fmt(self.bank_bytes):>12}",
            f"  peak RAM while building                       {_fmt(self.peak_ram[phase]):>12}   (phase {phase})",
            "  peak RAM per phase: " + ", ".join(f"{k} {_fmt(v)}" for k, v in self.peak_ram.items()),
        ]
        lines += [f"  note: {n}" for n in i.notes]
        return "\n".join(lines)


def estimate_bank(documents: int, dim: int, factory: str, *, world_size: int = 1, chunk_size: int = 1024,
                  train_size: int = 65536, batch_size: int = 64, image_size: int = 224, encoder_bytes: int = 0,
                  id_chars: int = 16, rerank_dtype: str = "", rerank_shortlist: int = 0) -> BankEstimate:
    """The estimate for ``documents`` vectors of ``dim`` under ``factory`` (see :class:`BankEstimate`).

    ``rerank_dtype`` (``float16``/``float32``): the bank keeps its vectors on disk in that
    dtype for re-ranking ``rerank_shortlist`` candidates per query (IVF: no direct map).
    """
    import faiss
    import numpy as np

    from cm3leon.retrieval.index import make_index

    if documents < 1 or dim < 1 or world_size < 1:
        raise ValueError(f"estimate: documents ({documents}), dim ({dim}) and world size ({world_size}) must be >= 1")
    size = index_size(dim, factory, direct_map=not rerank_dtype)
    n = documents
    index_bytes = size.bytes(n)
    vectors = 4 * n * dim
    ids_py = n * (id_chars + PY_STR_OVERHEAD)
    refs = 128 + 16 * n
    chunk = 4 * min(chunk_size, n) * dim
    needs_training = not make_index(dim, factory).is_trained
    rank_share = math.ceil(n / world_size)
    merge = max(3 * index_bytes, index_bytes + index_bytes // world_size)
    if isinstance(faiss.downcast_index(make_index(dim, factory)), faiss.IndexHNSW):
        merge = max(merge, index_bytes * 2 + vectors)  # shards are merged through reconstructed vectors
    peak = {
        "embed": encoder_bytes + 4 * chunk + 4 * batch_size * 3 * image_size * image_size,
        "train": (2 * 4 * min(train_size, n) * dim + size.fixed + chunk) if needs_training else 0,
        "add": 2 * int(size.per_vector * rank_share) + size.fixed + chunk,
        "merge": merge + ids_py + refs,
        "load": (2 if index_bytes <= IN_MEMORY_LOAD_LIMIT else 1) * index_bytes + size.ram_extra + ids_py,
    }
    return BankEstimate(
        documents=n, dim=dim, factory=factory, world_size=world_size, index=size, vectors_bytes=vectors,
        index_bytes=index_bytes, refs_bytes=refs, ids_bytes=n * (id_chars + 4) + 2, peak_ram=peak,
        disk_vectors_bytes=(n * dim * np.dtype(rerank_dtype).itemsize + 128) if rerank_dtype else 0,
        rerank_shortlist=int(rerank_shortlist) if rerank_dtype else 0,
        assumptions={"id_chars": id_chars, "chunk_size": chunk_size, "train_size": train_size,
                     "batch_size": batch_size, "image_size": image_size, "encoder_bytes": encoder_bytes},
    )


def _encoder_facts(encoder: str) -> tuple[int | None, int, int]:
    """``(embed_dim or None, image size, weight bytes)`` from an encoder directory's files."""
    from cm3leon.retrieval.encoder import CONFIG_FILE, WEIGHTS_FILE

    directory = Path(encoder) if encoder else None
    if directory is None or not (directory / CONFIG_FILE).is_file():
        return None, 224, 0
    cfg = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8")).get("model_cfg", {})
    image = cfg.get("vision_cfg", {}).get("image_size", 224)
    weights = directory / WEIGHTS_FILE
    return cfg.get("embed_dim"), int(image if isinstance(image, int) else image[0]), \
        (weights.stat().st_size if weights.is_file() else 0)


def estimate_for_config(cfg: Any, *, documents: int | None = None, dim: int | None = None, world_size: int = 1,
                        id_chars: int = 16) -> BankEstimate:
    """The estimate for a ``bank:`` config section.

    ``documents`` defaults to the configured data (counted from the datasets' ``index.json``);
    ``dim`` to the encoder directory's ``embed_dim``.

    Raises:
        ValueError: neither ``dim`` nor an encoder directory with a config to read it from.
    """
    from cm3leon.retrieval.sources import plan_shards

    enc_dim, image_size, enc_bytes = _encoder_facts(cfg.encoder)
    dim = dim or enc_dim
    if not dim:
        raise ValueError(f"bank.encoder: {cfg.encoder or '(unset)'} has no open_clip_config.json to read "
                         "embed_dim from; give the dimension (--dim)")
    if documents is None:
        documents = sum(s.rows for s in plan_shards(cfg.data))
    return estimate_bank(
        documents, int(dim), cfg.index.factory, world_size=world_size, chunk_size=cfg.chunk_size,
        train_size=cfg.index.train_size, batch_size=cfg.batch_size, image_size=image_size,
        encoder_bytes=enc_bytes, id_chars=id_chars,
        **_rerank_options(cfg),
    )


def _rerank_options(cfg: Any) -> dict[str, Any]:
    rerank = getattr(cfg.index, "rerank", None)
    if rerank is None or rerank.source != "disk":
        return {}
    return {"rerank_dtype": rerank.dtype, "rerank_shortlist": rerank.shortlist}
