"""Composer callbacks of the CM3Leon trainer (selectable by name: ``cm3leon plugins list``).

The training loop is Composer's; everything CM3Leon-specific hooks into its events.  One
optimizer step, as event pseudo-code (Composer's ``Event`` order)::

    AFTER_DATALOADER                         DataCounters     truncated / dropped / shortened examples
    BATCH_START
    for microbatch in batch:                 # device_train_microbatch_size rows each
        forward -> logits (B, T, V)
        AFTER_LOSS          NonFiniteGuard   remember whether this loss is finite
        backward
    AFTER_TRAIN_BATCH       GradientClipping clip the global norm (algorithm, runs first)
                            NonFiniteGuard   all-reduce "bad" (MAX) -> every rank agrees;
                                             skip: drop all gradients; stop: raise
    optimizer.step()                         (no gradients -> no update)
    BATCH_END               SpeedMonitor     tokens/s, FLOPs/s, MFU
                            JSONLLogger      one line of metrics per batch (rank 0)
    BATCH_CHECKPOINT        AtomicCheckpointSaver
    FIT_END                 LossCurvePlot    metrics.jsonl -> loss_curve.png

Components a config selects by name (``callbacks:``, registered through
``cm3leon_register_callbacks``) join in: a ``composer.Algorithm`` is passed to
``Trainer(algorithms=)`` and, at each event, runs before every callback (as the built-in
clipping does); a ``Callback`` is passed to ``Trainer(callbacks=)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from composer.callbacks import SpeedMonitor
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from cm3leon.core.config import ConfigError

__all__ = [
    "DataCounters",
    "LossCurvePlot",
    "NonFiniteGuard",
    "NonFiniteLossError",
    "ResumeMismatchError",
    "RunInfo",
    "measure_cpu_peak_flops",
    "speed_monitor",
]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN/inf loss or gradient (raised on every rank at once)."""


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a (FSDP2-sharded) ``DTensor``; a plain tensor itself."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


class NonFiniteGuard(Callback):
    """NaN/inf policy, decided identically on every rank.

    Args:
        policy: ``"skip"`` drops the step's update (gradients set to ``None``, so AdamW
            changes neither weights nor moments), ``"stop"`` raises
            :class:`NonFiniteLossError`.
        max_consecutive_skips: with ``"skip"``, raise after this many bad steps in a row.
        check_gradients: also treat a non-finite gradient (of a finite loss) as bad.

    Each rank computes a 0/1 flag over all its microbatches; the flags are all-reduced
    with MAX before anyone acts, so one rank's NaN makes every rank skip (or stop) the
    same step and the replicas never diverge.
    """

    def __init__(
        self, policy: str = "skip", *, max_consecutive_skips: int = 20, check_gradients: bool = True
    ) -> None:
        if policy not in ("skip", "stop"):
            raise ValueError(f"NonFiniteGuard policy must be 'skip' or 'stop', got {policy!r}")
        if max_consecutive_skips < 1:
            raise ValueError(f"max_consecutive_skips must be >= 1, got {max_consecutive_skips}")
        self.policy = policy
        self.max_consecutive_skips = max_consecutive_skips
        self.check_gradients = check_gradients
        self.skipped = 0
        self.consecutive = 0
        self._bad: torch.Tensor | None = None

    def batch_start(self, state: State, logger: Logger) -> None:
        self._bad = None

    def after_loss(self, state: State, logger: Logger) -> None:
        losses = (
            state.loss.values()
            if isinstance(state.loss, dict)
            else (state.loss if isinstance(state.loss, (tuple, list)) else (state.loss,))
        )
        bad = torch.stack([~torch.isfinite(t.detach()).all() for t in losses]).any()
        self._bad = bad if self._bad is None else (self._bad | bad)

    def after_train_batch(self, state: State, logger: Logger) -> None:
        bad = self._bad if self._bad is not None else torch.tensor(False)
        if self.check_gradients:
            # FSDP2: gradients are sharded DTensors; each rank checks its own shard (the
            # flag is all-reduced below), a DTensor norm would need a collective per tensor.
            grads = [_local(p.grad) for p in state.model.parameters() if p.grad is not None]
            if grads:
                norms = torch._foreach_norm(grads)
                bad = bad | ~torch.isfinite(torch.stack(norms)).all()
        flag = state.device.tensor_to_device(bad.to(torch.int32).reshape(1))
        dist.all_reduce(flag, reduce_operation="MAX")
        self._bad = None
        step = int(state.timestamp.batch) + 1
        if not int(flag.item()):
            self.consecutive = 0
            return
        if self.policy == "stop":
            raise NonFiniteLossError(
                f"non-finite loss or gradient at step {step} (nonfinite.policy=stop)"
            )
        self.skipped += 1
        self.consecutive += 1
        for optimizer in state.optimizers:
            optimizer.zero_grad(set_to_none=True)
        log.warning(
            "step %d: non-finite loss or gradient; update skipped (%d so far)", step, self.skipped
        )
        logger.log_metrics({"nonfinite/skipped_steps": self.skipped})
        if self.consecutive >= self.max_consecutive_skips:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive non-finite steps (last: step {step}); "
                f"stopping (nonfinite.max_consecutive_skips={self.max_consecutive_skips})"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.consecutive = int(state.get("consecutive", 0))


class DataCounters(Callback):
    """Logs what packing did to each step's examples, summed over ranks, and running totals.

    ``data/examples`` (source examples consumed), ``data/examples_truncated`` (cut to
    ``seq_len``), ``data/examples_dropped`` (no room in fixed rows, or too long with
    ``overflow: drop``), ``data/examples_shortened`` (retrieval-augmented examples that lost
    retrieved documents to fit, :func:`cm3leon.core.serialize.fit_example`),
    ``data/documents_dropped`` and ``data/whole_text_masks`` / ``data/whole_image_masks``
    (CM3 spans that were a whole caption / image: the realised whole-segment rate is
    ``total_whole_text_masks / total_examples``); each also as
    ``data/total_...`` since the start of the run (kept in checkpoints).  The batch
    counters come from :class:`cm3leon.core.packing.PackingCollator`.
    """

    KEYS = (("num_source_samples", "examples"), ("num_truncated", "examples_truncated"),
            ("num_dropped", "examples_dropped"), ("num_shortened", "examples_shortened"),
            ("num_documents_dropped", "documents_dropped"), ("num_whole_text_masks", "whole_text_masks"),
            ("num_whole_image_masks", "whole_image_masks"))

    def __init__(self) -> None:
        self.totals = {name: 0 for _, name in self.KEYS}

    def after_dataloader(self, state: State, logger: Logger) -> None:
        batch = state.batch
        if not isinstance(batch, dict):
            return
        counts = torch.tensor([int(batch[k].sum()) if k in batch else 0 for k, _ in self.KEYS], dtype=torch.int64)
        dist.all_reduce(counts, reduce_operation="SUM")
        metrics = {}
        for (_, name), value in zip(self.KEYS, counts.tolist(), strict=True):
            self.totals[name] += int(value)
            metrics[f"data/{name}"] = int(value)
            metrics[f"data/total_{name}"] = self.totals[name]
        logger.log_metrics(metrics)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.totals)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals.update({k: int(v) for k, v in state.items() if k in self.totals})


class ResumeMismatchError(ConfigError):
    """The run's config, data or architecture differs from the checkpoint it resumes."""


def _describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
    return "".join(f"\n  {key}: {old!r} -> {new!r}" for key, old, new in changes)


def _nonempty(value: Any) -> Any:
    """``value`` without empty dicts/lists at any depth: a sharded checkpoint stores nothing
    for ``{}``/``[]``, so an empty ``options`` and an absent one are the same setting."""
    if isinstance(value, Mapping):
        pruned = {k: _nonempty(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if not (isinstance(v, (Mapping, list, tuple)) and not v)}
    if isinstance(value, (list, tuple)):
        return [_nonempty(v) for v in value]
    return value


class RunInfo(Callback):
    """Stores what a run is in every checkpoint, and refuses to resume a different run.

    ``state["callbacks"]["RunInfo"]`` of a checkpoint is ``{"transformer": {...},
    "vocab": {...}, "run_name": ..., "fingerprint": {dotted.key: value}}``:
    :func:`cm3leon.core.train.export.export_checkpoint` needs only the first two; the
    fingerprint is the resolved config (:func:`cm3leon.core.train.config.config_fingerprint`,
    without the keys that may change on resume) plus the data and tokenizer hashes
    (``assets.*``, :func:`cm3leon.core.train.builders.asset_fingerprint`).

    :meth:`check` runs before the Trainer is built (``build_trainer`` reads the checkpoint's
    RunInfo) and again when Composer loads the callback state (sharded checkpoints).  A
    differing architecture or vocabulary always fails (the weights cannot load); any other
    differing key fails unless a pattern of ``allow_changes`` matches it.

    Args:
        transformer / vocab / run_name: ``TransformerConfig.to_dict()``, ``Vocabulary.to_dict()``.
        fingerprint: flat dotted config + assets of this run.
        allow_changes: ``fnmatch`` patterns of fingerprint keys allowed to differ.
    """

    def __init__(self, transformer: dict[str, Any], vocab: dict[str, int], run_name: str,
                 fingerprint: dict[str, Any] | None = None, allow_changes: Sequence[str] = ()) -> None:
        self.info = {"transformer": dict(transformer), "vocab": dict(vocab), "run_name": run_name,
                     "fingerprint": dict(fingerprint or {})}
        self.allow_changes = tuple(allow_changes)
        self._load_template: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # A sharded load fills the template Composer builds from state_dict(), and
        # torch.distributed.checkpoint fails on any key the checkpoint lacks: until the
        # checkpoint is loaded, give it the checkpoint's own keys (see expect_sharded).
        return dict(self._load_template if self._load_template is not None else self.info)

    def expect_sharded(self, saved: dict[str, Any]) -> None:
        """Before a sharded resume (``saved``: its RunInfo, already :meth:`check` ed): load
        into the checkpoint's keys, so an allowed change of the config's key set (a new
        config field, an allowed new option) resumes instead of failing in DCP."""
        self._load_template = saved

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_template = None
        self.check(state)

    def fit_start(self, state: State, logger: Logger) -> None:
        self._load_template = None  # saves always write this run's RunInfo

    def check(self, saved: dict[str, Any], *, source: str = "the checkpoint", weights_only: bool = False) -> None:
        """Raise :class:`ResumeMismatchError` listing every differing key (old -> new).

        ``weights_only``: only the weights are taken (``checkpoint.load_weights_only``):
        compare architecture and vocabulary only.
        """
        from cm3leon.core.train.config import config_changes

        fixed = [(f"{key}.{k}", old, new) for key in ("transformer", "vocab")
                 for k, old, new in config_changes(saved.get(key) or {}, self.info[key])]
        if fixed:
            raise ResumeMismatchError(
                f"cannot resume from {source}: the model architecture or vocabulary differs "
                f"(checkpoint -> this run):{_describe_changes(fixed)}\nThe weights cannot be loaded "
                "into this model; use the checkpoint's model and data, or start a new run."
            )
        if weights_only:
            return
        if not saved.get("fingerprint"):
            log.warning("%s predates config fingerprints: only the architecture and vocabulary were checked", source)
            return
        changes = config_changes(_nonempty(saved["fingerprint"]), _nonempty(self.info["fingerprint"]),
                                 self.allow_changes)
        if changes:
            keys = ", ".join(k for k, _, _ in changes)
            raise ResumeMismatchError(
                f"cannot resume from {source}: this run's config or data differs from the "
                f"checkpoint's (checkpoint -> this run):{_describe_changes(changes)}\n"
                "Resume with the checkpoint's values, or allow the change explicitly: "
                f"checkpoint.allow_changes=[{keys}] (CLI: --allow-config-change KEY)."
            )


class LossCurvePlot(Callback):
    """At the end of training, plot the run's ``metrics.jsonl`` to a PNG (rank 0).

    Args:
        jsonl: the metrics file written by :class:`cm3leon.core.train.logs.JSONLLogger`.
        png: output image.
    """

    def __init__(self, jsonl: str | Path, png: str | Path) -> None:
        self.jsonl, self.png = Path(jsonl), Path(png)

    def fit_end(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() != 0 or not self.jsonl.is_file():
            return
        from cm3leon.core.train.logs import plot_metrics

        plot_metrics(self.jsonl, self.png, title=state.run_name)


def measure_cpu_peak_flops(size: int = 1024, repeats: int = 5) -> float:
    """Achievable fp32 FLOP/s of this CPU: the best of ``repeats`` square matmuls.

    The reference for a CPU "MFU": what ``torch.matmul`` reaches on this machine with
    the current thread count, measured in the same process as the run.
    """
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best


def speed_monitor(
    window_size: int = 10, peak_flops: float | None = None, measure_cpu_peak: bool = False
) -> SpeedMonitor:
    """Composer's ``SpeedMonitor`` (tokens/s, FLOP/s, MFU) with a CPU-capable peak.

    Args:
        window_size: batches averaged per reading.
        peak_flops: FLOP/s of one device; ``None``: Composer's GPU table (no MFU on CPU).
        measure_cpu_peak: on CPU, use :func:`measure_cpu_peak_flops` as the peak.
    """
    if peak_flops is None and measure_cpu_peak and not torch.cuda.is_available():
        peak_flops = measure_cpu_peak_flops()
    return SpeedMonitor(window_size=window_size, gpu_flops_available=peak_flops)
