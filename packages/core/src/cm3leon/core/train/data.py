"""Dataloaders of the trainer: token-shard streams -> CM3 transform -> packed rows.

Every kind of training data is a token-shard dataset read the same way:

* plain pretraining data from ``cm3leon data prepare``;
* retrieval-augmented pretraining data from ``cm3leon retrieval augment`` (Figure 9
  examples: retrieved documents, then the query);
* SFT task mixtures from the tasks package (instruction + output examples).

Each configured stream is a ``streaming.Stream`` (``remote`` object store or directory,
``local`` cache, ``proportion``/``repeat``/``choose``); the streams are mixed by one
:class:`cm3leon.core.shard_datasets.CM3StreamingDataset`, which verifies every dataset
before reading (COMPLETE marker, manifest, index, shard hashes), applies the CM3
transform per sample (deterministic in seed, epoch and sample index) and is packed per
step by :func:`cm3leon.core.shard_datasets.build_packed_dataloader`.  The step consumes
exactly ``global_batch_size / world_size`` examples per rank, so Composer's
``sample_in_epoch`` is the offset ``StreamingDataset`` resumes from, mid-epoch, exactly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from composer.core import DataSpec
from composer.utils import dist
from streaming import StreamingDataset

from cm3leon.core.config import ConfigError
from cm3leon.core.objective import CM3Config, SpanCount, SpanLength
from cm3leon.core.packing import IGNORE_INDEX, raw_samples_in_batch
from cm3leon.core.shard_datasets import CM3StreamingDataset
from cm3leon.core.train.config import CM3Section, DataSection, StreamSection
from cm3leon.core.train.stream_memory import (
    explain_conflict,
    record_owner,
    release_stale_shared_memory,
)
from cm3leon.core.vocab import Vocabulary

__all__ = [
    "StaleDataloaderStateError",
    "TrainDataset",
    "build_cm3_config",
    "build_dataspec",
    "build_streams",
    "load_dataloader_state",
    "per_rank_batch_size",
    "rows_per_rank",
    "tokens_in_batch",
]


class StaleDataloaderStateError(RuntimeError):
    """A dataloader resume state that ``StreamingDataset`` would silently ignore."""


_STATE_KEYS = ("epoch", "sample_in_epoch", "num_canonical_nodes", "shuffle_seed")


def load_dataloader_state(dataset: StreamingDataset, state: Mapping[str, Any]) -> None:
    """``dataset.load_state_dict(state)``, refusing a state that would be silently ignored.

    Upstream ``StreamingDataset._resume`` (mosaicml-streaming 0.13, ``base/dataset.py``, "Check if
    the resume state is stale") drops a state whose ``epoch`` is below the epoch the dataset
    is about to start (``next_epoch``) and begins that epoch at sample 0 -- a resume that
    quietly replays or skips data.  That happens when the state is loaded into a dataset
    that has already iterated, or the state is older than the run's position.

    Raises:
        StaleDataloaderStateError: ``state`` lacks a key, or its epoch is older than the
            dataset's next epoch (both named).
    """
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise StaleDataloaderStateError(f"dataloader state {dict(state)!r} lacks {missing}")
    epoch, next_epoch = int(state["epoch"]), int(dataset.next_epoch)
    if epoch < next_epoch:
        raise StaleDataloaderStateError(
            f"dataloader state of epoch {epoch} (sample {state['sample_in_epoch']}) is older than "
            f"this dataset's next epoch {next_epoch}: StreamingDataset would ignore it and start "
            f"epoch {next_epoch} at sample 0.  Load a resume state only into a fresh dataset, "
            "before iterating it, and only a state of the run being resumed."
        )
    StreamingDataset.load_state_dict(dataset, dict(state))


class TrainDataset(CM3StreamingDataset):
    """The trainer's dataset: :class:`CM3StreamingDataset` whose ``load_state_dict`` (what
    Composer calls on resume) is :func:`load_dataloader_state`."""

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        load_dataloader_state(self, obj)


def per_rank_batch_size(global_batch_size: int, *, where: str = "data.global_batch_size") -> int:
    """Per-rank share of a per-step count summed over all ranks (examples, rows).

    Raises:
        ConfigError: the count does not split evenly over the ranks (names ``where``).
    """
    world = dist.get_world_size()
    if global_batch_size % world:
        raise ConfigError(f"{where}={global_batch_size} is not divisible by the world size {world}")
    return global_batch_size // world


def rows_per_rank(num_rows: int | None, *, static_rows: bool, batch_size: int, where: str) -> int | None:
    """Packed rows each rank yields per step; ``None``: as many as the packing needs.

    ``num_rows`` counts rows per optimizer step over all ranks, as ``global_batch_size``
    counts examples, so a config keeps its tokens per step and its examples per row on any
    world size.  ``static_rows`` (with ``num_rows`` unset) gives each of the rank's
    ``batch_size`` examples a row of its own.

    Raises:
        ConfigError: ``num_rows`` does not split evenly over the ranks.
    """
    if num_rows is not None:
        return per_rank_batch_size(num_rows, where=f"{where}.num_rows")
    return batch_size if static_rows else None  # static: nothing is ever dropped


def build_streams(streams: Mapping[str, StreamSection], cache_root: Path, *, section: str) -> list[Any]:
    """``streaming.Stream`` objects for the configured streams (default caches under ``cache_root``)."""
    from streaming import Stream

    out = []
    for name, s in streams.items():
        local = s.local if s.local is not None else str(cache_root / name)
        if s.remote is not None and "://" not in s.remote and Path(s.remote).resolve() == Path(local).resolve():
            raise ConfigError(f"{section}.streams.{name}: remote and local are the same directory")
        out.append(Stream(remote=s.remote, local=local, proportion=s.proportion, repeat=s.repeat, choose=s.choose))
    return out


def build_cm3_config(cm3: CM3Section) -> CM3Config | None:
    """The CM3 transform settings, or ``None`` when the objective is disabled."""
    if not cm3.enabled:
        return None
    options = dict(cm3.options)
    try:
        for key, cls in (("num_spans", SpanCount), ("span_length", SpanLength)):
            if isinstance(options.get(key), Mapping):
                options[key] = cls(**options[key])
        return CM3Config(**options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data.cm3.options: {err}") from None


def tokens_in_batch(batch: Mapping[str, torch.Tensor], *, use_loss_weights: bool) -> dict[str, Any]:
    """Composer token counts of a packed batch.

    ``total``: real (non-pad) input tokens, the unit of ``max_duration: ...tok`` and of
    tokens/s.  ``loss_generating``: what gradient accumulation normalises by -- the number
    of targets, or their summed weight when the loss is weighted -- so the accumulated
    gradient is the exact token mean over all microbatches and ranks.
    """
    labels = batch["labels"]
    valid = labels != IGNORE_INDEX
    if "num_pad_tokens" in batch:
        total = int(labels.numel() - batch["num_pad_tokens"].sum())
    else:
        total = int((batch["input_ids"] != Vocabulary.pad_id).sum())
    if use_loss_weights and "loss_weights" in batch:
        generating: float | int = float((batch["loss_weights"] * valid).sum())
    else:
        generating = int(valid.sum())
    return {"total": total, "loss_generating": generating}


def _train_dataset(data: DataSection, streams: list[Any], seed: int, batch_size: int,
                   shuffle: bool) -> TrainDataset:
    """The dataset; retried when another process took the same shared-memory prefix first.

    Streaming picks the first free prefix and then creates ``{prefix}_locals``; a process
    starting at the same instant can create it in between (``FileExistsError:
    '/000078_locals'``).  Walking again finds that registration and takes the next prefix.
    """
    for attempt in range(4):
        try:
            return _new_train_dataset(data, streams, seed, batch_size, shuffle)
        except FileExistsError as err:
            if not str(err.filename or "").endswith("_locals"):
                raise
            time.sleep(0.05 * (attempt + 1))
    return _new_train_dataset(data, streams, seed, batch_size, shuffle)


def _new_train_dataset(data: DataSection, streams: list[Any], seed: int, batch_size: int,
                       shuffle: bool) -> TrainDataset:
    return TrainDataset(
        streams=streams,
        cm3=build_cm3_config(data.cm3),
        cm3_seed=data.cm3.seed if data.cm3.seed is not None else seed,
        max_tokens=data.seq_len,  # augmented examples drop retrieved documents, never the query's infill
        check_hashes=data.check_hashes,
        verify_remote=data.verify_remote,
        batch_size=batch_size,
        shuffle=shuffle,
        shuffle_seed=data.shuffle_seed,
        shuffle_algo=data.shuffle_algo,
        num_canonical_nodes=data.num_canonical_nodes,
        predownload=data.predownload,
        cache_limit=data.cache_limit,
        download_timeout=data.download_timeout,
    )


def build_dataspec(
    data: DataSection,
    *,
    streams: Mapping[str, StreamSection],
    global_batch_size: int,
    num_rows: int | None,
    cache_root: Path,
    seed: int,
    shuffle: bool,
    where: str,
) -> tuple[DataSpec, Vocabulary]:
    """A Composer ``DataSpec`` over packed CM3 batches, and the data's vocabulary.

    ``global_batch_size`` examples and ``num_rows`` rows per step are summed over all ranks
    (:func:`rows_per_rank`).

    Raises:
        ConfigError: a batch size or row count that does not split over the ranks, bad CM3 options, a
            local cache registered in shared memory by another live (or unrecorded)
            StreamingDataset (:func:`cm3leon.core.train.stream_memory.explain_conflict`).
        cm3leon.core.shards.ShardIntegrityError: a dataset fails verification (names the file).
    """
    from cm3leon.core.shard_datasets import build_packed_dataloader

    batch_size = per_rank_batch_size(global_batch_size, where=f"{where}.global_batch_size")
    num_rows = rows_per_rank(num_rows, static_rows=data.static_rows, batch_size=batch_size, where=where)
    stream_objs = build_streams(streams, cache_root, section=where)
    cached = [s.local for s in stream_objs if s.remote is not None]  # what streaming checks for reuse
    release_stale_shared_memory(cached)
    try:
        dataset = _train_dataset(data, stream_objs, seed, batch_size, shuffle)
    except ValueError as err:
        if "Reused local directory" not in str(err):
            raise
        raise ConfigError(explain_conflict(cached, where)) from None
    if getattr(dataset, "_shm_prefix_int", None) is not None:
        record_owner(dataset._shm_prefix_int, cached)  # lets a restart after a SIGKILL clean up
    loader = build_packed_dataloader(
        dataset, seq_len=data.seq_len, batch_size=batch_size, overflow=data.overflow,
        strategy=data.pack_strategy, num_rows=num_rows, num_workers=data.num_workers,
        persistent_workers=data.persistent_workers, drop_last=True,
        **({"prefetch_factor": data.prefetch_factor} if data.prefetch_factor is not None else {}),
    )
    use_weights = data.use_loss_weights

    def _tokens(batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        return tokens_in_batch(batch, use_loss_weights=use_weights)

    spec = DataSpec(loader, get_num_samples_in_batch=raw_samples_in_batch, get_num_tokens_in_batch=_tokens)
    return spec, dataset.vocab
