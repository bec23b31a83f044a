"""Experiment trackers: Composer's TensorBoard, MLflow and W&B loggers chosen by name.

A train config lists them under ``logging.trackers``; each becomes one Composer
``LoggerDestination`` next to the JSONL metrics file, so every metric the run logs
(``loss/train/total``, the per-modality metrics, throughput, LR) reaches it::

    logging:
      trackers:
        - {name: tensorboard}                                   # <run_dir>/tensorboard/<run_name>/
        - {name: mlflow, options: {experiment_name: cm3leon}}   # file store <run_dir>/mlruns
        - {name: wandb, options: {project: cm3leon}}            # WANDB_MODE=offline: no network

``options`` are the keyword arguments of the Composer class (``TensorboardLogger``,
``MLFlowLogger``, ``WandBLogger``); :data:`DEFAULTS` fills the ones left out so that
everything lands in the run directory.  Credentials never come from the config: an
option named like a secret (``api_key``, ``token``, ``password``) is rejected, and the
libraries read their usual environment variables (``WANDB_API_KEY``,
``MLFLOW_TRACKING_TOKEN`` / ``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD``).

The libraries are the ``trackers`` extra (``pip install 'cm3leon-core[trackers]'``),
imported only when a tracker is built; :func:`tracker_problems` checks names, options and
that the library is installed without importing it or Composer, so ``cm3leon config
validate`` reports the same problems as ``cm3leon train run`` before any model is built.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULTS",
    "EXTRA",
    "TRACKERS",
    "TrackerSpec",
    "build_trackers",
    "tracker_options",
    "tracker_problems",
]

#: The pip extra that installs every tracker library.
EXTRA = "cm3leon-core[trackers]"

#: Substrings of an option name that mark it as a credential (never allowed in a config).
_SECRET_WORDS = ("key", "token", "password", "secret", "credential")


@dataclass(frozen=True)
class TrackerSpec:
    """One selectable tracker.

    Attributes:
        name: the value of ``logging.trackers[i].name``.
        module: the library imported to use it (checked with ``importlib.util.find_spec``).
        package: its pip package.
        logger: the class in ``composer.loggers``.
        options: the keyword arguments of that class (``tests/core/train/test_trackers.py``
            checks this list against Composer's signature).
        secret_env: environment variables the library reads credentials from.
    """

    name: str
    module: str
    package: str
    logger: str
    options: tuple[str, ...]
    secret_env: tuple[str, ...] = ()


TRACKERS: dict[str, TrackerSpec] = {
    spec.name: spec
    for spec in (
        TrackerSpec(
            "tensorboard", "tensorboard", "tensorboard", "TensorboardLogger",
            ("log_dir", "flush_interval", "rank_zero_only"),
        ),
        TrackerSpec(
            "mlflow", "mlflow", "mlflow", "MLFlowLogger",
            ("experiment_name", "run_name", "tags", "tracking_uri", "rank_zero_only",
             "flush_interval", "model_registry_prefix", "model_registry_uri", "synchronous",
             "log_system_metrics", "rename_metrics", "ignore_metrics", "ignore_hyperparameters",
             "run_group", "resume", "logging_buffer_seconds",
             "log_duplicated_metric_every_n_steps"),
            ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
             "DATABRICKS_TOKEN"),
        ),
        TrackerSpec(
            "wandb", "wandb", "wandb", "WandBLogger",
            ("project", "group", "name", "entity", "tags", "log_artifacts", "rank_zero_only",
             "init_kwargs"),
            ("WANDB_API_KEY",),
        ),
    )
}


def _tensorboard_defaults(run_dir: Path, autoresume: bool) -> dict[str, Any]:
    # Event files under <run_dir>/tensorboard/<run_name>/ (Composer adds the run name).
    return {"log_dir": str(run_dir / "tensorboard")}


def _mlflow_defaults(run_dir: Path, autoresume: bool) -> dict[str, Any]:
    # MLFLOW_TRACKING_URI (a server) wins over the run directory's file store.  With
    # autoresume, a resumed run appends to the MLflow run tagged with its run_name.
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / "mlruns").resolve().as_uri()
    return {"tracking_uri": uri, "experiment_name": "cm3leon", "resume": autoresume,
            "log_system_metrics": False}


def _wandb_defaults(run_dir: Path, autoresume: bool) -> dict[str, Any]:
    # WANDB_MODE=offline writes <run_dir>/wandb/offline-run-*/ and never opens a socket.
    return {"project": "cm3leon", "init_kwargs": {"dir": str(run_dir)}}


#: Options filled in when a config leaves them out: ``name -> f(run_dir, autoresume)``.
DEFAULTS = {
    "tensorboard": _tensorboard_defaults,
    "mlflow": _mlflow_defaults,
    "wandb": _wandb_defaults,
}


def _name_of(entry: Any) -> str:
    return entry["name"] if isinstance(entry, Mapping) else entry.name


def _options_of(entry: Any) -> Mapping[str, Any]:
    options = entry.get("options") if isinstance(entry, Mapping) else entry.options
    return options or {}


def _secret_keys(options: Mapping[str, Any], prefix: str) -> list[str]:
    found: list[str] = []
    for key, value in options.items():
        path = f"{prefix}.{key}"
        if any(word in str(key).lower() for word in _SECRET_WORDS):
            found.append(path)
        elif isinstance(value, Mapping):
            found += _secret_keys(value, path)
    return found


def _entry_problems(spec: TrackerSpec, options: Mapping[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    for path in _secret_keys(options, f"{where}.options"):
        env = " / ".join(spec.secret_env) or "the library's environment variables"
        problems.append(f"{path}: credentials come from the environment ({env}), "
                        "never from a config")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        problems.append(f"{where}.options: unknown option(s) {unknown} for {spec.name!r} "
                        f"(composer.loggers.{spec.logger} takes {list(spec.options)})")
    if importlib.util.find_spec(spec.module) is None:
        problems.append(f"{where}: tracker {spec.name!r} needs the {spec.package!r} package, "
                        f"which is not installed: pip install '{EXTRA}'")
    return problems


def tracker_problems(trackers: Sequence[Any], *, where: str = "logging.trackers") -> list[str]:
    """Every problem of ``trackers`` (config entries ``{name, options}``), each with its dotted key.

    Unknown or repeated names, unknown options, credentials in options, and a library
    that is not installed; nothing is imported.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for i, entry in enumerate(trackers):
        name, at = _name_of(entry), f"{where}[{i}]"
        spec = TRACKERS.get(name)
        if spec is None:
            problems.append(f"{at}.name: unknown tracker {name!r}; known: {sorted(TRACKERS)}")
            continue
        if name in seen:
            problems.append(f"{at}.name: tracker {name!r} is listed twice")
        seen.add(name)
        problems += _entry_problems(spec, _options_of(entry), at)
    return problems


def tracker_options(name: str, options: Mapping[str, Any], *, run_dir: Path,
                    autoresume: bool = True) -> dict[str, Any]:
    """The keyword arguments the Composer logger of tracker ``name`` is built with."""
    merged = {**DEFAULTS[name](Path(run_dir), autoresume), **dict(options)}
    if name == "wandb":  # keep the default `dir` when the config gives other init_kwargs
        merged["init_kwargs"] = {**DEFAULTS[name](Path(run_dir), autoresume)["init_kwargs"],
                                 **dict(options.get("init_kwargs") or {})}
    return merged


def build_trackers(trackers: Sequence[Any], *, run_dir: Path, autoresume: bool = True,
                   where: str = "logging.trackers") -> list[Any]:
    """Composer ``LoggerDestination``s for ``trackers``, in order.

    Raises:
        cm3leon.core.config.ConfigError: :func:`tracker_problems`, or a library that is
            installed but fails to import (named with the extra to install).
    """
    import composer.loggers
    from composer.utils import MissingConditionalImportError

    from cm3leon.core.config import ConfigError

    problems = tracker_problems(trackers, where=where)
    if problems:
        raise ConfigError("; ".join(problems))
    built = []
    for i, entry in enumerate(trackers):
        spec = TRACKERS[_name_of(entry)]
        options = tracker_options(spec.name, _options_of(entry), run_dir=run_dir,
                                  autoresume=autoresume)
        if spec.name == "mlflow":
            _allow_file_store(str(options.get("tracking_uri") or ""))
        cls = _wandb_logger_class() if spec.name == "wandb" else getattr(composer.loggers, spec.logger)
        try:
            built.append(cls(**options))
        except (ImportError, MissingConditionalImportError) as err:
            raise ConfigError(f"{where}[{i}]: tracker {spec.name!r} could not import its library "
                              f"({err}); pip install '{EXTRA}'") from None
    return built


def _allow_file_store(uri: str) -> None:
    """Opt in to MLflow's file store when the config asks for one.

    MLflow 3.x raises on a ``file://`` (or plain path) tracking URI unless
    ``MLFLOW_ALLOW_FILE_STORE=true`` (the store is in maintenance mode; a database URI,
    ``sqlite:///<path>``, is what MLflow recommends).  A config that names a file store,
    or leaves the default ``<run_dir>/mlruns``, has chosen it, so the opt-in is set here
    unless the environment already says otherwise.
    """
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _wandb_logger_class() -> type:
    """Composer 0.32's ``WandBLogger``, working with wandb releases without ``Run.get_url()``.

    Composer's ``init`` calls ``wandb.run.get_url()``, which newer wandb releases removed
    in favour of the ``Run.url`` property; this subclass repeats Composer's ``init`` with
    the property.  It also answers Composer's autoresume probe (``download_file`` of the
    latest checkpoint, tried on every logger before the local file) with "not found"
    when it cannot hold checkpoints -- no ``log_artifacts``, or offline -- instead of
    calling the W&B API, which needs a key and the network.
    """
    import atexit

    from composer.loggers import WandBLogger
    from composer.utils import dist

    class CM3LeonWandBLogger(WandBLogger):
        def init(self, state: Any, logger: Any) -> None:
            import wandb

            if self._init_kwargs.get("name") is None:
                self._init_kwargs["name"] = state.run_name
            if not self._rank_zero_only:
                name = self._init_kwargs["name"]
                self._init_kwargs["name"] += f"-rank{dist.get_global_rank()}"
                self._init_kwargs.setdefault("group", name)
            entity_and_project: list[Any] = [None, None]
            if self._enabled:
                run = wandb.init(**self._init_kwargs)
                entity_and_project = [str(getattr(run, "entity", "disabled")),
                                      str(getattr(run, "project", "disabled"))]
                self.run_dir = run.dir
                self.run_url = getattr(run, "url", None)
                atexit.register(self._set_is_in_atexit)
            dist.broadcast_object_list(entity_and_project)
            self.entity, self.project = entity_and_project

        def download_file(self, remote_file_name: str, *args: Any, **kwargs: Any) -> None:
            if not self._log_artifacts or os.environ.get("WANDB_MODE") in ("offline", "disabled"):
                raise FileNotFoundError(f"{remote_file_name}: no W&B artifacts in this run")
            super().download_file(remote_file_name, *args, **kwargs)

    return CM3LeonWandBLogger
