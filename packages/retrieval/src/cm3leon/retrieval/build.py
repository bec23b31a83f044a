"""Building memory banks: resumable chunked embedding, sharded across ranks.

``build_bank(cfg)`` runs four phases; under ``composer -n N`` every rank runs
them and ``torch.distributed`` (gloo) barriers separate the phases::

    0. plan     every rank lays the bank rows over the MDS shard files from each
                dataset's manifest.json + index.json only (index.json hash-checked)
    1. embed    rank r embeds the chunks of the shard files it owns  -> OUT.work/chunk-CCCCC/
                (embeddings.npy, ids.json, refs.npy, COMPLETE; existing complete chunks
                 are skipped, so an interrupted build resumes); it opens and hash-checks
                 ONLY those shard files
    2. train    rank 0 trains the empty index on a seeded sample (IVF/PQ only)
                                                             -> OUT.work/trained.faiss
    3. add      rank r adds its contiguous range of chunks   -> OUT.work/shard-RRRRR.faiss
    4. merge    rank 0 merges the shards in rank order and writes OUT atomically
                (manifest with sizes and SHA-256), then removes OUT.work/

Chunks never span two shard files; shard file ``f`` belongs to the rank whose equal
share of the rows holds its middle row (:func:`shard_owners`), so ranks get whole files
and about equal rows.  The bank stores its documents by reference (source, sample) into
the input datasets, pinned by the SHA-256 of their ``index.json``
(:class:`cm3leon.retrieval.store.ShardDocumentStore`), never a copy.

Each phase is a plain function of ``(cfg, layout, rank, world_size)``, so the sharded
logic is testable in one process by calling the phases for simulated ranks.

Launch::

    cm3leon retrieval build configs/retrieval/bank.yaml                 # one process
    composer -n 2 -m cm3leon.retrieval.build configs/retrieval/bank.yaml  # two ranks
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.retrieval.bank import MemoryBank
from cm3leon.retrieval.config import BankConfig
from cm3leon.retrieval.index import (
    add_vectors,
    configure_search,
    make_index,
    merge_indexes,
    train_index,
    write_index,
)
from cm3leon.retrieval.rerank import check_rerank
from cm3leon.retrieval.sources import (
    ShardFile,
    middle_owner,
    plan_shards,
    read_shard,
    row_runs,
    source_record,
)
from cm3leon.retrieval.store import ShardDocumentStore

__all__ = [
    "Chunk",
    "Layout",
    "add_phase",
    "build_bank",
    "chunk_dirs",
    "embed_phase",
    "merge_phase",
    "plan_layout",
    "rank_chunks",
    "shard_owners",
    "train_phase",
]

log = logging.getLogger("cm3leon.retrieval.build")
EMBEDDINGS_FILE = "embeddings.npy"
CHUNK_IDS_FILE = "ids.json"
CHUNK_REFS_FILE = "refs.npy"
LAYOUT_VERSION = 2  # chunks within shard files, documents by reference


@dataclass(frozen=True)
class Chunk:
    """Bank rows ``[start, stop)``, all inside shard file ``shard`` of the plan."""

    shard: int
    start: int
    stop: int


@dataclass(frozen=True)
class Layout:
    """The shard files of a build and its chunks (same on every rank)."""

    shards: list[ShardFile]
    chunks: list[Chunk]

    @property
    def total(self) -> int:
        return self.chunks[-1].stop if self.chunks else 0


def plan_layout(cfg: BankConfig) -> Layout:
    """Shard files and chunks of ``cfg`` (reads manifests and ``index.json`` files only)."""
    shards = plan_shards(cfg.data)
    chunks = [Chunk(*run) for run in row_runs(shards, cfg.chunk_size)]
    if not chunks:
        raise ValueError(f"{cfg.data.shards}: no documents to index")
    return Layout(shards, chunks)


def shard_owners(shards: Sequence[ShardFile], world_size: int) -> list[int]:
    """Rank of each shard file: the rank whose share of the rows holds the file's middle row."""
    total = sum(s.rows for s in shards)
    return [middle_owner(s.first_row, s.first_row + s.rows, total, world_size) for s in shards]


def work_dir(cfg: BankConfig) -> Path:
    return Path(f"{str(cfg.output).rstrip('/')}.work")


def chunk_dirs(cfg: BankConfig, n_chunks: int) -> list[Path]:
    return [work_dir(cfg) / f"chunk-{c:05d}" for c in range(n_chunks)]


def rank_chunks(n_chunks: int, rank: int, world_size: int) -> range:
    """The contiguous chunk range rank ``rank`` adds to its shard index."""
    return range(rank * n_chunks // world_size, (rank + 1) * n_chunks // world_size)


# ------------------------------------------------------------------ phase 1
def embed_phase(cfg: BankConfig, encoder: Any, layout: Layout, *, rank: int = 0, world_size: int = 1,
                progress: bool = True, code_decoder: Any = None) -> list[str]:
    """Embed the missing chunks of this rank's shard files; returns the shard files read."""
    from tqdm.auto import tqdm

    from cm3leon.core.io import is_complete

    dirs = chunk_dirs(cfg, len(layout.chunks))
    owners = shard_owners(layout.shards, world_size)
    todo: dict[int, list[int]] = {}
    for c, chunk in enumerate(layout.chunks):
        if owners[chunk.shard] == rank and not is_complete(dirs[c]):
            todo.setdefault(chunk.shard, []).append(c)
    rows = sum(layout.chunks[c].stop - layout.chunks[c].start for cs in todo.values() for c in cs)
    log.info("rank %d/%d: %d shard files to read, %d documents to embed", rank, world_size, len(todo), rows)
    bar = tqdm(total=rows, unit="doc", desc=f"embed rank {rank}", disable=not progress)
    with bar:
        for f, cs in todo.items():
            shard = layout.shards[f]
            wanted = [r for c in cs for r in range(layout.chunks[c].start, layout.chunks[c].stop)]
            docs = read_shard(shard, wanted, check_hash=cfg.data.verify, rank=rank)
            for c in cs:
                chunk = layout.chunks[c]
                pending = [next(docs)[1] for _ in range(chunk.start, chunk.stop)]
                refs = [(shard.source, shard.first_sample + r - shard.first_row) for r in range(chunk.start, chunk.stop)]
                _write_chunk(dirs[c], encoder, pending, refs, code_decoder)
                bar.update(len(pending))
    return [str(layout.shards[f].file) for f in todo]


def _write_chunk(directory: Path, encoder: Any, docs: list[Document], refs: list[tuple[int, int]],
                 code_decoder: Any) -> None:
    from cm3leon.core.io import atomic_directory, atomic_write_json

    vectors = encoder.encode_documents(docs, code_decoder=code_decoder).numpy()  # (n, D)
    with atomic_directory(directory, overwrite=True) as tmp:
        np.save(tmp / EMBEDDINGS_FILE, vectors.astype(np.float32), allow_pickle=False)
        atomic_write_json(tmp / CHUNK_IDS_FILE, [d.id for d in docs], indent=0)
        np.save(tmp / CHUNK_REFS_FILE, np.asarray(refs, dtype=np.int64).reshape(-1, 2), allow_pickle=False)


def _load_chunk(directory: Path, name: str = EMBEDDINGS_FILE) -> np.ndarray:
    from cm3leon.core.io import is_complete

    if not is_complete(directory):
        raise RuntimeError(f"{directory}: chunk is not complete (did every rank finish embedding?)")
    return np.load(directory / name, allow_pickle=False)


# ------------------------------------------------------------------ phase 2
def train_phase(cfg: BankConfig, dim: int, layout: Layout) -> Path | None:
    """Train the empty index on a sample (rank 0); ``None`` when no training is needed."""
    index = make_index(dim, cfg.index.factory)
    if index.is_trained:
        return None
    total = layout.total
    rows = np.arange(total)
    if total > cfg.index.train_size:
        rows = np.sort(np.random.default_rng(cfg.index.seed).choice(total, cfg.index.train_size, replace=False))
    starts = np.asarray([c.start for c in layout.chunks])
    by_chunk: dict[int, list[int]] = {}
    for r in rows.tolist():
        c = int(np.searchsorted(starts, r, side="right")) - 1
        by_chunk.setdefault(c, []).append(r - int(starts[c]))
    dirs = chunk_dirs(cfg, len(layout.chunks))
    sample = np.concatenate([_load_chunk(dirs[c])[idx] for c, idx in sorted(by_chunk.items())])
    train_index(index, sample)
    return write_index(index, work_dir(cfg) / "trained.faiss")


def _empty_index(cfg: BankConfig, dim: int) -> Any:
    import faiss

    trained = work_dir(cfg) / "trained.faiss"
    if trained.is_file():
        return faiss.read_index(str(trained))  # our own intermediate file
    return make_index(dim, cfg.index.factory)


# ------------------------------------------------------------------ phase 3
def add_phase(cfg: BankConfig, dim: int, layout: Layout, *, rank: int = 0, world_size: int = 1) -> Path:
    """Add this rank's contiguous chunks to a copy of the (trained) empty index."""
    index = _empty_index(cfg, dim)
    dirs = chunk_dirs(cfg, len(layout.chunks))
    for c in rank_chunks(len(dirs), rank, world_size):
        add_vectors(index, _load_chunk(dirs[c]))
    return write_index(index, work_dir(cfg) / f"shard-{rank:05d}.faiss")


# ------------------------------------------------------------------ phase 4
def merge_phase(cfg: BankConfig, layout: Layout, world_size: int, encoder_info: dict[str, str],
                *, overwrite: bool = False, verify_documents: bool = True) -> Path:
    """Merge the rank shards in order and write the bank directory (rank 0)."""
    import faiss

    shards = [faiss.read_index(str(work_dir(cfg) / f"shard-{r:05d}.faiss")) for r in range(world_size)]
    index = merge_indexes(shards)
    del shards
    dirs = chunk_dirs(cfg, len(layout.chunks))
    ids: list[str] = []
    for d in dirs:
        ids.extend(json.loads((d / CHUNK_IDS_FILE).read_text(encoding="utf-8")))
    refs = np.concatenate([_load_chunk(d, CHUNK_REFS_FILE) for d in dirs])
    sources = _sources_unchanged(cfg)
    store = ShardDocumentStore(sources, refs, verify=verify_documents, where=cfg.output)
    disk = _disk_vectors(cfg, dirs, len(ids), int(index.d))
    configure_search(index, cfg.index.search_params, direct_map=disk is None)
    bank = MemoryBank(
        index, ids, store, factory=cfg.index.factory, search_params=cfg.index.search_params,
        encoder=encoder_info,
        extra={"train_size": cfg.index.train_size, "seed": cfg.index.seed, "chunk_size": cfg.chunk_size,
               "world_size": world_size, "shards": [str(s) for s in cfg.data.shards], "limit": cfg.data.limit},
        disk_vectors=disk, shortlist=cfg.index.rerank.shortlist,
    )
    return bank.save(cfg.output, overwrite=overwrite, move_vectors=True)


def _disk_vectors(cfg: BankConfig, dirs: Sequence[Path], rows: int, dim: int) -> np.ndarray | None:
    """With ``index.rerank.source: disk``: the chunks' vectors streamed into one ``.npy`` in
    the work directory and memory-mapped (the bank moves it into ``vectors.npy``; a failed
    save loses it, and a rerun writes it again from the chunks)."""
    from cm3leon.retrieval.rerank import open_vectors, write_vectors

    rerank = cfg.index.rerank
    if rerank.source != "disk":
        return None
    path = work_dir(cfg) / "vectors.npy"
    write_vectors(path, (_load_chunk(d) for d in dirs), rows=rows, dim=dim, dtype=rerank.dtype)
    return open_vectors(path, rows=rows, dim=dim, dtype=rerank.dtype)


def _sources_unchanged(cfg: BankConfig) -> list[dict[str, Any]]:
    """The source records now; they must be those the build started from (``build.json``)."""
    from cm3leon.core.io import read_json

    sources = [source_record(s) for s in cfg.data.shards]
    marker = work_dir(cfg) / "build.json"
    started = read_json(marker).get("sources") if marker.is_file() else None
    if started is not None and started != sources:
        changed = [s["path"] for s, t in zip(sources, started, strict=False) if s != t]
        raise ValueError(f"{', '.join(changed) or cfg.data.shards}: changed while the bank was being built; "
                         f"run the build again (it starts over)")
    return sources


# ------------------------------------------------------------ orchestration
class _Dist:
    """Rank, world size and barriers from the launcher's environment (gloo)."""

    def __init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self._owned = False
        if self.world_size > 1:
            import torch.distributed as tdist

            if not tdist.is_initialized():
                tdist.init_process_group("gloo", init_method="env://")
                self._owned = True

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as tdist

            tdist.barrier()

    def close(self) -> None:
        if self._owned:
            import torch.distributed as tdist

            tdist.destroy_process_group()


def build_bank(cfg: BankConfig, *, progress: bool = True, overwrite: bool = False,
               report: Callable[[str], Any] | None = None) -> Path:
    """Build the bank described by ``cfg`` (resumable; sharded under a launcher).

    Before embedding, rank 0 logs the size and memory estimate
    (:mod:`cm3leon.retrieval.estimate`) and hands its text to ``report`` (the CLI prints it).
    """
    from cm3leon.core.io import is_complete

    out = Path(cfg.output)
    if is_complete(out) and not overwrite:
        log.info("%s: bank exists; nothing to do (pass overwrite to rebuild)", out)
        return out
    if cfg.kind == "bm25":
        return _build_bm25(cfg, overwrite=overwrite)
    if cfg.kind != "faiss":
        raise ValueError(f"bank.kind must be 'faiss' or 'bm25', got {cfg.kind!r}")
    make_index(4, cfg.index.factory)  # fail fast on a bad factory string
    check_rerank(cfg.index.rerank.source, cfg.index.rerank.shortlist, cfg.index.rerank.dtype)
    if not cfg.encoder:
        raise ValueError("bank.encoder: a CLIP encoder directory is required for faiss banks")
    from cm3leon.retrieval.config import resolve_device
    from cm3leon.retrieval.encoder import load_encoder

    device = resolve_device(cfg.device)
    dist = _Dist()
    log.info("rank %d: embedding on %s (bank.device=%s)", dist.rank, device, cfg.device)
    try:
        encoder = load_encoder(cfg.encoder, batch_size=cfg.batch_size, device=device)
        layout = plan_layout(cfg)
        if dist.rank == 0:
            _announce_estimate(cfg, layout.total, encoder.dim, dist.world_size, report)
            _reset_stale_work(cfg, encoder.fingerprint)
        dist.barrier()
        embed_phase(cfg, encoder, layout, rank=dist.rank, world_size=dist.world_size, progress=progress,
                    code_decoder=_code_decoder(cfg.image_tokenizer, device))
        dist.barrier()
        if dist.rank == 0:
            train_phase(cfg, encoder.dim, layout)
        dist.barrier()
        add_phase(cfg, encoder.dim, layout, rank=dist.rank, world_size=dist.world_size)
        dist.barrier()
        if dist.rank == 0:
            info = {"name": encoder.name, "fingerprint": encoder.fingerprint, "path": str(Path(cfg.encoder).resolve())}
            merge_phase(cfg, layout, dist.world_size, info, overwrite=overwrite or out.exists())
            shutil.rmtree(work_dir(cfg), ignore_errors=True)
        dist.barrier()
    finally:
        dist.close()
    return out


def _announce_estimate(cfg: BankConfig, documents: int, dim: int, world_size: int,
                       report: Callable[[str], Any] | None) -> None:
    from cm3leon.retrieval.estimate import estimate_for_config

    text = estimate_for_config(cfg, documents=documents, dim=dim, world_size=world_size).render()
    log.info("%s", text)
    if report is not None:
        report(text)


def _reset_stale_work(cfg: BankConfig, fingerprint: str) -> None:
    """Keep resumable chunks only if they were made from the same inputs and encoder."""
    from cm3leon.core.io import atomic_write_json, read_json

    key = {"layout": LAYOUT_VERSION, "sources": [source_record(s) for s in cfg.data.shards],
           "limit": cfg.data.limit, "chunk_size": cfg.chunk_size, "encoder": fingerprint,
           "factory": cfg.index.factory, "train_size": cfg.index.train_size, "seed": cfg.index.seed}
    work = work_dir(cfg)
    marker = work / "build.json"
    if work.exists() and (not marker.is_file() or read_json(marker) != key):
        log.warning("%s: left over from a build with other settings or inputs; starting over", work)
        shutil.rmtree(work)
    if not marker.is_file():
        atomic_write_json(marker, key)


def _build_bm25(cfg: BankConfig, *, overwrite: bool) -> Path:
    from cm3leon.retrieval.bm25 import BM25Bank
    from cm3leon.retrieval.data import load_documents

    bank = BM25Bank.build(load_documents(cfg.data), k1=cfg.bm25_k1, b=cfg.bm25_b)
    return bank.save(cfg.output, overwrite=overwrite or Path(cfg.output).exists())


def _code_decoder(spec: str, device: str = "cpu") -> Any:
    """``image_tokenizer.decode`` for VQ-only images on ``device``, from a tokenizer value (or ``None``)."""
    if not spec:
        return None
    from cm3leon.core.tokenization import resolve_tokenizer

    tokenizer = resolve_tokenizer(spec, "image")
    if device != "cpu" and hasattr(tokenizer, "to"):  # torch-backed tokenizers (VQGANTokenizer.to)
        tokenizer.to(device)
    return tokenizer.decode


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m cm3leon.retrieval.build CONFIG [key=value ...]`` (for ``composer -n N -m``)."""
    from cm3leon.core.config import load_config
    from cm3leon.retrieval.config import RetrievalConfig, section

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m cm3leon.retrieval.build CONFIG.yaml [key=value ...]")
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s")
    cfg = section(load_config(RetrievalConfig, args[0], args[1:]), "bank", source=args[0])
    build_bank(cfg, progress=rank == 0, report=lambda text: print(text, file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
