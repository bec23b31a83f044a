"""``train(cfg)``: the CM3Leon training run as a list of builder calls around Composer's Trainer.

Works unchanged from one CPU process to many GPU nodes: ``composer -n N -m
cm3leon.core.train CONFIG`` sets the ``torch.distributed`` environment, Composer
initialises the process group (gloo on CPU, NCCL on GPU), wraps the model in DDP or
FSDP (``fsdp.enabled``), and ``StreamingDataset`` splits the sample space over ranks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from composer import Trainer
from composer.core import Algorithm, Callback, Evaluator
from composer.utils import dist, reproducibility

from cm3leon.core.config import redact
from cm3leon.core.locks import DirectoryLock
from cm3leon.core.train.builders import (
    RunPaths,
    asset_fingerprint,
    build_algorithms,
    build_callbacks,
    build_composer_model,
    build_configured_components,
    build_loggers,
    build_optimizer,
    build_parallelism,
    build_precision,
    build_scheduler,
    prepare_run,
    split_components,
)
from cm3leon.core.train.callbacks import RunInfo
from cm3leon.core.train.composer_checkpoints import (
    LATEST_FILENAME,
    PARTIAL_PREFIX,
    check_resume_checkpoint,
    install_checkpoint_guard,
    read_run_info,
    recover_save_folder,
)
from cm3leon.core.train.config import TrainConfig, validate_train_config
from cm3leon.core.train.data import build_dataspec
from cm3leon.core.train.logs import read_metrics, series
from cm3leon.core.vocab import Vocabulary

__all__ = ["TrainResult", "build_trainer", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    latest_checkpoint: Path | None
    metrics: Path
    batches: int
    last_loss: float | None


def _device(cfg: TrainConfig) -> str:
    if cfg.device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if cfg.device == "gpu" and not torch.cuda.is_available():
        from cm3leon.core.config import ConfigError

        raise ConfigError("device: 'gpu' requested but CUDA is not available")
    return cfg.device


_LOG_FORMAT = "%(asctime)s [pid %(process)d] %(levelname)s %(name)s: %(message)s"


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=logging.WARNING, format=_LOG_FORMAT)
    for name in ("cm3leon", "composer"):
        logging.getLogger(name).setLevel(level.upper())


def _log_to_file(paths: RunPaths) -> None:
    """Also write the ``cm3leon`` / ``composer`` log records to ``<run_dir>/logs/rank{r}.log``."""
    path = paths.run_dir / "logs" / f"rank{dist.get_global_rank()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in ("cm3leon", "composer"):
        logger = logging.getLogger(name)
        if not any(
            getattr(h, "baseFilename", None) == str(path.resolve()) for h in logger.handlers
        ):
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter(_LOG_FORMAT))
            logger.addHandler(handler)


def _close_file_logs(paths: RunPaths) -> None:
    logs = str((paths.run_dir / "logs").resolve())
    for name in ("cm3leon", "composer"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if str(getattr(handler, "baseFilename", "")).startswith(logs):
                logger.removeHandler(handler)
                handler.close()


def _eval_data(cfg: TrainConfig, paths: RunPaths) -> Evaluator | None:
    if cfg.eval is None:
        return None
    spec, _ = build_dataspec(
        cfg.data,
        streams=cfg.eval.streams,
        global_batch_size=cfg.eval.global_batch_size,
        num_rows=cfg.eval.num_rows,
        cache_root=paths.cache / "eval",
        seed=cfg.seed,
        shuffle=False,
        where="eval",
    )
    return Evaluator(
        label="eval",
        dataloader=spec,
        metric_names=[
            "loss_all",
            "loss_text",
            "loss_image",
            "perplexity_all",
            "perplexity_text",
            "perplexity_image",
        ],
        subset_num_batches=cfg.eval.subset_num_batches,
    )


def _check_resumable(
    cfg: TrainConfig, resume: Path, callbacks: Sequence[Callback], load_path: str | None
) -> None:
    """Compare the checkpoint's RunInfo with this run's before the Trainer loads anything.

    Composer loads the model weights first, so a different ``d_model`` would otherwise
    end in a raw ``load_state_dict`` size-mismatch traceback.

    Raises:
        cm3leon.core.train.callbacks.ResumeMismatchError: the differing dotted keys, old -> new.
    """
    saved = read_run_info(resume)
    if saved is None:
        return  # written without RunInfo
    info = next(c for c in callbacks if isinstance(c, RunInfo))
    explicit = Path(load_path).resolve() if load_path else None
    weights_only = cfg.checkpoint.load_weights_only and resume == explicit
    info.check(saved, source=str(resume), weights_only=weights_only)
    if resume.is_dir() and not weights_only:
        info.expect_sharded(saved)  # DCP then loads RunInfo into the checkpoint's own keys


def _stage_remote_checkpoints(cfg: TrainConfig, paths: RunPaths) -> str | None:
    """Bring object-store checkpoints to local files before anything reads them.

    With an ``s3://`` ``save_folder`` (autoresume), local rank 0 downloads the newest
    committed remote checkpoint into the staging folder (``recover_save_folder`` then
    points ``latest`` at it); an ``s3://`` ``load_path`` is downloaded under
    ``<run_dir>/cache/load``.  Both are then checked and loaded like local files (the
    checkpoint guard, the RunInfo comparison).

    Returns:
        The ``load_path`` to give Composer (local), or ``None``.
    """
    from cm3leon.core.train.object_store import fetch_remote_file, is_remote, pull_newest_checkpoint

    load_path = cfg.checkpoint.load_path
    pull = paths.save_remote is not None and cfg.checkpoint.autoresume
    if not pull and not is_remote(load_path):
        return load_path  # nothing to stage: no collective before Composer initialises dist
    local_zero = dist.get_local_rank() == 0
    if pull and local_zero:
        pull_newest_checkpoint(paths.save_remote, paths.save_folder, partial_prefix=PARTIAL_PREFIX)
    if is_remote(load_path):
        dest = paths.cache / "load"
        name = str(load_path).rstrip("/").rpartition("/")[2]
        if local_zero:
            fetch_remote_file(str(load_path), dest)
        _barrier(cfg)
        return str(dest / name)
    _barrier(cfg)
    return load_path


def _barrier(cfg: TrainConfig) -> None:
    """Wait for every rank, initialising the process group first as the Trainer would."""
    if dist.get_world_size() > 1:
        dist.initialize_dist(_device(cfg), cfg.dist_timeout)
        dist.barrier()


def build_trainer(
    cfg: TrainConfig,
    *,
    extra_callbacks: Sequence[Callback | Algorithm] = (),
) -> tuple[Trainer, RunPaths, Vocabulary]:
    """Everything up to (not including) ``fit()``; every failure happens before step 1.

    ``extra_callbacks`` are appended to the configured ones (programmatic use: probes,
    custom logging) -- configs select callbacks by registered name instead.  Composer
    Algorithms, configured or extra, go to ``Trainer(algorithms=)`` (listed after the
    built-in gradient clipping); Callbacks to ``Trainer(callbacks=)``.
    """
    validate_train_config(cfg)
    _setup_logging(cfg.logging.log_level)
    paths = prepare_run(cfg, rank=dist.get_global_rank())
    _log_to_file(paths)
    install_checkpoint_guard()
    load_path = _stage_remote_checkpoints(cfg, paths)
    if dist.get_global_rank() == 0:  # `latest` names the newest committed checkpoint
        recover_save_folder(paths.save_folder)
    resume = check_resume_checkpoint(paths.save_folder, load_path, cfg.checkpoint.autoresume)
    if resume is not None:
        log.info("will resume from %s", resume)
    train_data, vocab = build_dataspec(
        cfg.data,
        streams=cfg.data.streams,
        global_batch_size=cfg.data.global_batch_size,
        num_rows=cfg.data.num_rows,
        cache_root=paths.cache / "train",
        seed=cfg.seed,
        shuffle=cfg.data.shuffle,
        where="data",
    )
    precision = build_precision(cfg)  # Composer autocasts on GPUs only; CPU bf16 is the model's
    if dist.get_global_rank() == 0:
        log.info("%s", precision.describe())
    reproducibility.seed_all(cfg.seed)  # identical initial weights on every rank
    model = build_composer_model(cfg, vocab, precision)
    evaluator = _eval_data(cfg, paths)
    callbacks = build_callbacks(
        cfg, paths, model, vocab, asset_fingerprint(list(cfg.data.streams), train_data.dataloader.dataset)
    )
    if resume is not None:
        _check_resumable(cfg, resume, callbacks, load_path)
    configured_callbacks, configured_algorithms = build_configured_components(cfg)
    extra, extra_algorithms = split_components(extra_callbacks, where="extra_callbacks")
    trainer = Trainer(
        model=model,
        train_dataloader=train_data,
        eval_dataloader=evaluator,
        eval_interval=cfg.eval.interval if cfg.eval is not None else 1,
        optimizers=build_optimizer(cfg, model),
        schedulers=build_scheduler(cfg),
        algorithms=[*build_algorithms(cfg), *configured_algorithms, *extra_algorithms],
        callbacks=[*callbacks, *configured_callbacks, *extra],
        loggers=build_loggers(cfg, paths),
        max_duration=cfg.max_duration,
        device=_device(cfg),
        precision=precision.composer_precision,
        parallelism_config=build_parallelism(cfg),
        device_train_microbatch_size=cfg.device_train_microbatch_size,
        accumulate_train_batch_on_tokens=True,
        run_name=redact(cfg.run_name),  # Composer stores it in every checkpoint
        seed=cfg.seed,
        autoresume=cfg.checkpoint.autoresume,
        load_path=load_path,
        load_weights_only=cfg.checkpoint.load_weights_only,
        progress_bar=cfg.logging.progress_bar,
        log_to_console=not cfg.logging.progress_bar,
        console_log_interval=cfg.logging.console_interval,
        dist_timeout=cfg.dist_timeout,
    )
    return trainer, paths, vocab


def _already_finished(trainer: Trainer) -> bool:
    """Whether the (resumed) state has reached ``max_duration`` already."""
    state = trainer.state
    return state.max_duration is not None and state.max_duration <= state.timestamp.get(
        state.max_duration.unit
    )


def _last_logged_loss(metrics: Path) -> float | None:
    """The last ``loss/train/total`` of a run's ``metrics.jsonl`` (``None`` if absent)."""
    if not metrics.exists():
        return None
    _, losses = series(read_metrics(metrics), "loss/train/total")
    return losses[-1] if losses else None


def train(cfg: TrainConfig, *, extra_callbacks: Sequence[Callback | Algorithm] = ()) -> TrainResult:
    """Run (or resume) training as configured; returns where everything went.

    ``extra_callbacks``: Composer callbacks (or algorithms) added to the configured ones.

    Raises:
        cm3leon.core.config.ConfigError: a bad config value, an unwritable save folder.
        cm3leon.core.shards.ShardIntegrityError: a dataset that fails verification.
        cm3leon.core.train.composer_checkpoints.UnsafeCheckpointError: a checkpoint that could run code.
        cm3leon.core.train.callbacks.NonFiniteLossError: NaN/inf with ``nonfinite.policy=stop``.
        cm3leon.core.locks.DirectoryLockedError: another command is training into ``run_dir``.
    """
    # One command per run directory: a second ``train run`` into the same directory fails
    # at once naming this process (rank 0 holds the lock; the other ranks are its own).
    lock = DirectoryLock(cfg.run_dir) if dist.get_global_rank() == 0 else contextlib.nullcontext()
    with lock:
        return _train(cfg, extra_callbacks)


def _train(cfg: TrainConfig, extra_callbacks: Sequence[Callback | Algorithm]) -> TrainResult:
    try:
        trainer, paths, _ = build_trainer(cfg, extra_callbacks=extra_callbacks)
    except BaseException:
        _close_file_logs(RunPaths(cfg))
        raise
    try:
        if _already_finished(trainer):
            # Re-running a finished run (same command, autoresume) is a no-op, not
            # Composer's "max_duration <= elapsed" error: a kill after the last save, or
            # a pipeline re-running its stages, must find it complete.
            log.info(
                "already trained to max_duration %s; nothing to do", trainer.state.max_duration
            )
            last = _last_logged_loss(paths.metrics)
        else:
            trainer.fit()
            losses: dict[str, Any] = trainer.state.total_loss_dict or {}
            last = losses.get("loss/train/total")
        batches = int(trainer.state.timestamp.batch)
    finally:
        trainer.close()
        _close_file_logs(paths)
    latest = paths.save_folder / LATEST_FILENAME.format(rank=0)
    return TrainResult(
        run_dir=paths.run_dir,
        latest_checkpoint=latest.resolve() if latest.exists() else None,
        metrics=paths.metrics,
        batches=batches,
        last_loss=None if last is None else float(last),
    )
