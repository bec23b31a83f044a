"""Parallel ``cm3leon data prepare``: N worker processes and/or N ranks, one merged dataset.

::

    cm3leon data prepare --source webdataset laion/ --out shards/laion --workers 8
    composer -n 4 -m cm3leon.core.data_cli prepare --source webdataset laion/ --out shards/laion

**Split.** The source is cut into *parts* by its ``parts(size)`` method (one per tar or
parquet file; runs of ``--part-size`` images, lines or rows for folder, jsonl, tsv and hf
``save_to_disk`` sources), in reading order; the labels are the same in every process.
Of the ``G = ranks x workers`` workers, worker ``g = rank * workers + w`` writes the parts
``p`` with ``p % G == g``.  Each part is written as a complete dataset
``OUT.work/part-PPPPP/`` (its own MDS shards, filled under a temporary name and renamed
when complete, :func:`cm3leon.core.io.atomic_directory`), then its record
``OUT.work/part-PPPPP.json`` (samples written, bad samples named, ids, which worker) is
written atomically -- **last**: a part is finished exactly when its record exists.

**Merge.** When every part is finished, rank 0 joins the parts in part order
(:func:`cm3leon.core.shard_merge.merge_datasets`) into ``OUT``, which appears atomically
and reads like a single-process output: the same samples in the same order (ids must be
unique across parts: a duplicate is an error naming both parts, even with ``--skip-bad``),
the same kind, columns and vocabulary, summed statistics; its manifest's ``meta`` adds
``parallel: {parts, workers, part_size}``.  ``OUT.work`` is then removed.

**Resume.** A killed run leaves ``OUT.work``.  The same command again (any number of
workers or ranks) keeps every finished part, discards partial ones (temporary
directories, and part directories without their record) and writes the rest; if the
source's parts or the options changed, ``OUT.work`` is discarded with a warning.  A worker
whose parent process died stops before its next sample, so an orphan never races a restart.

**Lock.** The command holds ``OUT``'s directory lock (:mod:`cm3leon.core.locks`) from the
start to the end (rank 0 takes it; its forked workers inherit it), so a second prepare
into the same ``--out`` fails at once naming this process.

**Ranks** come from the launcher's environment through Composer's ``composer.utils.dist``
(as ``cm3leon.core.train`` reads them); the process group (gloo) is used for barriers that
share errors, so every rank fails together with the failing rank's message.  Workers are
``fork``-ed (POSIX; the tokenizers the command built are shared, not rebuilt) and run
single-threaded torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cm3leon.core.io import atomic_write_json, read_json

__all__ = [
    "DEFAULT_PART_SIZE",
    "PrepareJob",
    "launcher_world_size",
    "prepare_parallel",
    "run_worker",
    "source_parts",
    "work_dir",
]

log = logging.getLogger("cm3leon.data")

#: Records (images, lines, rows) per part for sources that are not split by file.
DEFAULT_PART_SIZE = 10_000
#: How long a rank waits for the others (seconds): parts can take hours on a big corpus.
DIST_TIMEOUT = 7 * 24 * 3600.0
PLAN_FILE = "plan.json"
PLAN_FORMAT = 1


@dataclass(frozen=True)
class PrepareJob:
    """What to prepare: the same in every worker and rank.

    Attributes:
        source: registered source name; ``path`` and ``options`` are its arguments.
        kind: ``documents`` or ``tokens``.
        meta: the output manifest's ``meta`` (what a single-process run records).
        skip_bad: skip (and name) documents that fail to encode.
        part_size: records per part for sources split by record ranges.
        batch_size: documents VQ-encoded together.
    """

    source: str
    path: str
    options: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "documents"
    meta: Mapping[str, Any] = field(default_factory=dict)
    skip_bad: bool = False
    part_size: int = DEFAULT_PART_SIZE
    batch_size: int = 32


def work_dir(out: str | Path) -> Path:
    """Where the parts of ``out`` are written: ``OUT.work`` next to it."""
    return Path(f"{str(out).rstrip('/')}.work")


def _part_dir(work: Path, part: int) -> Path:
    return work / f"part-{part:05d}"


def _record_path(work: Path, part: int) -> Path:
    return work / f"part-{part:05d}.json"


def source_parts(job: PrepareJob) -> list[tuple[str, Any]]:
    """The source of ``job`` cut into ``(label, source)`` parts, in reading order.

    Raises:
        ValueError: the source has no ``parts(size)`` method, or nothing to read.
    """
    from cm3leon.core.plugin_manager import get_registries

    docs = get_registries().sources.get(job.source, where="--source").load()(job.path, **job.options)
    split = getattr(docs, "parts", None)
    if not callable(split):
        raise ValueError(f"source {job.source!r} cannot be prepared in parallel: {type(docs).__name__} has no "
                         f"parts(size) method; prepare it with one process (drop --workers)")  # fmt: skip
    parts = list(split(job.part_size))
    if not parts:
        raise ValueError(f"{job.path}: source {job.source!r} has nothing to read")
    return parts


# ----------------------------------------------------------------- ranks
def launcher_world_size() -> int:
    """The launcher's world size (Composer's ``dist.get_world_size``); 1 without a launcher.

    Composer is imported only when a launcher set ``WORLD_SIZE``: importing it costs seconds.
    """
    if "WORLD_SIZE" not in os.environ:
        return 1
    from composer.utils import dist

    return int(dist.get_world_size())


class _Ranks:
    """Rank and world size from the launcher, via Composer's ``dist`` (``cm3leon.core.train``
    reads them the same way), and barriers that share errors."""

    def __init__(self) -> None:
        self.dist: Any = None
        self.rank, self.world = 0, 1
        if launcher_world_size() > 1:
            from composer.utils import dist

            self.dist = dist
            self.rank, self.world = dist.get_global_rank(), dist.get_world_size()
            self._owned = self.world > 1 and not dist.is_initialized()
            if self.world > 1:
                dist.initialize_dist("cpu", DIST_TIMEOUT)

    def close(self) -> None:
        """Destroy the process group if this object created it."""
        if getattr(self, "_owned", False):
            import torch.distributed

            torch.distributed.destroy_process_group()

    def sync(self, error: BaseException | None) -> None:
        """Wait for every rank; raise on every rank if any rank failed (naming it)."""
        if self.world > 1:
            messages = self.dist.all_gather_object(None if error is None else f"{type(error).__name__}: {error}")
            if error is None:
                failed = [(r, m) for r, m in enumerate(messages) if m is not None]
                if failed:
                    raise ValueError(f"rank {failed[0][0]} failed: {failed[0][1]}")
        if error is not None:
            raise error


def _phase(ranks: _Ranks, fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` on this rank, then :meth:`_Ranks.sync` with its error (if any)."""
    result, error = None, None
    try:
        result = fn(*args)
    except Exception as err:  # shared with the other ranks, then raised here too
        error = err
    ranks.sync(error)
    return result


# ------------------------------------------------------------ work folder
def _plan(job: PrepareJob, labels: Sequence[str]) -> dict[str, Any]:
    """What the finished parts were made from (as JSON reads it back, so it compares equal)."""
    plan = {"format": PLAN_FORMAT, "meta": dict(job.meta), "skip_bad": job.skip_bad,
            "part_size": job.part_size, "parts": list(labels)}  # fmt: skip
    return json.loads(json.dumps(plan, sort_keys=True))


def _prepare_work(work: Path, plan: dict[str, Any]) -> set[int]:
    """Rank 0, under the lock: keep finished parts of the same plan, discard partial ones.

    Returns the parts already finished.
    """
    plan_file = work / PLAN_FILE
    if work.exists() and (not plan_file.is_file() or read_json(plan_file) != plan):
        log.warning("%s: left over from a prepare with other inputs or options; starting over", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not plan_file.is_file():
        atomic_write_json(plan_file, plan)
    finished = set()
    for entry in sorted(work.iterdir()):
        if entry.name.endswith((".partial", ".tmp")):  # a writer killed mid-part
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            log.info("%s: discarded a partial part", entry)
        elif entry.is_dir() and entry.name.startswith("part-"):
            if not (work / f"{entry.name}.json").is_file():  # complete, but its record was never written
                shutil.rmtree(entry)
                log.info("%s: discarded a part without its record", entry)
        elif entry.suffix == ".json" and entry.name.startswith("part-"):
            finished.add(int(entry.stem.removeprefix("part-")))
    return finished


def _check_plan(work: Path, plan: dict[str, Any]) -> None:
    """Every rank must see the parts rank 0 planned (same files, same options)."""
    if read_json(work / PLAN_FILE) != plan:
        raise ValueError(f"{work / PLAN_FILE}: this rank sees other parts or options than rank 0 "
                         "(different files on this node?)")  # fmt: skip


# ---------------------------------------------------------------- workers
class _Watched:
    """A part's documents, counted on the worker's progress bar; stops if the parent died."""

    def __init__(self, source: Any, bar: Any, parent: int | None) -> None:
        self.source, self.bar, self.parent = source, bar, parent

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.source.skipped

    def __iter__(self) -> Iterator[Any]:
        for doc in self.source:
            if self.parent is not None and os.getppid() != self.parent:
                raise SystemExit(f"worker {os.getpid()}: the prepare command that started it is gone; stopping")
            yield doc
            self.bar.update(1)


def _write_part(job: PrepareJob, part: int, label: str, source: Any, work: Path, who: str, doc_tokenizer: Any,
                bar: Any, parent: int | None) -> dict[str, Any]:  # fmt: skip
    """Write part ``part`` as a dataset, then (last) its record; returns the record."""
    from cm3leon.core.data_cli import PrepareReport, prepare_dataset
    from cm3leon.core.shards import EmptyDatasetError, iter_samples

    out = _part_dir(work, part)
    report = PrepareReport(str(out), job.kind)
    try:
        prepare_dataset(_Watched(source, bar, parent), out, kind=job.kind, doc_tokenizer=doc_tokenizer,
                        skip_bad=job.skip_bad, meta={**job.meta, "part": label}, progress=False,
                        batch_size=job.batch_size, report=report)  # fmt: skip
        ids = [str(sample["id"]) for _, sample in iter_samples(out, verify=False)]
    except EmptyDatasetError:  # every sample of the part was bad (or it had none): a finished, empty part
        ids = []
    record = {"part": part, "label": label, "worker": who, "written": report.written,
              "skipped": [list(s) for s in report.skipped], "ids": ids}  # fmt: skip
    atomic_write_json(_record_path(work, part), record)
    log.info("worker %s: part %d (%s): %d written, %d skipped", who, part, label, report.written,
             len(report.skipped))  # fmt: skip
    return record


def run_worker(job: PrepareJob, parts: Sequence[tuple[str, Any]], work: Path, worker: int, workers: int, *,
               doc_tokenizer: Any = None, progress: bool = True, position: int = 0,
               parent: int | None = None) -> int:  # fmt: skip
    """Write the unfinished parts of worker ``worker`` of ``workers``; returns how many it wrote."""
    from tqdm.auto import tqdm

    mine = [p for p in range(len(parts)) if p % workers == worker and not _record_path(work, p).is_file()]
    sizes = [len(parts[p][1]) if hasattr(parts[p][1], "__len__") else None for p in mine]
    total = sum(sizes) if None not in sizes else None  # type: ignore[arg-type]
    who = f"{worker + 1}/{workers}"
    with tqdm(total=total, unit="doc", desc=f"prepare worker {who}", position=position, leave=True,
              disable=not progress) as bar:  # fmt: skip
        for p in mine:
            _write_part(job, p, parts[p][0], parts[p][1], work, who, doc_tokenizer, bar, parent)
    return len(mine)


def _forked_worker(errors: Any, *args: Any, **kwargs: Any) -> None:
    """Entry of a forked worker: single-threaded torch; an error goes back through ``errors``."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    kwargs["parent"] = os.getppid()
    try:
        run_worker(*args, **kwargs)
    except Exception as err:  # reported by the coordinator, naming this worker
        errors.put((args[3], f"{type(err).__name__}: {err}"))
        raise SystemExit(1) from None


def _run_workers(job: PrepareJob, parts: Sequence[tuple[str, Any]], work: Path, ranks: _Ranks, workers: int,
                 doc_tokenizer: Any, progress: bool) -> None:  # fmt: skip
    """This rank's ``workers`` workers (forked when more than one); raises if any failed."""
    total = ranks.world * workers
    first = ranks.rank * workers
    if workers == 1:
        run_worker(job, parts, work, first, total, doc_tokenizer=doc_tokenizer, progress=progress)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=_forked_worker, args=(errors, job, parts, work, first + w, total), daemon=True,
                         kwargs={"doc_tokenizer": doc_tokenizer, "progress": progress, "position": w})
             for w in range(workers)]  # fmt: skip
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    messages = {}
    while not errors.empty():
        worker, message = errors.get()
        messages[worker] = message
    failed = [(first + w, proc.exitcode) for w, proc in enumerate(procs) if proc.exitcode != 0]
    if failed:
        worker, code = failed[0]
        raise ValueError(f"worker {worker + 1}/{total} failed: {messages.get(worker, f'exit code {code}')}"
                         + (f" (and {len(failed) - 1} more worker(s))" if len(failed) > 1 else ""))


# ------------------------------------------------------------------ merge
def _digest(ident: str) -> int:
    return int.from_bytes(hashlib.blake2b(ident.encode("utf-8"), digest_size=8).digest(), "little")


def _check_unique_ids(work: Path, n_parts: int, out: Path) -> None:
    """Ids must be unique across parts.

    One 64-bit digest per id is kept (not the ids: a corpus has hundreds of millions), the
    digests are sorted, and only a repeated digest is looked up again by name.
    """
    import numpy as np

    def ids(part: int) -> list[str]:
        return read_json(_record_path(work, part))["ids"]

    digests = np.concatenate([np.fromiter(map(_digest, ids(p)), dtype=np.uint64) for p in range(n_parts)])
    digests.sort()
    clashes = set(digests[1:][digests[1:] == digests[:-1]].tolist())
    seen: dict[str, str] = {}
    for part in range(n_parts) if clashes else ():
        record = read_json(_record_path(work, part))
        for ident in record["ids"]:
            if _digest(ident) not in clashes:
                continue
            if ident in seen:
                raise ValueError(f"{out}: duplicate sample id {ident!r} in parts {seen[ident]} and "
                                 f"{part} ({record['label']})")  # fmt: skip
            seen[ident] = f"{part} ({record['label']})"


def _worker_summary(records: Sequence[Mapping[str, Any]], finished_before: set[int]) -> list[dict[str, Any]]:
    """Per worker (as recorded by the part): parts, samples written, bad samples named."""
    summary: dict[str, dict[str, Any]] = {}
    for record in records:
        row = summary.setdefault(record["worker"], {"worker": record["worker"], "parts": 0, "resumed_parts": 0,
                                                    "written": 0, "skipped": 0, "skipped_items": []})
        row["parts"] += 1
        row["resumed_parts"] += record["part"] in finished_before
        row["written"] += record["written"]
        row["skipped"] += len(record["skipped"])
        row["skipped_items"].extend(record["skipped"][: max(0, 10 - len(row["skipped_items"]))])
    return sorted(summary.values(), key=lambda row: [int(x) for x in row["worker"].split("/")][::-1])


def _merge(job: PrepareJob, out: Path, work: Path, n_parts: int, workers: int, finished_before: set[int],
           overwrite: bool, max_skip_rate: float | None) -> Any:  # fmt: skip
    """Rank 0: check every part's record, then merge the parts into ``out`` and drop ``work``."""
    from cm3leon.core.data_cli import PrepareReport, _check_skip_rate
    from cm3leon.core.shard_merge import merge_datasets
    from cm3leon.core.shards import EmptyDatasetError

    missing = [p for p in range(n_parts) if not _record_path(work, p).is_file()]
    if missing:
        raise ValueError(f"{work}: part(s) {missing[:10]} not finished; run the command again to resume")
    _check_unique_ids(work, n_parts, out)
    records = [{k: v for k, v in read_json(_record_path(work, p)).items() if k != "ids"} for p in range(n_parts)]
    report = PrepareReport(str(out), job.kind, written=sum(r["written"] for r in records),
                           skipped=[(str(w), str(why)) for r in records for w, why in r["skipped"]])  # fmt: skip
    _check_skip_rate(report, len(report.skipped), max_skip_rate)
    written = [_part_dir(work, r["part"]) for r in records if r["written"] > 0]
    if not written:
        raise EmptyDatasetError(f"{out}: no samples were written; refusing an empty dataset")
    parallel = {"parts": n_parts, "workers": workers, "part_size": job.part_size}
    info = merge_datasets(written, out, meta={**job.meta, "parallel": parallel}, overwrite=overwrite)
    report.stats = info.stats
    report.parallel = {**parallel, "resumed_parts": len(finished_before),
                       "per_worker": _worker_summary(records, finished_before)}  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return report


# ------------------------------------------------------------ the command
def _start(job: PrepareJob, out: Path, ranks: _Ranks, overwrite: bool) -> tuple[list[tuple[str, Any]], set[int]]:
    """Every rank lists the parts; rank 0 checks ``out`` and sets up the work folder."""
    if ranks.rank == 0 and out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    parts = source_parts(job)
    finished = _prepare_work(work_dir(out), _plan(job, [label for label, _ in parts])) if ranks.rank == 0 else set()
    return parts, finished


def prepare_parallel(job: PrepareJob, out: str | Path, *, workers: int = 1, doc_tokenizer: Any = None,
                     overwrite: bool = False, max_skip_rate: float | None = None,
                     progress: bool = True) -> Any:  # fmt: skip
    """Prepare ``job`` into ``out`` with ``workers`` processes on each rank (see the module docstring).

    Returns:
        The :class:`cm3leon.core.data_cli.PrepareReport` on rank 0 (``parallel`` holds the
        per-worker counts); ``None`` on the other ranks.

    Raises:
        FileExistsError: ``out`` exists (without ``overwrite``), or another command holds its lock.
        ValueError: a bad sample (without ``skip_bad``), a failed worker or rank (named),
            a source that cannot be split, duplicate ids across parts, too many skips.
    """
    from cm3leon.core.locks import DirectoryLock

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out, ranks = Path(out), _Ranks()
    lock = DirectoryLock(out) if ranks.rank == 0 else None
    try:
        _phase(ranks, lock.acquire if lock is not None else lambda: None)
        parts, finished = _phase(ranks, _start, job, out, ranks, overwrite)
        plan = _plan(job, [label for label, _ in parts])
        _phase(ranks, _check_plan, work_dir(out), plan)
        _phase(ranks, _run_workers, job, parts, work_dir(out), ranks, workers, doc_tokenizer, progress)
        merge = _merge if ranks.rank == 0 else lambda *args: None
        return _phase(ranks, merge, job, out, work_dir(out), len(parts), ranks.world * workers, finished,
                      overwrite, max_skip_rate)  # fmt: skip
    finally:
        if lock is not None:
            lock.release()
        ranks.close()
