"""Declarative SFT mixtures with the paper's 3/0.3 up/down-sampling (Appendix E.1).

A mixture YAML (schema :class:`MixtureConfig`, files under ``configs/mixtures/``)
lists tasks with a weight and their sources::

    name: sft_example
    seed: 0
    tasks:
      - task: vqa2
        weight: 1.0
        sources:
          - {path: data/vqa, split: train2014}
    balance: {max_upsample: 3.0, min_downsample: 0.3}
    output: {path: runs/sft/mixture, format: tokens, text_tokenizer: "bpe:runs/tok/text",
             image_tokenizer: "vqgan:runs/tok/image"}

Balancing, precisely.  Let ``n_i`` be the number of documents task ``i`` rendered
from its sources, ``w_i`` its weight, ``p_i = w_i / sum_j w_j`` its *weighted target
share* and ``T`` the target total (``balance.total``, default ``N = sum_i n_i``).
Task ``i`` would need ``rho_i = p_i * T / n_i`` passes over its data to get its
share.  The sampling factor is that, clipped:

    r_i = min(max_upsample, max(min_downsample, rho_i))        (paper: 3 and 0.3)

and the mixture holds ``c_i = round(r_i * n_i)`` documents of task ``i``: every
document ``floor(r_i)`` times plus ``c_i mod n_i`` distinct ones drawn without
replacement.  So a small dataset is repeated at most 3x (it then stays below its
weighted share), and a large one keeps at least 30% of its documents (it then stays
above it); tasks whose ``rho_i`` lies inside ``[0.3, 3]`` get exactly their share of
``T``.  The realised proportions are ``c_i / sum_j c_j``.  The whole mixture is then
shuffled, so any prefix a trainer reads has these proportions up to sampling error.
Everything is deterministic given ``seed``.

Building runs in two passes.  Pass 1 renders each task's records into a staging
document dataset (``<output.path>.staging/<task>``, reused when its fingerprint --
task, options, sources, seed -- is unchanged, so an interrupted build resumes).
Pass 2 computes the counts, draws the plan and writes the final shards through
:func:`cm3leon.core.data_cli.prepare_dataset` (document shards, or token shards with
the configured tokenizers) with the mixture report in the manifest's ``meta``.  Token
shards carry every example's task targets (the ``targets`` column: the token ranges of
the output each task marks in ``meta["targets"]``), which the trainer's CM3 transform
masks exactly with probability ``data.cm3.options.target_prob``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import MISSING

__all__ = [
    "BalanceConfig",
    "MixtureConfig",
    "MixtureReport",
    "MixtureTaskConfig",
    "OutputConfig",
    "SourceConfig",
    "balance_counts",
    "build_mixture",
    "sample_plan",
]

log = logging.getLogger("cm3leon.tasks.mixture")


# ------------------------------------------------------------------ schema
@dataclass
class SourceConfig:
    """One dataset read with the task's reader: ``reader(path, split=..., **options)``."""

    path: str = MISSING
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None  # read at most this many records (quick runs)


@dataclass
class MixtureTaskConfig:
    """A task in the mixture: registered ``task`` name, ``weight``, factory ``options``."""

    task: str = MISSING
    weight: float = 1.0
    sources: list[SourceConfig] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BalanceConfig:
    """Appendix E.1's up/down-sampling thresholds and the target total (default: natural)."""

    max_upsample: float = 3.0
    min_downsample: float = 0.3
    total: int | None = None


@dataclass
class OutputConfig:
    """Where and how the mixture is written.

    ``format: documents`` writes document shards; ``format: tokens`` writes the token
    shards the trainer streams, serialised with ``text_tokenizer`` / ``image_tokenizer``
    (registered ``NAME``, ``NAME:DIR`` or ``DIR``, as for ``cm3leon data prepare``).
    """

    path: str = MISSING
    format: str = "documents"
    text_tokenizer: str | None = None
    image_tokenizer: str | None = None
    num_sentinels: int = 8
    overwrite: bool = False


@dataclass
class MixtureConfig:
    """A whole SFT mixture (``configs/mixtures/*.yaml``)."""

    name: str = "sft"
    seed: int = 0
    skip_bad: bool = False
    tasks: list[MixtureTaskConfig] = field(default_factory=list)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


@dataclass
class MixtureReport:
    """What :func:`build_mixture` wrote: per-task sizes, factors and realised shares."""

    name: str
    output: str
    natural: dict[str, int]
    target_share: dict[str, float]
    factor: dict[str, float]
    count: dict[str, int]
    realised_share: dict[str, float]
    reader_stats: dict[str, dict[str, int]]
    written: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------- balancing
def balance_counts(natural: Mapping[str, int], weights: Mapping[str, float], *, max_upsample: float = 3.0,
                   min_downsample: float = 0.3, total: int | None = None) -> tuple[dict[str, float], dict[str, int]]:
    """Sampling factors ``r_i`` and counts ``c_i`` of the 3/0.3 rule (module docstring).

    Raises:
        ValueError: negative sizes or weights, no positive weight, or bad thresholds.
    """
    if not 0 < min_downsample <= 1 <= max_upsample:
        raise ValueError(f"need 0 < min_downsample <= 1 <= max_upsample, got {min_downsample}, {max_upsample}")
    if set(natural) != set(weights):
        raise ValueError(f"sizes and weights name different tasks: {sorted(natural)} vs {sorted(weights)}")
    if any(n < 0 for n in natural.values()) or any(w < 0 or not math.isfinite(w) for w in weights.values()):
        raise ValueError(f"sizes and weights must be >= 0: {dict(natural)}, {dict(weights)}")
    active = {k for k in natural if natural[k] > 0 and weights[k] > 0}
    weight_sum = sum(weights[k] for k in active)
    if not active:
        raise ValueError("no task has both documents and a positive weight")
    target_total = float(total if total is not None else sum(natural[k] for k in active))
    factors, counts = {}, {}
    for k in natural:
        if k not in active:
            factors[k], counts[k] = 0.0, 0
            continue
        rho = weights[k] / weight_sum * target_total / natural[k]
        factors[k] = min(max_upsample, max(min_downsample, rho))
        counts[k] = max(1, round(factors[k] * natural[k]))
    return factors, counts


def sample_plan(natural: Sequence[int], counts: Sequence[int], seed: int) -> np.ndarray:
    """The shuffled mixture as ``(M, 2)`` rows of ``(task index, document index)``.

    Task ``i`` contributes every document ``counts[i] // natural[i]`` times plus
    ``counts[i] % natural[i]`` distinct documents drawn without replacement.
    """
    rng = np.random.default_rng([seed, 0x5F7])
    parts = []
    for i, (n, c) in enumerate(zip(natural, counts, strict=True)):
        if c == 0:
            continue
        reps, extra = divmod(int(c), int(n))
        docs = np.concatenate([np.tile(np.arange(n), reps), np.sort(rng.choice(n, extra, replace=False))])
        parts.append(np.stack([np.full(docs.size, i), docs], axis=1))
    plan = np.concatenate(parts).astype(np.int64)  # (M, 2)
    return plan[rng.permutation(len(plan))]


# ----------------------------------------------------------------- staging
def _fingerprint(entry: MixtureTaskConfig, seed: int, skip_bad: bool) -> str:
    payload = {"task": entry.task, "options": entry.options, "seed": seed, "skip_bad": skip_bad,
               "sources": [asdict(s) for s in entry.sources]}  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _render_task(index: int, entry: MixtureTaskConfig, seed: int, skip_bad: bool, registries: Any,
                 stats: Counter) -> Iterator[Any]:  # fmt: skip
    """Documents of one task, rendered with ``rng = default_rng([seed, task, source, record])``.

    Rendering is core's :func:`~cm3leon.core.task_render.render_task_records`, the path
    ``cm3leon data prepare --task`` takes too (as this mixture's task 0, source 0).
    """
    from cm3leon.core.task_render import render_task_records

    spec = registries.tasks.get(entry.task, where=f"tasks[{index}].task")
    if spec.reader is None:
        raise ValueError(f"tasks[{index}]: task {entry.task!r} has no reader; give it one or prepare docs")
    try:
        task = spec.build(**entry.options)
    except TypeError as err:
        raise ValueError(f"tasks[{index}] ({entry.task}): bad options {dict(entry.options)}: {err}") from None
    read = spec.resolve("reader")
    if not entry.sources:
        raise ValueError(f"tasks[{index}] ({entry.task}): needs at least one source")
    for s, source in enumerate(entry.sources):
        records = read(source.path, split=source.split, skip_bad=skip_bad, stats=stats, **source.options)
        prefix = f"{s}:" if len(entry.sources) > 1 else ""
        for doc in render_task_records(task, records, name=entry.task, seed=seed, where=str(source.path),
                                       stream=(index, s), limit=source.limit, skip_bad=skip_bad, stats=stats):
            yield doc.replace(id=f"{prefix}{doc.id}")


def _stage(cfg: MixtureConfig, staging: Path, registries: Any,
           progress: bool) -> tuple[list[Path], dict[str, dict[str, int]]]:  # fmt: skip
    from tqdm.auto import tqdm

    from cm3leon.core.shards import DocumentShardWriter, verify_dataset

    paths, all_stats = [], {}
    for i, entry in enumerate(cfg.tasks):
        out = staging / f"{i:02d}_{entry.task}"
        fingerprint = _fingerprint(entry, cfg.seed, cfg.skip_bad)
        try:
            info = verify_dataset(out, check_hashes=False)
            if info.meta.get("fingerprint") == fingerprint:
                log.info("reusing staged %s (%d documents)", out, info.num_samples)
                paths.append(out)
                all_stats[entry.task] = dict(info.meta.get("reader_stats") or {})
                continue
        except (ValueError, FileNotFoundError):
            pass
        stats: Counter = Counter()
        writer = DocumentShardWriter(out, overwrite=True, meta={"task": entry.task, "fingerprint": fingerprint})
        with writer, tqdm(desc=f"render {entry.task}", unit="doc", disable=not progress) as bar:
            for doc in _render_task(i, entry, cfg.seed, cfg.skip_bad, registries, stats):
                writer.write(doc)
                bar.update(1)
            if writer.num_samples == 0:
                raise ValueError(f"tasks[{i}] ({entry.task}): its sources gave no documents ({dict(stats)})")
            writer.meta["reader_stats"] = dict(stats)  # the manifest is written on exit
        paths.append(out)
        all_stats[entry.task] = dict(stats)
    return paths, all_stats


class _StagedDocuments:
    """Random access to the documents of staged datasets (MDS readers per shard)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        from streaming.base.format import reader_from_json

        from cm3leon.core.shards import verify_dataset

        self.tables = []
        for path in paths:
            info = verify_dataset(path, check_hashes=True)
            shards = []
            for entry in info.shards:
                reader = reader_from_json(str(info.path), None, entry)
                reader.validate(allow_unsafe_types=False)
                shards.append((int(entry["samples"]), reader))
            self.tables.append((path, info.num_samples, shards))

    def sizes(self) -> list[int]:
        return [n for _, n, _ in self.tables]

    def get(self, task: int, index: int) -> Any:
        from cm3leon.core.documents import Document

        path, _, shards = self.tables[task]
        local = index
        for count, reader in shards:
            if local < count:
                sample = reader.get_item(local)
                return Document.from_json(sample["document"], source=f"{path}: sample {index}")
            local -= count
        raise IndexError(f"{path}: no document {index}")


# ------------------------------------------------------------------- build
def build_mixture(cfg: MixtureConfig, *, registries: Any = None, progress: bool = True) -> MixtureReport:
    """Render, balance, shuffle and write the mixture described by ``cfg``.

    Raises:
        ValueError: unknown task, task without reader or sources, a bad record (unless
            ``cfg.skip_bad``), duplicate task entries, or bad balance settings.
    """
    from cm3leon.core.data_cli import prepare_dataset

    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    names = [t.task for t in cfg.tasks]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"mixture {cfg.name!r}: needs one entry per task, got {names}")
    doc_tokenizer = _doc_tokenizer(cfg.output, registries) if cfg.output.format == "tokens" else None
    if cfg.output.format not in ("documents", "tokens"):
        raise ValueError(f"output.format must be 'documents' or 'tokens', got {cfg.output.format!r}")
    staging = Path(f"{str(cfg.output.path).rstrip('/')}.staging")
    paths, reader_stats = _stage(cfg, staging, registries, progress)
    staged = _StagedDocuments(paths)
    natural = dict(zip(names, staged.sizes(), strict=True))
    weights = {t.task: float(t.weight) for t in cfg.tasks}
    b = cfg.balance
    factors, counts = balance_counts(natural, weights, max_upsample=b.max_upsample,
                                     min_downsample=b.min_downsample, total=b.total)  # fmt: skip
    plan = sample_plan([natural[n] for n in names], [counts[n] for n in names], cfg.seed)
    total = int(sum(counts.values()))
    weight_sum = sum(w for n, w in weights.items() if natural[n] > 0)
    report = MixtureReport(
        name=cfg.name, output=str(cfg.output.path), natural=natural,
        target_share={n: (weights[n] / weight_sum if natural[n] else 0.0) for n in names},
        factor=factors, count=counts, realised_share={n: counts[n] / total for n in names},
        reader_stats=reader_stats, written=total,
    )  # fmt: skip

    def documents() -> Iterator[Any]:
        copies: Counter = Counter()
        for task_index, doc_index in plan.tolist():
            doc = staged.get(task_index, doc_index)
            copies[(task_index, doc_index)] += 1
            yield doc.replace(id=f"{names[task_index]}#{doc.id}#{copies[(task_index, doc_index)] - 1}")

    # The manifest's meta is fixed before the first document is written, so it records the
    # planned count: every planned document is written (no skipping, no max_samples) or the
    # build fails.  The check below keeps that true; the log line comes after the write.
    result = prepare_dataset(documents(), cfg.output.path, kind=cfg.output.format, doc_tokenizer=doc_tokenizer,
                             overwrite=cfg.output.overwrite, meta={"mixture": report.as_dict()},
                             progress=progress, total=total, with_targets=True)  # fmt: skip
    if result.written != total:
        raise RuntimeError(f"mixture {cfg.name!r}: wrote {result.written} documents, planned {total}")
    log.info("mixture %s: %s", cfg.name, json.dumps(report.as_dict()))
    return report


def _doc_tokenizer(output: OutputConfig, registries: Any) -> Any:
    from cm3leon.core.tokenization import build_document_tokenizer

    if not output.text_tokenizer or not output.image_tokenizer:
        raise ValueError("output.format 'tokens' needs output.text_tokenizer and output.image_tokenizer")
    return build_document_tokenizer(output.text_tokenizer, output.image_tokenizer,
                                    num_sentinels=output.num_sentinels, registries=registries)  # fmt: skip
