"""The training config schema (``configs/pretrain/*.yaml`` and ``configs/sft/*.yaml``).

YAML -> OmegaConf -> :class:`TrainConfig` via :func:`cm3leon.core.config.load_config`:
unknown keys fail with their dotted path, ``???`` marks required values, components are
chosen by registered name.  This module imports neither torch nor Composer, so
``cm3leon config validate`` stays fast.

Pretraining and SFT share the schema: both are CM3 next-token training over token
shards (pretraining over retrieval-augmented shards from ``cm3leon retrieval augment``
or plain ones from ``cm3leon data prepare``; SFT over the task mixtures of the tasks
package), differing only in numbers (Table 3 vs Table 4) and ``model.init_from``.

A minimal config::

    run_name: pretrain_tiny
    model: {name: cm3leon_tiny}
    data:
      streams:
        world: {local: data/world_tokens}
      seq_len: 256
      global_batch_size: 16
    optim: {lr: 1.0e-3}
    max_duration: 200ba
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from cm3leon.core.config import ComponentConfig
from cm3leon.core.precision import PRECISIONS, precision_problem
from cm3leon.core.train.trackers import tracker_problems

__all__ = [
    "CM3Section",
    "CheckpointSection",
    "DataSection",
    "EvalSection",
    "FSDPSection",
    "LoggingSection",
    "ModelSection",
    "NonFiniteSection",
    "OptimSection",
    "SchedulerSection",
    "StreamSection",
    "RESUME_EXEMPT_KEYS",
    "TrainConfig",
    "check_train_config",
    "config_changes",
    "config_fingerprint",
    "data_path_problems",
    "device_problems",
    "validate_train_config",
]

DEVICES = ("auto", "cpu", "gpu")
SCHEDULERS = ("linear", "cosine", "constant")
NONFINITE_POLICIES = ("skip", "stop")


@dataclass
class ModelSection:
    """Which transformer to train.

    Attributes:
        name: registered model builder (``cm3leon_350m``, ``cm3leon_tiny``, ...).
        options: keyword overrides of :class:`TransformerConfig` (``max_seq_len``, ...);
            ``vocab_size`` always comes from the data's vocabulary.
        init_from: a safetensors export (``cm3leon train export``) to start from -- SFT
            starts from the pretrained model this way.  ``None``: §2.3 initialisation.
        activation_checkpointing: recompute each block in the backward pass (FSDP only).
    """

    name: str = MISSING
    options: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    activation_checkpointing: bool = False


@dataclass
class StreamSection:
    """One ``streaming.Stream``: a token-shard dataset and its share of the mixture.

    Attributes:
        remote: object-store URL (``s3://``, ``gs://``, ``oci://``, ...) or a directory
            standing in for one; ``None`` when ``local`` is the dataset itself.
        local: local cache of ``remote`` (default ``<run_dir>/cache/<stream name>``), or
            the dataset directory when ``remote`` is ``None``.
        proportion / repeat / choose: mixing weights as in ``streaming.Stream`` (give at
            most one per stream; proportions are relative across streams).
    """

    remote: str | None = None
    local: str | None = None
    proportion: float | None = None
    repeat: float | None = None
    choose: int | None = None


@dataclass
class CM3Section:
    """The CM3 objective applied on the fly (``cm3leon.core.objective.CM3Config``).

    Attributes:
        enabled: transform examples (off: plain causal LM over untransformed examples).
        seed: seed of the span draws (``None``: the run's ``seed``).
        options: :class:`CM3Config` fields (``num_spans``, ``span_length``, ``image_spans``,
            ``apply_prob``, ``max_attempts``); empty means CM3 defaults.
    """

    enabled: bool = True
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    """Training data: token-shard streams mixed by proportion, CM3-transformed and packed.

    Attributes:
        streams: named streams (the name only labels the cache directory and logs).
        seq_len: packed row length (Table 3: 4096).
        global_batch_size: examples per optimizer step, summed over all ranks; must be a
            multiple of the world size.  Each rank packs ``global_batch_size / world``
            examples into rows every step (so resumption is exact).
        num_rows: fixed rows per optimizer step, summed over all ranks like
            ``global_batch_size`` (must be a multiple of the world size): each rank packs its
            ``global_batch_size / world`` examples into ``num_rows / world`` rows, so tokens
            per step and examples per row do not change with the world size (examples that
            do not fit are dropped and counted); ``None``: see ``static_rows``.
        static_rows: with ``num_rows`` unset, give every rank ``global_batch_size / world``
            rows per step -- one per example at most, so nothing is dropped -- instead of
            as many as the packing needs.  FSDP requires it: every rank must run the same
            number of micro-batches (each one all-gathers and reduce-scatters).
        pack_strategy: ``ffd`` (fewest rows) or ``greedy`` (keeps order).
        overflow: examples longer than ``seq_len``: ``truncate`` or ``drop``.
        shuffle / shuffle_seed / shuffle_algo: ``StreamingDataset`` shuffling.
        num_canonical_nodes: ``StreamingDataset`` sample-space partitioning (``None``:
            library default); keep it fixed across restarts for exact resumption.
        predownload / cache_limit / download_timeout: ``StreamingDataset`` download knobs.
        check_hashes: SHA-256 every shard already in the local cache before training
            (streamed shards are always checked by ``validate_hash``).
        verify_remote: object-store (``s3://``) shards before step 1: ``size`` (one
            ``HEAD`` per shard against the manifest), ``full`` (download into the cache
            and SHA-256 every shard) or ``none`` (only when streamed).  A directory
            ``remote`` is always checked in place.
        num_workers: DataLoader workers (0 = in the training process).  The CM3 transform,
            fitting and packing run in the workers (dataset transform and collator).
        persistent_workers: keep the workers alive between epochs (needs ``num_workers`` > 0).
        prefetch_factor: batches each worker prepares ahead (``null``: PyTorch's default;
            needs ``num_workers`` > 0).
        use_loss_weights: weight targets by the shards' ``loss_weights`` column when
            present (RA-CM3 query up-weighting; CM3Leon trains without it).
        cm3: the CM3 objective.
    """

    streams: dict[str, StreamSection] = MISSING
    seq_len: int = MISSING
    global_batch_size: int = MISSING
    num_rows: int | None = None
    static_rows: bool = False
    pack_strategy: str = "ffd"
    overflow: str = "truncate"
    shuffle: bool = True
    shuffle_seed: int = 9176
    shuffle_algo: str = "py1e"
    num_canonical_nodes: int | None = None
    predownload: int | None = None
    cache_limit: str | None = None
    download_timeout: float = 60.0
    check_hashes: bool = True
    verify_remote: str = "size"
    num_workers: int = 0
    persistent_workers: bool = False
    prefetch_factor: int | None = None
    use_loss_weights: bool = True
    cm3: CM3Section = field(default_factory=CM3Section)


@dataclass
class EvalSection:
    """Optional held-out evaluation (per-modality loss and perplexity).

    Attributes:
        streams: token-shard streams of the validation split.
        interval: Composer time string (``500ba``), how often to evaluate.
        subset_num_batches: evaluate on at most this many batches (-1: all).
        global_batch_size / num_rows: as in :class:`DataSection` (``seq_len`` is shared).
    """

    streams: dict[str, StreamSection] = MISSING
    interval: str = "1000ba"
    subset_num_batches: int = -1
    global_batch_size: int = MISSING
    num_rows: int | None = None


@dataclass
class OptimSection:
    """AdamW.  Table 3 / Table 4 give only the peak LR; the rest follows OPT (metaseq).

    Attributes:
        lr: peak learning rate (Table 3: 6e-4 / 5e-4 / 1.2e-4; Table 4: 5e-5).
        betas / eps / weight_decay: AdamW (OPT: 0.9, 0.95, 1e-8, 0.1).
        grad_clip_norm: clip the global gradient norm (OPT: 1.0); ``None`` disables.
    """

    lr: float = MISSING
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1.0e-8
    weight_decay: float = 0.1
    grad_clip_norm: float | None = 1.0


@dataclass
class SchedulerSection:
    """Linear warm-up to the peak LR, then decay (Table 3: 1500 warm-up steps).

    Attributes:
        name: ``linear`` (metaseq's polynomial decay of power 1), ``cosine`` or
            ``constant`` (after warm-up).
        warmup: warm-up length as a Composer time string (``1500ba``).
        alpha_f: final LR as a fraction of the peak (OPT decays to 10%).
    """

    name: str = "linear"
    warmup: str = "1500ba"
    alpha_f: float = 0.1


@dataclass
class FSDPSection:
    """Composer 0.32 FSDP settings (FSDP1 field names); ``enabled: false`` means DDP / single.

    ``version``: 2 (default) runs Composer's FSDP2 (``fully_shard``), on GPUs and on CPU
    ranks alike; 1 runs Composer's FSDP1, GPUs only.  How the fields map onto FSDP2, and
    which are FSDP1-only: :mod:`cm3leon.core.train.fsdp`.
    Every transformer block is its own FSDP unit (and activation-checkpointing unit).
    ``state_dict_type: sharded`` writes one ``.distcp`` file per rank (needs a shared
    filesystem for the save folder); ``full`` gathers a monolithic checkpoint on rank 0.
    """

    enabled: bool = False
    version: int = 2
    sharding_strategy: str = "FULL_SHARD"
    mixed_precision: str = "PURE"
    state_dict_type: str = "sharded"
    backward_prefetch: str = "BACKWARD_PRE"
    forward_prefetch: bool = False
    limit_all_gathers: bool = True
    activation_cpu_offload: bool = False
    cpu_offload: bool = False
    sync_module_states: bool = False
    use_orig_params: bool = True
    verbose: bool = False


@dataclass
class CheckpointSection:
    """Periodic, atomic, auto-resuming checkpoints.

    Attributes:
        save_folder: where checkpoints go (default ``<run_dir>/checkpoints``): a local or
            network-mounted directory (checked writable before step 1), or an object-store
            folder (``s3://bucket/run/checkpoints``) staged in ``<run_dir>/checkpoints``
            (:mod:`cm3leon.core.train.object_store`).
        save_interval: Composer time string (``1000ba``).
        num_to_keep: keep the newest N checkpoints (-1: all).
        autoresume: continue from ``<save_folder>/latest-rank0.pt`` when it exists.
        load_path: start from this checkpoint instead (ignored when autoresume finds one).
        load_weights_only: take only the weights from ``load_path``.
        overwrite: allow a save folder that holds checkpoints newer than the start.
        allow_changes: dotted config keys (``fnmatch`` patterns: ``optim.*``) allowed to
            differ from the checkpoint's on resume; any other difference fails before
            training (:func:`config_fingerprint`).  Dataset and tokenizer changes are the
            ``assets.*`` keys.  CLI: ``--allow-config-change KEY`` (repeatable).
    """

    save_folder: str | None = None
    save_interval: str = "1000ba"
    num_to_keep: int = -1
    autoresume: bool = True
    load_path: str | None = None
    load_weights_only: bool = False
    overwrite: bool = False
    allow_changes: list[str] = field(default_factory=list)


@dataclass
class NonFiniteSection:
    """What to do when the loss (or a gradient) is NaN/inf, decided the same on every rank.

    Attributes:
        policy: ``skip`` (drop the update: no weight or optimizer-state change) or
            ``stop`` (raise :class:`NonFiniteLossError` on every rank).
        max_consecutive_skips: with ``skip``, stop after this many bad steps in a row.
        check_gradients: also test the gradients (catches inf gradients of a finite loss).
    """

    policy: str = "skip"
    max_consecutive_skips: int = 20
    check_gradients: bool = True


@dataclass
class LoggingSection:
    """Where metrics go.

    Attributes:
        jsonl: metrics file (one JSON object per batch, rank 0); default
            ``<run_dir>/metrics.jsonl``.
        plot: write ``<run_dir>/loss_curve.png`` at the end of training.
        progress_bar: Composer's progress bar.
        console_interval: how often metrics are printed (Composer time string).
        log_level: Python logging level of ``cm3leon`` and ``composer`` loggers.
        trackers: experiment trackers by name -- ``tensorboard``, ``mlflow``, ``wandb`` --
            each ``{name, options}``, options being the Composer logger's keyword
            arguments (:mod:`cm3leon.core.train.trackers`; needs the ``trackers`` extra).
            Credentials come from the environment only.
    """

    jsonl: str | None = None
    plot: bool = True
    progress_bar: bool = True
    console_interval: str = "10ba"
    log_level: str = "INFO"
    trackers: list[ComponentConfig] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Everything ``cm3leon train`` / ``python -m cm3leon.core.train`` reads.

    Attributes:
        run_name: names the run (Composer autoresume needs a stable one).
        run_dir: where the run's files go (resolved config, metrics, checkpoints).
        seed: seeds model initialisation and, by default, the CM3 span draws.
        model / data / eval / optim / scheduler / fsdp / checkpoint / nonfinite / logging:
            see their sections.
        max_duration: Composer time string (``166894ba``, ``2ep``, ``1400000000000tok``).
        device: ``auto`` (GPU when available), ``cpu`` or ``gpu``.
        precision: ``fp32`` (CPU presets), ``amp_bf16`` (GPU configs; on the CPU: bf16
            autocast in the Composer model), ``amp_fp16`` (GPU only) or ``auto`` (bf16
            where the GPU or CPU does it natively, else fp32); see :mod:`cm3leon.core.precision`.
        device_train_microbatch_size: rows per forward/backward (gradient accumulation
            over the rank's batch); ``None``: the whole rank batch at once.
        callbacks: extra Composer callbacks or algorithms by registered name (``cm3leon
            plugins list --kind callbacks``), e.g. ``{name: speed_monitor, options:
            {window_size: 10}}``; a built ``composer.Algorithm`` goes to the Trainer's
            ``algorithms``, a Callback to its ``callbacks``.
        dist_timeout: seconds before a collective is declared hung.
    """

    run_name: str = MISSING
    run_dir: str = "runs/${run_name}"
    seed: int = 17
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    eval: EvalSection | None = None
    optim: OptimSection = field(default_factory=OptimSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    max_duration: str = MISSING
    device: str = "auto"
    precision: str = "fp32"
    device_train_microbatch_size: int | None = None
    fsdp: FSDPSection = field(default_factory=FSDPSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    nonfinite: NonFiniteSection = field(default_factory=NonFiniteSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    callbacks: list[ComponentConfig] = field(default_factory=list)
    dist_timeout: float = 600.0


def _choice(where: str, value: Any, allowed: tuple[str, ...]) -> list[str]:
    return [] if value in allowed else [f"{where}: {value!r} is not one of {list(allowed)}"]


def _worker_problems(data: DataSection) -> list[str]:
    if data.num_workers < 0:
        return [f"data.num_workers: must be >= 0, got {data.num_workers}"]
    problems = []
    if data.num_workers == 0 and data.persistent_workers:
        problems.append("data.persistent_workers: needs data.num_workers > 0")
    if data.prefetch_factor is not None and (data.num_workers == 0 or data.prefetch_factor < 1):
        problems.append(
            f"data.prefetch_factor: needs data.num_workers > 0 and a value >= 1, got {data.prefetch_factor} "
            f"with {data.num_workers} workers"
        )
    return problems


def validate_train_config(cfg: TrainConfig, *, source: str = "<config>") -> None:
    """Check the values OmegaConf's types cannot (choices, ranges, consistency).

    Raises:
        ConfigError: every problem found, each with its dotted key, in one message.
    """
    from cm3leon.core.config import ConfigError

    problems: list[str] = []
    problems += _choice("device", cfg.device, DEVICES)
    problems += _choice("precision", cfg.precision, PRECISIONS)
    problems += _choice("scheduler.name", cfg.scheduler.name, SCHEDULERS)
    problems += _choice("nonfinite.policy", cfg.nonfinite.policy, NONFINITE_POLICIES)
    problems += _choice("data.pack_strategy", cfg.data.pack_strategy, ("ffd", "greedy"))
    problems += _choice("data.overflow", cfg.data.overflow, ("truncate", "drop"))
    for key, value in (
        ("data.seq_len", cfg.data.seq_len),
        ("data.global_batch_size", cfg.data.global_batch_size),
        ("nonfinite.max_consecutive_skips", cfg.nonfinite.max_consecutive_skips),
    ):
        if value < 1:
            problems.append(f"{key}: must be >= 1, got {value}")
    if cfg.data.num_rows is not None and cfg.data.num_rows < 1:
        problems.append(f"data.num_rows: must be >= 1 or null, got {cfg.data.num_rows}")
    problems += _worker_problems(cfg.data)
    if cfg.device_train_microbatch_size is not None and cfg.device_train_microbatch_size < 1:
        problems.append(
            f"device_train_microbatch_size: must be >= 1 or null, got {cfg.device_train_microbatch_size}"
        )
    if not cfg.data.streams:
        problems.append("data.streams: at least one stream is required")
    for section, streams in (
        ("data", cfg.data.streams),
        ("eval", cfg.eval.streams if cfg.eval else {}),
    ):
        for name, stream in (streams or {}).items():
            if stream.remote is None and stream.local is None:
                problems.append(f"{section}.streams.{name}: give `remote` and/or `local`")
            weights = [
                w for w in (stream.proportion, stream.repeat, stream.choose) if w is not None
            ]
            if len(weights) > 1:
                problems.append(
                    f"{section}.streams.{name}: give at most one of proportion/repeat/choose"
                )
    if cfg.optim.lr <= 0:
        problems.append(f"optim.lr: must be > 0, got {cfg.optim.lr}")
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        problems.append(f"optim.betas: need two values in [0, 1), got {list(cfg.optim.betas)}")
    if not 0 <= cfg.scheduler.alpha_f <= 1:
        problems.append(f"scheduler.alpha_f: must be in [0, 1], got {cfg.scheduler.alpha_f}")
    if cfg.fsdp.enabled and cfg.data.num_rows is None and not cfg.data.static_rows:
        problems.append(
            "data.static_rows: FSDP needs the same rows on every rank; set static_rows: true "
            "(or a fixed data.num_rows)"
        )
    from cm3leon.core.train.fsdp import fsdp_problems

    problems += fsdp_problems(cfg.fsdp, cfg.device)
    if cfg.precision in PRECISIONS and cfg.device == "cpu":
        problems += [p for p in [precision_problem(cfg.precision, "cpu")] if p]
    problems += tracker_problems(cfg.logging.trackers)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


# ------------------------------------------------------------------ pre-flight checks
def _header_commands(source: str | None) -> list[str]:
    """The command lines of a config file's leading comment (``# cm3leon ...``, ``# composer ...``)."""
    if not source or not Path(source).is_file():
        return []
    commands: list[str] = []
    for line in Path(source).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        for prefix in ("Inputs:", "Single node:", "Multi node:"):
            text = text.removeprefix(prefix).strip()
        if text.startswith(("cm3leon ", "composer ", "uv run ")):
            commands.append(text.split("  ")[0].strip())
    return commands


_DATA_HINT = "`cm3leon data prepare --kind tokens`, `cm3leon retrieval augment` or `cm3leon tasks mixture`"


def _how_to_create(path: str, source: str | None, hint: str = _DATA_HINT) -> str:
    """Where the commands that create ``path`` are: the header command naming it, or the header."""
    naming = [c for c in _header_commands(source) if path.rstrip("/") in c]
    if naming:
        return f"create it with `{naming[0]}`"
    if source and _header_commands(source):
        return f"the header comment of {source} lists the commands that create its inputs"
    return f"create it with {hint}"


def _dataset_problem(key: str, path: str, source: str | None) -> str | None:
    directory = Path(path)
    if not directory.exists():
        return f"{key}: {path} does not exist; {_how_to_create(path, source)}"
    if not directory.is_dir():
        return f"{key}: {path} is not a directory (a token-shard dataset is a directory)"
    if not (directory / "COMPLETE").is_file():
        return (f"{key}: {path} is not a finished token-shard dataset (no COMPLETE marker); "
                f"{_how_to_create(path, source)}")
    return None


def data_path_problems(cfg: TrainConfig, *, source: str | None = None) -> list[str]:
    """Missing inputs, each one line naming the dotted key, the path and how to create it.

    A stream without ``remote`` reads its ``local`` directory, which must hold a finished
    token-shard dataset; a ``remote`` that is a directory (no URL scheme) must exist;
    ``model.init_from`` must exist.  Object-store URLs are checked when streamed.
    """
    problems: list[str] = []
    for section, streams in (("data", cfg.data.streams), ("eval", cfg.eval.streams if cfg.eval else {})):
        for name, stream in (streams or {}).items():
            if stream.remote is None and stream.local is not None:
                found = _dataset_problem(f"{section}.streams.{name}.local", stream.local, source)
            elif stream.remote is not None and "://" not in stream.remote:
                found = _dataset_problem(f"{section}.streams.{name}.remote", stream.remote, source)
            else:
                found = None
            problems += [found] if found else []
    init_from = cfg.model.init_from
    if init_from and "://" not in init_from and not Path(init_from).exists():
        how = _how_to_create(init_from, source, "`cm3leon train export CHECKPOINT DIR`")
        problems.append(f"model.init_from: {init_from} does not exist; {how}")
    return problems


def device_problems(cfg: TrainConfig) -> list[str]:
    """``device`` / ``precision`` against the hardware this process sees (imports torch)."""
    import torch

    cuda = torch.cuda.is_available()
    if cfg.device == "gpu" and not cuda:
        return ["device: 'gpu' requested but CUDA is not available"]
    if cfg.device == "auto" and not cuda and cfg.precision == "amp_fp16":
        return [f"precision: {cfg.precision!r} needs a GPU, and device 'auto' found no CUDA "
                "device (CPU runs use fp32, amp_bf16 or auto)"]
    return []


def check_train_config(cfg: TrainConfig, *, source: str = "<config>") -> None:
    """Every check ``cm3leon train run`` makes before it builds a model, in one message.

    :func:`validate_train_config` (schema values, choices, precision names, trackers), then
    :func:`device_problems` and :func:`data_path_problems`.  ``cm3leon config validate
    --schema train`` and ``cm3leon train run`` both call this.

    Raises:
        ConfigError: every problem found, each with its dotted key.
    """
    from cm3leon.core.config import ConfigError

    validate_train_config(cfg, source=source)
    problems = device_problems(cfg) + data_path_problems(cfg, source=source)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


# ------------------------------------------------------------------ resume fingerprint
#: Keys (``fnmatch`` patterns) left out of :func:`config_fingerprint`: they may change
#: between a run and its resumption without changing what the resumed steps compute, or
#: they are how the resume itself is requested.
RESUME_EXEMPT_KEYS: tuple[str, ...] = (
    "run_name", "run_dir",              # where the run lives and what it is called
    "max_duration",                     # extending a run is the point of resuming it
    "device", "dist_timeout",           # where it runs, how long a collective may hang
    "device_train_microbatch_size",     # gradient accumulation: same step, other memory use
    "logging.*", "checkpoint.*",        # reporting; save cadence, autoresume/load_path, allow_changes
    "eval", "eval.*",                   # held-out evaluation does not change training
    "data.num_workers", "data.persistent_workers", "data.prefetch_factor",
    "data.predownload", "data.cache_limit", "data.download_timeout",
    "data.check_hashes", "data.verify_remote",  # loader performance and pre-flight checks
    "data.streams.*.local", "data.streams.*.remote",  # moved data: its content is `assets.*`
    "fsdp.version",  # FSDP1 or FSDP2: the same sharded step; checkpoints from before the key resume
)


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = node


def _redacted(value: Any) -> Any:
    from cm3leon.core.config import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def config_fingerprint(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as a flat ``{dotted.key: value}`` dict, minus :data:`RESUME_EXEMPT_KEYS`.

    Stored in every checkpoint (``RunInfo``) and compared on resume; values are plain
    JSON-like data, environment values redacted (``${oc.env:NAME}``).
    """
    from omegaconf import OmegaConf

    flat: dict[str, Any] = {}
    _flatten(OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True), "", flat)
    return {k: _redacted(v) for k, v in sorted(flat.items())
            if not any(fnmatchcase(k, p) for p in RESUME_EXEMPT_KEYS)}


def config_changes(saved: Mapping[str, Any], current: Mapping[str, Any],
                   allowed: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` for every key whose value differs and no ``allowed`` pattern matches.

    A key present on one side only is a change from/to ``"<unset>"``.
    """
    allowed = tuple(allowed)
    unset = "<unset>"
    return [(k, saved.get(k, unset), current.get(k, unset)) for k in sorted(set(saved) | set(current))
            if saved.get(k, unset) != current.get(k, unset) and not any(fnmatchcase(k, p) for p in allowed)]
