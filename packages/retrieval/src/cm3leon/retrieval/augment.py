"""Retrieval-augmented token shards for pretraining (Figure 9).

For every query document (a caption-image pair) the configured retriever returns
``k`` documents (training mode: query dropout, then ``train_select`` = 3 of the
2-by-text + 2-by-image pool at random), and core's serialiser writes one example::

    <eos> retrieved_1 <break> retrieved_2 <break> retrieved_3 <break> query

(``DocumentTokenizer.encode_example``: one ``<break>`` at each document boundary,
images bracketed by ``<break>``).  The output is a token-shard directory written
atomically by :class:`cm3leon.core.shards.TokenShardWriter`, read by the
pretraining data pipeline.  Each example also stores where its documents lie (the
``parts`` column): an example longer than the trainer's rows loses retrieved documents,
last first, before the CM3 transform -- never the query or its infill blocks
(:func:`cm3leon.core.serialize.fit_example`).

Across ranks and resumable: the queries are cut into *parts* of at most ``part_size``
queries that never span two input MDS shard files (:func:`plan_parts`, from the inputs'
``index.json`` files only).  Each rank takes an equal, contiguous share of the parts
(:func:`part_owners`), opens and hash-checks only the shard files they lie in, and writes
each part as its own token dataset ``OUTPUT.work/part-PPPPP/`` (atomic; a complete part
is never written again).  Rank 0 then merges the parts, in order, into ``OUTPUT``
(:func:`cm3leon.core.shard_merge.merge_datasets`: one MDS index, written atomically, only
once every part is complete) and removes ``OUTPUT.work``::

    cm3leon retrieval augment configs/retrieval/augment.yaml                  # one process
    composer -n 2 -m cm3leon.retrieval.augment configs/retrieval/augment.yaml   # two ranks

Retrieval is deterministic per query (seeds from the query id) and a part is written the
same way whichever rank writes it, so N ranks give exactly the single-process examples.
A killed run resumes from the complete parts when started again with the same settings
(``OUTPUT.work/augment.json`` records them: options, inputs by the SHA-256 of their
``index.json``, the bank's manifest; anything else starts over).  Each rank records its
progress in ``OUTPUT.work/rank-RRRRR.json``; rank 0 prints one line per rank (parts done of
its share, queries, queries/s) as they change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cm3leon.retrieval.config import AugmentConfig

__all__ = [
    "CodeCache",
    "Part",
    "augment_shards",
    "build_retriever",
    "document_tokenizer",
    "part_dir",
    "part_owners",
    "plan_parts",
    "rank_line",
    "retrieved_per_query",
    "work_dir",
]

log = logging.getLogger("cm3leon.retrieval.augment")
WORK_VERSION = 1  # layout of OUTPUT.work (parts within shard files)
POLL_SECONDS = 2.0


def document_tokenizer(cfg: AugmentConfig) -> Any:
    """Core's :class:`DocumentTokenizer` from the configured tokenizers (by registered name)."""
    from cm3leon.core.tokenization import build_document_tokenizer

    if not cfg.image_tokenizer and not cfg.image_codebook_size:
        raise ValueError("augment: set image_tokenizer, or image_codebook_size for documents with VQ codes")
    return build_document_tokenizer(
        cfg.text_tokenizer, cfg.image_tokenizer or None, image_codebook_size=cfg.image_codebook_size,
        num_sentinels=cfg.num_sentinels, tokens_per_image=cfg.tokens_per_image or None,
        query_loss_weight=cfg.query_loss_weight or None,
    )  # fmt: skip


def build_retriever(cfg: AugmentConfig, *, device: str = "cpu") -> Any:
    """The configured retriever over ``cfg.bank`` with ``cfg.strategy`` (by registered name).

    ``device``: a torch device other than ``cpu`` loads the query encoder of a ``faiss``
    bank there (``cfg.encoder``, else the one the bank records) and passes it as the
    retriever's ``encoder`` option; BM25 banks embed nothing.
    """
    from cm3leon.core.config import ConfigError, build_component
    from cm3leon.core.plugin_manager import get_registries

    options = {"bank": cfg.bank, **asdict(cfg.strategy), **dict(cfg.retriever.options)}
    encoder: Any = cfg.encoder
    if device != "cpu":
        encoder = _encoder_on(cfg, device) or encoder
    if encoder:
        options["encoder"] = encoder
    component = {"name": cfg.retriever.name, "options": options}
    try:
        return build_component(get_registries().retrievers, component, where="augment.retriever")
    except ConfigError as err:
        raise ValueError(str(err)) from None
    except TypeError as err:
        raise ValueError(f"augment.retriever.options: {err}") from None


def _encoder_on(cfg: AugmentConfig, device: str) -> Any:
    """The CLIP query encoder of a ``faiss`` bank loaded on ``device`` (``None``: no encoder)."""
    from cm3leon.retrieval.bank import read_manifest
    from cm3leon.retrieval.encoder import load_encoder

    manifest = read_manifest(cfg.bank)
    path = cfg.encoder or manifest.encoder.get("path")
    if manifest.kind != "faiss" or not path:
        return None
    return load_encoder(path, device=device)


def augment_shards(cfg: AugmentConfig, *, progress: bool = True, overwrite: bool = False,
                   retriever: Any = None) -> dict[str, Any]:
    """Write the retrieval-augmented token shards of ``cfg``; returns a report.

    Under a launcher (``composer -n N -m cm3leon.retrieval.augment``) every rank calls this:
    each writes its share of the parts, rank 0 merges them and returns the merged report
    (the other ranks return their own share's).  A killed run resumes from its complete parts.

    Args:
        cfg: the ``augment`` config section.
        progress: progress bars, and (rank 0) one line per rank as parts complete.
        overwrite: replace an existing output directory and discard resumable parts
            (otherwise a complete output is reused and complete parts are kept).
        retriever: use this retriever instead of building ``cfg.retriever`` (tests).
    """
    from cm3leon.core.io import is_complete
    from cm3leon.core.shards import verify_dataset
    from cm3leon.retrieval.build import _Dist  # the launcher's rank, world size and barriers
    from cm3leon.retrieval.config import resolve_device

    out = Path(cfg.output)
    if is_complete(out) and not overwrite:
        info = verify_dataset(out, check_hashes=False)
        log.info("%s: exists (%d examples); nothing to do", out, info.num_samples)
        return {"output": str(out), "examples": info.num_samples, "reused": True, **info.meta.get("report", {})}
    if cfg.part_size < 1:
        raise ValueError(f"augment.part_size: must be >= 1, got {cfg.part_size}")
    device = resolve_device(cfg.device, key="augment.device")
    dist = _Dist()
    try:
        with _rank0_lock(out, dist.rank):
            shards, parts = plan_parts(cfg)
            if dist.rank == 0:
                _prepare_work(cfg, overwrite)
            dist.barrier()
            mine = [p for p, owner in zip(parts, part_owners(parts, dist.world_size), strict=True) if owner == dist.rank]
            summary = _augment_rank(cfg, shards, mine, dist.rank, dist.world_size, device=device,
                                    progress=progress, retriever=retriever)
            if dist.rank != 0:
                return summary
            _wait_for_parts(cfg, parts, dist.world_size, progress=progress)
            report = _merge(cfg, parts, dist.world_size, overwrite=overwrite or out.exists())
    finally:
        dist.close()
    log.info("augmented %s: %s", out, report)
    return report


@dataclass(frozen=True)
class Part:
    """Query rows ``[start, stop)`` of input shard file ``shard``, written to ``part-{index}``."""

    index: int
    shard: int
    start: int
    stop: int


def plan_parts(cfg: AugmentConfig) -> tuple[list[Any], list[Part]]:
    """The input shard files and the parts of ``cfg`` (reads manifests and ``index.json`` only).

    Parts hold at most ``cfg.part_size`` consecutive queries and never span two shard
    files, so a rank opens (and hash-checks) only the files its parts lie in.
    """
    from cm3leon.retrieval.sources import plan_shards, row_runs

    shards = plan_shards(cfg.data)
    parts = [Part(i, *run) for i, run in enumerate(row_runs(shards, cfg.part_size))]
    if not parts:
        raise ValueError(f"augment.data.shards {list(cfg.data.shards)}: no query documents")
    return shards, parts


def part_owners(parts: list[Part], world_size: int) -> list[int]:
    """Rank of each part: the rank whose equal, contiguous share of the queries holds its middle."""
    from cm3leon.retrieval.sources import middle_owner

    total = parts[-1].stop
    return [middle_owner(p.start, p.stop, total, world_size) for p in parts]


def work_dir(cfg: AugmentConfig) -> Path:
    """``OUTPUT.work``: the parts, the settings they were made with, per-rank progress."""
    return Path(f"{str(cfg.output).rstrip('/')}.work")


def part_dir(cfg: AugmentConfig, part: Part) -> Path:
    return work_dir(cfg) / f"part-{part.index:05d}"


@contextlib.contextmanager
def _rank0_lock(out: Path, rank: int) -> Iterator[None]:
    """Rank 0 holds ``out``'s directory lock for the whole run (a second run fails at once)."""
    from cm3leon.core.locks import DirectoryLock

    if rank != 0:
        yield
        return
    with DirectoryLock(out):
        yield


def _settings(cfg: AugmentConfig) -> dict[str, Any]:
    """What the parts depend on: inputs (pinned by their ``index.json``), bank, options."""
    from cm3leon.retrieval.bank import read_manifest
    from cm3leon.retrieval.sources import source_record

    options = asdict(cfg)
    for key in ("output", "batch_size", "device"):  # these do not change the examples
        options.pop(key)
    options["data"].pop("verify")
    try:
        bank = json.dumps(read_manifest(cfg.bank).to_json(), sort_keys=True, default=str)
    except (FileNotFoundError, ValueError):  # no bank (a retriever passed in); building one names the error
        bank = str(cfg.bank)
    return {"version": WORK_VERSION, "options": json.loads(json.dumps(options, default=str)),
            "sources": [source_record(s) for s in cfg.data.shards],
            "bank": hashlib.sha256(bank.encode()).hexdigest()}


def _prepare_work(cfg: AugmentConfig, overwrite: bool) -> None:
    """Rank 0, holding the output lock: keep complete parts only if made with these settings;
    remove what killed writers left (temporary part and merge directories, progress files)."""
    from cm3leon.core.io import atomic_write_json, read_json

    work = work_dir(cfg)
    marker = work / "augment.json"
    key = _settings(cfg)
    if work.exists() and (overwrite or not marker.is_file() or read_json(marker) != key):
        why = "overwrite" if overwrite else "left over from a run with other settings or inputs"
        log.warning("%s: %s; starting over", work, why)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        atomic_write_json(marker, key)
    out = Path(cfg.output)
    stale = [*work.glob(".part-*.partial"), *work.glob("rank-*.json"), *out.parent.glob(f".{out.name}.*.partial")]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    done = sum(1 for _ in work.glob("part-*/COMPLETE"))
    if done:
        log.info("%s: resuming; %d complete parts are kept", work, done)



class CodeCache:
    """VQ codes of documents' images, encoded in batches and reused across examples.

    A bank document appears in many examples; its images are tokenized once (per
    ``capacity`` most recent documents) instead of once per example.
    """

    def __init__(self, image_tokenizer: Any, capacity: int = 100_000) -> None:
        self.tokenizer = image_tokenizer
        self.capacity = capacity
        self.codes: dict[tuple[Any, ...], tuple[int, ...]] = {}

    def attach(self, docs: list[Any]) -> list[Any]:
        """``docs`` with codes on every image segment (pixels kept).

        Codes are cached by ``(document id, segment index)``; documents without an id are
        encoded every time.
        """
        from cm3leon.core.documents import ImageSegment

        if self.tokenizer is None:
            return docs
        local: dict[Any, tuple[int, ...]] = {}
        todo: dict[Any, Any] = {}
        for n, d in enumerate(docs):
            for i, seg in enumerate(d.segments):
                key = self._key(d, n, i)
                if isinstance(seg, ImageSegment) and seg.codes is None and key not in self.codes:
                    todo[key] = seg.pil()
        if todo:
            encoded = self.tokenizer.encode(list(todo.values()))  # (B, N)
            rows = encoded.tolist() if hasattr(encoded, "tolist") else list(encoded)
            if len(self.codes) + len(todo) > self.capacity:
                self.codes.clear()
            for key, row in zip(todo, rows, strict=True):
                (self.codes if key[0] is not None else local)[key] = tuple(int(c) for c in row)
        out = []
        for n, d in enumerate(docs):
            segs = []
            for i, seg in enumerate(d.segments):
                if isinstance(seg, ImageSegment) and seg.codes is None:
                    key = self._key(d, n, i)
                    seg = ImageSegment(image=seg.image, codes=local[key] if key in local else self.codes[key])
                segs.append(seg)
            out.append(d.replace(segments=tuple(segs)))
        return out

    @staticmethod
    def _key(doc: Any, position: int, segment: int) -> tuple[Any, ...]:
        return (doc.id, segment) if doc.id else (None, position, segment)


def _write_batch(batch: list[Any], retriever: Any, doc_tok: Any, writer: Any, cfg: AugmentConfig, k: int,
                 counts: Counter[int], cache: CodeCache) -> None:
    retrieved = retriever.retrieve(batch, k, training=cfg.training)
    flat = cache.attach([*batch, *(d for docs in retrieved for d in docs)])
    batch, rest = flat[: len(batch)], iter(flat[len(batch) :])
    retrieved = [[next(rest) for _ in docs] for docs in retrieved]
    for query, docs in zip(batch, retrieved, strict=True):
        example = doc_tok.encode_example_with_targets(query, docs)
        writer.write(example.ids, id=query.id, loss_weights=example.weights, parts=example.parts)
        counts[len(docs)] += 1
        if cfg.keep_unaugmented:
            alone = doc_tok.encode_example_with_targets(query)
            writer.write(alone.ids, id=f"{query.id}#k0", loss_weights=alone.weights, parts=alone.parts)


class _RankStatus:
    """This rank's progress, in ``OUTPUT.work/rank-RRRRR.json`` (rank 0 prints every rank's)."""

    def __init__(self, cfg: AugmentConfig, rank: int, world_size: int, parts: list[Part], todo: list[Part]) -> None:
        self.path = work_dir(cfg) / f"rank-{rank:05d}.json"
        self.start = time.monotonic()
        self.data: dict[str, Any] = {
            "rank": rank, "world_size": world_size, "parts": len(parts), "resumed": len(parts) - len(todo),
            "done": 0, "queries": sum(p.stop - p.start for p in todo), "queries_done": 0, "seconds": 0.0,
            "state": "running", "error": "",
        }  # fmt: skip
        self.write()

    def write(self) -> None:
        from cm3leon.core.io import atomic_write_json

        self.data["seconds"] = round(time.monotonic() - self.start, 3)
        atomic_write_json(self.path, self.data)

    def part_done(self, queries: int) -> None:
        self.data["done"] += 1
        self.data["queries_done"] += queries
        self.write()

    def finish(self, error: BaseException | None = None) -> dict[str, Any]:
        self.data["state"] = "done" if error is None else "failed"
        self.data["error"] = "" if error is None else f"{type(error).__name__}: {error}"
        self.write()
        return dict(self.data)


def rank_line(status: dict[str, Any]) -> str:
    """One progress line of a rank: parts done of its share, queries, throughput."""
    s = status
    rate = s["queries_done"] / s["seconds"] if s["seconds"] > 0 else 0.0
    return (f"augment rank {s['rank']}/{s['world_size']}: {s['done'] + s['resumed']}/{s['parts']} parts "
            f"({s['resumed']} resumed), {s['queries_done']}/{s['queries']} queries, {rate:.1f} queries/s"
            + (f", {s['state']}" if s["state"] != "running" else ""))


def _statuses(cfg: AugmentConfig, world_size: int) -> list[dict[str, Any]]:
    from cm3leon.core.io import read_json

    out = []
    for rank in range(world_size):
        path = work_dir(cfg) / f"rank-{rank:05d}.json"
        out.append(read_json(path) if path.is_file() else {"rank": rank, "world_size": world_size, "parts": 0,
                                                            "resumed": 0, "done": 0, "queries": 0,
                                                            "queries_done": 0, "seconds": 0.0,
                                                            "state": "starting", "error": ""})  # fmt: skip
    return out


def _show_ranks(cfg: AugmentConfig, world_size: int, progress: bool) -> list[str]:
    from tqdm.auto import tqdm

    lines = [rank_line(s) for s in _statuses(cfg, world_size)]
    for line in lines:
        log.info("%s", line)
        if progress:
            tqdm.write(line, file=sys.stderr)
    return lines


def _augment_rank(cfg: AugmentConfig, shards: list[Any], mine: list[Part], rank: int, world_size: int, *,
                  device: str, progress: bool, retriever: Any) -> dict[str, Any]:
    """Write this rank's missing parts (reading only their shard files); returns its status."""
    from tqdm.auto import tqdm

    from cm3leon.core.io import is_complete
    from cm3leon.retrieval.sources import read_shard

    todo = [p for p in mine if not is_complete(part_dir(cfg, p))]
    status = _RankStatus(cfg, rank, world_size, mine, todo)
    log.info("%s", rank_line(status.data))
    try:
        if todo:
            worker = _Augmenter(cfg, device, retriever)
            by_shard: dict[int, list[Part]] = {}
            for p in todo:
                by_shard.setdefault(p.shard, []).append(p)
            bar = tqdm(total=status.data["queries"], unit="query", desc=f"augment rank {rank}", position=rank,
                       disable=not progress)
            with bar:
                for f, ps in by_shard.items():
                    rows = [r for p in ps for r in range(p.start, p.stop)]
                    docs = read_shard(shards[f], rows, check_hash=cfg.data.verify, rank=rank)
                    for p in ps:
                        worker.write_part(part_dir(cfg, p), [next(docs)[1] for _ in range(p.start, p.stop)], p)
                        status.part_done(p.stop - p.start)
                        bar.update(p.stop - p.start)
                        log.info("%s", rank_line(status.data))
    except BaseException as err:
        status.finish(err)
        raise
    return status.finish()


def _wait_for_parts(cfg: AugmentConfig, parts: list[Part], world_size: int, *, progress: bool) -> None:
    """Rank 0: wait (polling the work directory, no collective that could time out) until
    every part is complete; print one line per rank whenever one changes; fail if a rank did."""
    from cm3leon.core.io import is_complete

    shown: list[str] | None = None
    while True:
        statuses = _statuses(cfg, world_size)
        failed = [s for s in statuses if s["state"] == "failed"]
        if failed:
            raise RuntimeError(f"augment rank {failed[0]['rank']} failed: {failed[0]['error']}")
        lines = [rank_line(s) for s in statuses]
        if lines != shown:
            shown = _show_ranks(cfg, world_size, progress)
        if all(is_complete(part_dir(cfg, p)) for p in parts):
            return
        time.sleep(POLL_SECONDS)


def _merge(cfg: AugmentConfig, parts: list[Part], world_size: int, *, overwrite: bool) -> dict[str, Any]:
    """Rank 0: merge the complete parts, in order, into ``cfg.output``; remove the work directory."""
    from cm3leon.core.shard_merge import merge_datasets, merge_stats
    from cm3leon.core.shards import read_manifest

    dirs = [part_dir(cfg, p) for p in parts]
    manifests = [read_manifest(d) for d in dirs]
    histogram: Counter[int] = Counter()
    for m in manifests:
        histogram.update({int(n): c for n, c in m["meta"]["histogram"].items()})
    ranks = [{k: s[k] for k in ("rank", "parts", "resumed", "done", "queries_done", "seconds")}
             for s in _statuses(cfg, world_size)]
    report = {"output": str(cfg.output), "queries": sum(m["meta"]["queries"] for m in manifests),
              "examples": sum(int(m["num_samples"]) for m in manifests),
              "retrieved_histogram": {str(n): c for n, c in sorted(histogram.items())},
              **merge_stats([m["stats"] for m in manifests]), "parts": len(parts), "world_size": world_size,
              "ranks": ranks}  # fmt: skip
    meta = {"bank": str(cfg.bank), "retriever": cfg.retriever.name, "k": retrieved_per_query(cfg),
            "training": cfg.training, "strategy": asdict(cfg.strategy),
            "queries": [str(s) for s in cfg.data.shards], "report": report}  # fmt: skip
    merge_datasets(dirs, cfg.output, meta=meta, overwrite=overwrite)
    shutil.rmtree(work_dir(cfg), ignore_errors=True)
    return report


def retrieved_per_query(cfg: AugmentConfig) -> int:
    """``k``: ``cfg.k``, else ``train_select`` in training, else the by-text + by-image pool."""
    s = cfg.strategy
    return cfg.k or (s.train_select if cfg.training else s.num_by_text + s.num_by_image)


class _Augmenter:
    """Tokenizers, retriever and code cache of one rank; writes one part at a time."""

    def __init__(self, cfg: AugmentConfig, device: str, retriever: Any = None) -> None:
        self.cfg = cfg
        self.doc_tok = document_tokenizer(cfg)
        image_tok = self.doc_tok.image_tokenizer
        if device != "cpu" and image_tok is not None and hasattr(image_tok, "to"):
            image_tok.to(device)  # torch-backed image tokenizers (VQGANTokenizer.to)
        self.retriever = retriever if retriever is not None else build_retriever(cfg, device=device)
        self.k = retrieved_per_query(cfg)
        self.cache = CodeCache(image_tok)
        log.info("augment: queries embedded on %s (augment.device=%s)", device, cfg.device)

    def write_part(self, directory: Path, queries: list[Any], part: Part) -> None:
        """Augment ``queries`` (in batches of ``batch_size``) into the token dataset ``directory``."""
        from cm3leon.core.shards import TokenShardWriter

        counts: Counter[int] = Counter()
        writer = TokenShardWriter(directory, self.doc_tok.vocab, with_loss_weights=bool(self.cfg.query_loss_weight),
                                  with_parts=True, overwrite=False, meta={"rows": [part.start, part.stop]})
        with writer:
            for i in range(0, len(queries), self.cfg.batch_size):
                batch = queries[i : i + self.cfg.batch_size]
                _write_batch(batch, self.retriever, self.doc_tok, writer, self.cfg, self.k, counts, self.cache)
            writer.meta.update(queries=len(queries), histogram={str(n): c for n, c in sorted(counts.items())})


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m cm3leon.retrieval.augment CONFIG [key=value ...]`` (for ``composer -n N -m``)."""
    from cm3leon.core.config import ConfigError, load_config
    from cm3leon.retrieval.cli import _file_logging
    from cm3leon.retrieval.config import RetrievalConfig, section

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m cm3leon.retrieval.augment CONFIG.yaml [key=value ...]")
    rank = int(os.environ.get("RANK", "0"))
    try:
        cfg = section(load_config(RetrievalConfig, args[0], args[1:]), "augment", source=args[0])
    except (ConfigError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    log_file = f"{cfg.output.rstrip('/')}.log" if rank == 0 else f"{cfg.output.rstrip('/')}.rank{rank}.log"
    with _file_logging(log_file):
        try:
            report = augment_shards(cfg, progress=rank == 0)
        except (ValueError, KeyError, FileNotFoundError, FileExistsError, RuntimeError) as err:
            raise SystemExit(f"error: rank {rank}: {err}") from None
    if rank == 0:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
