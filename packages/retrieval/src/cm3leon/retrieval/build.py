"""Building memory banks: resumable chunked embedding, sharded across ranks.

``build_bank(cfg)`` runs four phases; under ``composer -n N`` every rank runs
them and ``torch.distributed`` (gloo) barriers separate the phases::

    1. embed    rank r embeds chunks c with c % N == r      -> OUT.work/chunk-CCCCC/
                (embeddings.npy, ids.json, documents.jsonl, COMPLETE; existing
                 complete chunks are skipped, so an interrupted build resumes)
    2. train    rank 0 trains the empty index on a seeded sample (IVF/PQ only)
                                                             -> OUT.work/trained.faiss
    3. add      rank r adds its contiguous range of chunks   -> OUT.work/shard-RRRRR.faiss
    4. merge    rank 0 merges the shards in rank order and writes OUT atomically
                (manifest with sizes and SHA-256), then removes OUT.work/

Each phase is a plain function of ``(cfg, rank, world_size)``, so the sharded
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
from collections.abc import Sequence
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
from cm3leon.retrieval.store import (
    DOCUMENTS_FILE,
    OFFSETS_FILE,
    JsonlDocumentStore,
    write_jsonl_documents,
)

__all__ = [
    "ConcatJsonlStore",
    "add_phase",
    "build_bank",
    "chunk_dirs",
    "embed_phase",
    "merge_phase",
    "rank_chunks",
    "train_phase",
]

log = logging.getLogger("cm3leon.retrieval.build")
EMBEDDINGS_FILE = "embeddings.npy"
CHUNK_IDS_FILE = "ids.json"


def work_dir(cfg: BankConfig) -> Path:
    return Path(f"{str(cfg.output).rstrip('/')}.work")


def chunk_dirs(cfg: BankConfig, total: int) -> list[Path]:
    n_chunks = (total + cfg.chunk_size - 1) // cfg.chunk_size
    return [work_dir(cfg) / f"chunk-{c:05d}" for c in range(n_chunks)]


def rank_chunks(n_chunks: int, rank: int, world_size: int) -> range:
    """The contiguous chunk range rank ``rank`` adds to its shard index."""
    return range(rank * n_chunks // world_size, (rank + 1) * n_chunks // world_size)


# ------------------------------------------------------------------ phase 1
def embed_phase(cfg: BankConfig, encoder: Any, *, rank: int = 0, world_size: int = 1, progress: bool = True,
                code_decoder: Any = None) -> int:
    """Embed this rank's missing chunks; returns the total number of documents."""
    from tqdm.auto import tqdm

    from cm3leon.core.io import atomic_directory, atomic_write_json, is_complete
    from cm3leon.retrieval.data import count_documents, iter_rows

    total = count_documents(cfg.data)
    if total == 0:
        raise ValueError(f"{cfg.data.shards}: no documents to index")
    dirs = chunk_dirs(cfg, total)
    todo = [c for c in range(len(dirs)) if c % world_size == rank and not is_complete(dirs[c])]
    if not todo:
        return total
    wanted = {row for c in todo for row in range(c * cfg.chunk_size, min((c + 1) * cfg.chunk_size, total))}
    bar = tqdm(total=len(wanted), unit="doc", desc=f"embed rank {rank}", disable=not progress)
    pending: list[Document] = []
    with bar:
        for row, doc in iter_rows(cfg.data, wanted):
            if doc is None:
                continue
            pending.append(doc)
            end = min((row // cfg.chunk_size + 1) * cfg.chunk_size, total)
            if row + 1 == end:  # last row of a chunk this rank owns
                c = row // cfg.chunk_size
                vectors = encoder.encode_documents(pending, code_decoder=code_decoder).numpy()  # (n, D)
                with atomic_directory(dirs[c], overwrite=True) as tmp:
                    np.save(tmp / EMBEDDINGS_FILE, vectors.astype(np.float32), allow_pickle=False)
                    atomic_write_json(tmp / CHUNK_IDS_FILE, [d.id for d in pending], indent=0)
                    write_jsonl_documents(pending, tmp)
                bar.update(len(pending))
                pending = []
    return total


def _load_chunk(directory: Path) -> np.ndarray:
    from cm3leon.core.io import is_complete

    if not is_complete(directory):
        raise RuntimeError(f"{directory}: chunk is not complete (did every rank finish embedding?)")
    return np.load(directory / EMBEDDINGS_FILE, allow_pickle=False)


# ------------------------------------------------------------------ phase 2
def train_phase(cfg: BankConfig, dim: int, total: int) -> Path | None:
    """Train the empty index on a sample (rank 0); ``None`` when no training is needed."""
    index = make_index(dim, cfg.index.factory)
    if index.is_trained:
        return None
    rows = np.arange(total)
    if total > cfg.index.train_size:
        rows = np.sort(np.random.default_rng(cfg.index.seed).choice(total, cfg.index.train_size, replace=False))
    by_chunk: dict[int, list[int]] = {}
    for r in rows.tolist():
        by_chunk.setdefault(r // cfg.chunk_size, []).append(r % cfg.chunk_size)
    dirs = chunk_dirs(cfg, total)
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
def add_phase(cfg: BankConfig, dim: int, total: int, *, rank: int = 0, world_size: int = 1) -> Path:
    """Add this rank's contiguous chunks to a copy of the (trained) empty index."""
    index = _empty_index(cfg, dim)
    dirs = chunk_dirs(cfg, total)
    for c in rank_chunks(len(dirs), rank, world_size):
        add_vectors(index, _load_chunk(dirs[c]))
    return write_index(index, work_dir(cfg) / f"shard-{rank:05d}.faiss")


# ------------------------------------------------------------------ phase 4
class ConcatJsonlStore:
    """The documents of several chunk directories, concatenated in order."""

    def __init__(self, directories: Sequence[Path]) -> None:
        self.stores = [JsonlDocumentStore(d) for d in directories]
        self.starts = np.cumsum([0] + [len(s) for s in self.stores])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def get(self, rows: Sequence[int]) -> list[Document]:
        out = []
        for r in rows:
            s = int(np.searchsorted(self.starts, int(r), side="right")) - 1
            out.extend(self.stores[s].get([int(r) - int(self.starts[s])]))
        return out

    def write_jsonl(self, directory: Path) -> None:
        """Concatenate the chunk files byte for byte (no decoding) into ``directory``."""
        offsets = [np.zeros(1, dtype=np.int64)]
        base = 0
        with open(directory / DOCUMENTS_FILE, "wb") as dst:
            for store in self.stores:
                with open(store.path, "rb") as src:
                    shutil.copyfileobj(src, dst)
                offsets.append(store.offsets[1:] + base)
                base += int(store.offsets[-1])
        np.save(directory / OFFSETS_FILE, np.concatenate(offsets), allow_pickle=False)


def merge_phase(cfg: BankConfig, total: int, world_size: int, encoder_info: dict[str, str],
                *, overwrite: bool = False) -> Path:
    """Merge the rank shards in order and write the bank directory (rank 0)."""
    import faiss

    shards = [faiss.read_index(str(work_dir(cfg) / f"shard-{r:05d}.faiss")) for r in range(world_size)]
    index = merge_indexes(shards)
    dirs = chunk_dirs(cfg, total)
    ids: list[str] = []
    for d in dirs:
        ids.extend(json.loads((d / CHUNK_IDS_FILE).read_text(encoding="utf-8")))
    configure_search(index, cfg.index.search_params)
    bank = MemoryBank(
        index, ids, ConcatJsonlStore(dirs), factory=cfg.index.factory, search_params=cfg.index.search_params,
        encoder=encoder_info,
        extra={"train_size": cfg.index.train_size, "seed": cfg.index.seed, "chunk_size": cfg.chunk_size,
               "world_size": world_size, "shards": [str(s) for s in cfg.data.shards], "limit": cfg.data.limit},
    )
    return bank.save(cfg.output, overwrite=overwrite)


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


def build_bank(cfg: BankConfig, *, progress: bool = True, overwrite: bool = False) -> Path:
    """Build the bank described by ``cfg`` (resumable; sharded under a launcher)."""
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
    if not cfg.encoder:
        raise ValueError("bank.encoder: a CLIP encoder directory is required for faiss banks")
    from cm3leon.retrieval.encoder import load_encoder

    encoder = load_encoder(cfg.encoder, batch_size=cfg.batch_size)
    dist = _Dist()
    try:
        if dist.rank == 0:
            _reset_stale_work(cfg, encoder.fingerprint)
        dist.barrier()
        total = embed_phase(cfg, encoder, rank=dist.rank, world_size=dist.world_size, progress=progress,
                            code_decoder=_code_decoder(cfg.image_tokenizer))
        dist.barrier()
        if dist.rank == 0:
            train_phase(cfg, encoder.dim, total)
        dist.barrier()
        add_phase(cfg, encoder.dim, total, rank=dist.rank, world_size=dist.world_size)
        dist.barrier()
        if dist.rank == 0:
            info = {"name": encoder.name, "fingerprint": encoder.fingerprint, "path": str(Path(cfg.encoder).resolve())}
            merge_phase(cfg, total, dist.world_size, info, overwrite=overwrite or out.exists())
            shutil.rmtree(work_dir(cfg), ignore_errors=True)
        dist.barrier()
    finally:
        dist.close()
    return out


def _reset_stale_work(cfg: BankConfig, fingerprint: str) -> None:
    """Keep resumable chunks only if they were made from the same inputs and encoder."""
    from cm3leon.core.io import atomic_write_json, read_json

    key = {"shards": [str(Path(s).resolve()) for s in cfg.data.shards], "limit": cfg.data.limit,
           "chunk_size": cfg.chunk_size, "encoder": fingerprint, "factory": cfg.index.factory,
           "train_size": cfg.index.train_size, "seed": cfg.index.seed}
    work = work_dir(cfg)
    marker = work / "build.json"
    if work.exists() and (not marker.is_file() or read_json(marker) != key):
        log.warning("%s: left over from a build with other settings; starting over", work)
        shutil.rmtree(work)
    if not marker.is_file():
        atomic_write_json(marker, key)


def _build_bm25(cfg: BankConfig, *, overwrite: bool) -> Path:
    from cm3leon.retrieval.bm25 import BM25Bank
    from cm3leon.retrieval.data import load_documents

    bank = BM25Bank.build(load_documents(cfg.data), k1=cfg.bm25_k1, b=cfg.bm25_b)
    return bank.save(cfg.output, overwrite=overwrite or Path(cfg.output).exists())


def _code_decoder(spec: str) -> Any:
    """``image_tokenizer.decode`` for VQ-only images, from a tokenizer value (or ``None``)."""
    if not spec:
        return None
    from cm3leon.core.tokenization import resolve_tokenizer

    return resolve_tokenizer(spec, "image").decode


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m cm3leon.retrieval.build CONFIG [key=value ...]`` (for ``composer -n N -m``)."""
    from cm3leon.core.config import load_config
    from cm3leon.retrieval.config import RetrievalConfig, section

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m cm3leon.retrieval.build CONFIG.yaml [key=value ...]")
    cfg = section(load_config(RetrievalConfig, args[0], args[1:]), "bank", source=args[0])
    build_bank(cfg, progress=int(os.environ.get("RANK", "0")) == 0)


if __name__ == "__main__":
    main()
