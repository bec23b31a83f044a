"""Small builders, one per thing the Trainer needs; :func:`cm3leon.core.train.loop.train` lists them.

Each takes the relevant config section and returns a ready object, raising
:class:`cm3leon.core.config.ConfigError` (with the dotted key) on a bad value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from composer.core import Algorithm, Callback
from composer.loggers import LoggerDestination

from cm3leon.core.config import ConfigError, build_component, redact, save_config
from cm3leon.core.model import CM3LeonTransformer
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.precision import ResolvedPrecision, resolve_precision
from cm3leon.core.train.callbacks import DataCounters, LossCurvePlot, NonFiniteGuard, RunInfo
from cm3leon.core.train.composer_checkpoints import AtomicCheckpointSaver
from cm3leon.core.train.composer_model import CM3LeonComposerModel
from cm3leon.core.train.config import TrainConfig, config_fingerprint
from cm3leon.core.train.fsdp import builds_on_meta, composer_parallelism
from cm3leon.core.train.logs import JSONLLogger
from cm3leon.core.vocab import Vocabulary

__all__ = [
    "RunPaths",
    "asset_fingerprint",
    "build_algorithms",
    "build_callbacks",
    "build_composer_model",
    "build_configured_components",
    "build_loggers",
    "build_optimizer",
    "build_parallelism",
    "build_precision",
    "build_scheduler",
    "prepare_run",
    "split_components",
]

log = logging.getLogger(__name__)


class RunPaths:
    """Where a run's files go (all derived from the config)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.run_dir = Path(cfg.run_dir)
        folder = cfg.checkpoint.save_folder
        # An object-store save_folder (s3://...) is staged locally in <run_dir>/checkpoints.
        self.save_remote = folder if folder is not None and "://" in folder else None
        self.save_folder = Path(folder if folder and not self.save_remote else self.run_dir / "checkpoints")
        self.metrics = Path(cfg.logging.jsonl or self.run_dir / "metrics.jsonl")
        self.curve = self.run_dir / "loss_curve.png"
        self.cache = self.run_dir / "cache"
        self.config = self.run_dir / "config.yaml"


def _check_writable(directory: Path, key: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"{key}: {directory} is not writable ({err.strerror or err})") from None


def prepare_run(cfg: TrainConfig, *, rank: int) -> RunPaths:
    """Create the run directory and check the save folder is writable, before step 1.

    Rank 0 also writes the resolved config (``<run_dir>/config.yaml``, atomically).
    """
    paths = RunPaths(cfg)
    _check_writable(paths.run_dir, "run_dir")
    _check_writable(paths.save_folder, "checkpoint.save_folder")
    if rank == 0:
        save_config(cfg, paths.config)
    return paths


def build_precision(cfg: TrainConfig) -> ResolvedPrecision:
    """``cfg.precision`` resolved for the device this run uses (``auto`` -> fp32 or amp_bf16)."""
    device = cfg.device if cfg.device != "auto" else ("gpu" if torch.cuda.is_available() else "cpu")
    try:
        return resolve_precision(cfg.precision, device)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def build_composer_model(cfg: TrainConfig, vocab: Vocabulary,
                         precision: ResolvedPrecision | None = None) -> CM3LeonComposerModel:
    """The registered model builder (``model.name``), sized to ``vocab``, wrapped for Composer.

    ``precision`` (default: :func:`build_precision`) decides the CPU bf16 autocast.
    """
    options = dict(cfg.model.options)
    if "vocab_size" in options:
        raise ConfigError(
            "model.options.vocab_size: set by the data's vocabulary, do not configure it"
        )
    options["vocab_size"] = vocab.size
    if "max_seq_len" not in options:
        options.setdefault("max_seq_len", cfg.data.seq_len)
    # FSDP2 on > 1 rank: only rank 0 holds real weights; Composer broadcasts them into the shards.
    meta = builds_on_meta(cfg.fsdp)
    with torch.device("meta") if meta else contextlib.nullcontext():
        model = build_component(
            get_registries().models, {"name": cfg.model.name, "options": options}, where="model"
        )
    if not isinstance(model, CM3LeonTransformer):
        raise ConfigError(
            f"model.name: {cfg.model.name!r} built a {type(model).__name__}, not a CM3LeonTransformer"
        )
    if model.config.max_seq_len < cfg.data.seq_len:
        raise ConfigError(
            f"data.seq_len={cfg.data.seq_len} exceeds the model's max_seq_len={model.config.max_seq_len}"
        )
    if cfg.model.init_from and not meta:
        _init_from_export(model, cfg.model.init_from, vocab)
    return CM3LeonComposerModel(
        model,
        vocab,
        use_loss_weights=cfg.data.use_loss_weights,
        fsdp_wrap_blocks=cfg.fsdp.enabled,
        activation_checkpointing=cfg.model.activation_checkpointing,
        cpu_autocast=(precision or build_precision(cfg)).cpu_autocast,
    )


def _init_from_export(model: CM3LeonTransformer, path: str, vocab: Vocabulary) -> None:
    from cm3leon.core.exported import load_exported

    if not Path(path).exists():
        raise ConfigError(
            f"model.init_from: {path} does not exist (export a checkpoint with `cm3leon train export`)"
        )
    exported = load_exported(path)
    if exported.vocab != vocab:
        raise ConfigError(
            f"model.init_from: {path} was trained with vocabulary {exported.vocab}, the data uses {vocab}"
        )
    theirs, ours = exported.model.config.to_dict(), model.config.to_dict()
    diff = {k: f"export {theirs[k]!r} vs config {ours[k]!r}" for k in ours if theirs[k] != ours[k]}
    if diff:
        raise ConfigError(f"model.init_from: {path} has a different architecture: {diff}")
    model.load_state_dict(exported.model.state_dict(), strict=True)
    log.info("initialised %s from %s", type(model).__name__, path)


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW over every parameter (metaseq/OPT apply weight decay to all of them)."""
    o = cfg.optim
    return torch.optim.AdamW(
        model.parameters(),
        lr=o.lr,
        betas=(o.betas[0], o.betas[1]),
        eps=o.eps,
        weight_decay=o.weight_decay,
    )


def build_scheduler(cfg: TrainConfig) -> Any:
    """Linear warm-up (Table 3: 1500 steps; Table 4: 150), then linear/cosine decay or constant."""
    from composer.optim import (
        ConstantWithWarmupScheduler,
        CosineAnnealingWithWarmupScheduler,
        LinearWithWarmupScheduler,
    )

    s = cfg.scheduler
    if s.name == "linear":
        return LinearWithWarmupScheduler(t_warmup=s.warmup, alpha_f=s.alpha_f)
    if s.name == "cosine":
        return CosineAnnealingWithWarmupScheduler(t_warmup=s.warmup, alpha_f=s.alpha_f)
    return ConstantWithWarmupScheduler(t_warmup=s.warmup)


def build_algorithms(cfg: TrainConfig) -> list[Algorithm]:
    """Gradient clipping by global norm (Composer algorithm, FSDP-aware)."""
    from composer.algorithms import GradientClipping

    if cfg.optim.grad_clip_norm is None:
        return []
    return [GradientClipping(clipping_type="norm", clipping_threshold=cfg.optim.grad_clip_norm)]


def asset_fingerprint(streams: Sequence[str], dataset: Any) -> dict[str, Any]:
    """Content identity of the training data and its tokenizers, as ``assets.*`` keys.

    Per stream (in ``data.streams`` order, as ``dataset.infos``): the SHA-256 of its
    ``manifest.json`` (read from the ``COMPLETE`` marker; the manifest lists the SHA-256 of
    every shard and ``index.json``, and the vocabulary and tokenizer settings the shards
    were prepared with, so it changes with any of them) and, when the manifest records
    them, the text and image tokenizers.  Cheap: two small JSON files per stream.
    """
    from cm3leon.core.io import COMPLETE_MARKER, sha256_file
    from cm3leon.core.shards import MANIFEST_FILE

    out: dict[str, Any] = {}
    for name, info in zip(streams, getattr(dataset, "infos", ()), strict=False):
        directory = Path(info.path)
        try:
            digest = json.loads((directory / COMPLETE_MARKER).read_text()).get("manifest_sha256")
        except (OSError, ValueError, AttributeError):
            digest = None
        out[f"assets.streams.{name}.manifest_sha256"] = digest or sha256_file(directory / MANIFEST_FILE)
        for key in ("text_tokenizer", "image_tokenizer"):
            if (info.meta or {}).get(key) is not None:
                out[f"assets.streams.{name}.{key}"] = redact(json.dumps(info.meta[key], sort_keys=True, default=str))
    return out


def build_callbacks(
    cfg: TrainConfig, paths: RunPaths, model: CM3LeonComposerModel, vocab: Vocabulary,
    assets: Mapping[str, Any] | None = None,
) -> list[Callback]:
    """The checkpoint saver, the NaN guard, run info, data counters and the curve plot.

    ``assets``: :func:`asset_fingerprint` of the training data, stored with the config
    fingerprint in :class:`RunInfo`.

    The components configured by name (``cfg.callbacks``) come from
    :func:`build_configured_components`.
    """
    fingerprint = {**config_fingerprint(cfg), **dict(assets or {})}
    callbacks: list[Callback] = [
        RunInfo(model.config.to_dict(), vocab.to_dict(), redact(cfg.run_name), fingerprint,
                allow_changes=cfg.checkpoint.allow_changes),
        NonFiniteGuard(
            cfg.nonfinite.policy,
            max_consecutive_skips=cfg.nonfinite.max_consecutive_skips,
            check_gradients=cfg.nonfinite.check_gradients,
        ),
        DataCounters(),
        AtomicCheckpointSaver(
            paths.save_folder,
            remote=paths.save_remote,
            pull=cfg.checkpoint.autoresume,
            save_interval=cfg.checkpoint.save_interval,
            num_checkpoints_to_keep=cfg.checkpoint.num_to_keep,
            overwrite=cfg.checkpoint.overwrite,
        ),
    ]
    if cfg.logging.plot:
        callbacks.append(LossCurvePlot(paths.metrics, paths.curve))
    return callbacks


def _route(obj: Any, callbacks: list[Callback], algorithms: list[Algorithm]) -> bool:
    """Append ``obj`` to the list Composer expects it in; ``False`` if it is neither kind.

    Composer calls ``run_event`` on every entry of ``Trainer(callbacks=)`` and
    ``match``/``apply`` on every entry of ``Trainer(algorithms=)``: an Algorithm among the
    callbacks fails at the first event (it has no ``run_event``).
    """
    if isinstance(obj, Callback):
        callbacks.append(obj)
    elif isinstance(obj, Algorithm):
        algorithms.append(obj)
    else:
        return False
    return True


def split_components(
    components: Sequence[Any],
    *,
    where: str = "components",
) -> tuple[list[Callback], list[Algorithm]]:
    """Sort Composer objects into ``(callbacks, algorithms)``, keeping their order.

    Raises:
        TypeError: an object that is neither a Composer Callback nor an Algorithm
            (named as ``where[i]``).
    """
    callbacks: list[Callback] = []
    algorithms: list[Algorithm] = []
    for i, obj in enumerate(components):
        if not _route(obj, callbacks, algorithms):
            raise TypeError(
                f"{where}[{i}]: {type(obj).__name__} is not a Composer Callback or Algorithm"
            )
    return callbacks, algorithms


def build_configured_components(cfg: TrainConfig) -> tuple[list[Callback], list[Algorithm]]:
    """``cfg.callbacks`` built by registered name (``cm3leon_register_callbacks``), as
    ``(callbacks, algorithms)`` for ``Trainer(callbacks=)`` / ``Trainer(algorithms=)``.

    Raises:
        ConfigError: an unknown name, bad options, or a factory that built neither a
            Composer Callback nor an Algorithm (the dotted key is named).
    """
    registry = get_registries().callbacks
    callbacks: list[Callback] = []
    algorithms: list[Algorithm] = []
    for i, component in enumerate(cfg.callbacks):
        obj = build_component(registry, component, where=f"callbacks[{i}]")
        if not _route(obj, callbacks, algorithms):
            raise ConfigError(
                f"callbacks[{i}]: {component.name!r} built a {type(obj).__name__}, "
                "not a Composer Callback or Algorithm"
            )
    return callbacks, algorithms


def build_loggers(cfg: TrainConfig, paths: RunPaths) -> list[LoggerDestination]:
    """The JSONL metrics file and the configured experiment trackers (``logging.trackers``:
    TensorBoard, MLflow, W&B), plus Composer's console logger, configured on the Trainer.
    """
    from cm3leon.core.train.trackers import build_trackers

    trackers = build_trackers(cfg.logging.trackers, run_dir=paths.run_dir,
                              autoresume=cfg.checkpoint.autoresume)
    return [JSONLLogger(paths.metrics), *trackers]


def build_parallelism(cfg: TrainConfig) -> dict[str, Any] | None:
    """Composer 0.32 ``parallelism_config`` (``{"fsdp": ...}``) or ``None`` for DDP / single:
    FSDP2 (``fsdp.version: 2``) or FSDP1, see :mod:`cm3leon.core.train.fsdp`."""
    return composer_parallelism(cfg.fsdp, activation_checkpointing=cfg.model.activation_checkpointing)
