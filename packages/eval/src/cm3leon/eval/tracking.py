"""Experiment trackers for runs without a trainer: ablation cells and the demo's evaluations.

Training reaches TensorBoard, MLflow and W&B through Composer's loggers
(``logging.trackers`` of a train config, :mod:`cm3leon.core.train.trackers`).  An ablation
cell is one runner call returning a dict of results, so this module logs that dict
directly with each library: **one tracker run per cell**, named ``<ablation>/<cell>``,
the cell's axis labels as parameters and its flattened numeric results as metrics (step
0; per-item ``per_*`` breakdowns left out).  The same ``{name, options}`` entries as a train config select them::

    trackers:                                  # in an ablation file (or: cm3leon ablate --tracker NAME)
      - {name: tensorboard}                    # <out>/tensorboard/<ablation>/<cell>/ (scalars + HParams)
      - {name: mlflow}                         # file store <out>/mlruns, experiment = the ablation's name
      - {name: wandb, options: {project: t}}   # WANDB_MODE=offline: <out>/wandb/offline-run-*/

Options (a subset of the Composer loggers' keyword arguments, the ones that mean something
outside a trainer): ``tensorboard``: ``log_dir``; ``mlflow``: ``tracking_uri``,
``experiment_name``, ``tags``; ``wandb``: ``project``, ``entity``, ``group``, ``tags``,
``init_kwargs``.  Names, credentials (never in a config) and installed libraries are
checked by :func:`cm3leon.core.train.trackers.tracker_problems`, before anything runs.

A cell is logged once per tracker destination: ``runs/<cell>/trackers.json`` records
which destinations hold the cell's current results (by config fingerprint), so a resumed
ablation logs the cells that finished while no tracker was configured (or whose logging
was interrupted) and never logs a cell twice.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.config import ConfigError
from cm3leon.core.io import atomic_write_json, read_json

__all__ = ["SUPPORTED_OPTIONS", "TrackerLoggers", "numeric_metrics", "tracker_entry_problems"]

#: The options each tracker honours here (all are options of the Composer logger too).
SUPPORTED_OPTIONS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("log_dir",),
    "mlflow": ("tracking_uri", "experiment_name", "tags"),
    "wandb": ("project", "entity", "group", "tags", "init_kwargs"),
}


def _entry(entry: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise ConfigError(f"a tracker entry must be a name or a mapping {{name, options}}, got {entry!r}")
    return str(entry["name"]), dict(entry.get("options") or {})


def tracker_entry_problems(entries: Sequence[Any], *, where: str = "trackers") -> list[str]:
    """Every problem of ``entries`` for logging outside a trainer, each naming its key."""
    from cm3leon.core.train.trackers import tracker_problems

    problems: list[str] = []
    parsed = []
    for i, entry in enumerate(entries):
        try:
            name, options = _entry(entry)
        except ConfigError as err:
            problems.append(f"{where}[{i}]: {err}")
            continue
        parsed.append({"name": name, "options": options})
        composer_only = sorted(set(options) - set(SUPPORTED_OPTIONS.get(name, options)))
        if name in SUPPORTED_OPTIONS and composer_only:
            unknown_here = [k for k in composer_only if _composer_option(name, k)]
            if unknown_here:
                problems.append(f"{where}[{i}].options: {unknown_here} apply to training only; "
                                f"{name!r} here takes {list(SUPPORTED_OPTIONS[name])}")  # fmt: skip
    return tracker_problems(parsed, where=where) + problems


def _composer_option(name: str, key: str) -> bool:
    from cm3leon.core.train.trackers import TRACKERS

    return key in TRACKERS[name].options


def numeric_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of flattened ``results`` (bools and strings left out, and per-item
    breakdowns -- a key part ``per_*``, e.g. ``per_prompt.<id>.clip_score`` -- too)."""
    out: dict[str, float] = {}
    for key, value in results.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if any(part.startswith("per_") for part in str(key).split(".")):
            continue
        if math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in params.items()}


#: ``{step: {key: value}}`` -- a curve (e.g. a training loss read back from metrics.jsonl).
Series = Mapping[int, Mapping[str, float]]


class _TensorBoard:
    def __init__(self, options: Mapping[str, Any], out: Path, experiment: str) -> None:
        self.root = Path(options.get("log_dir") or out / "tensorboard") / experiment
        self.key = f"tensorboard:{self.root.resolve()}"

    def log(self, cell: str, params: Mapping[str, Any], metrics: Mapping[str, float], series: Series) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        with SummaryWriter(log_dir=str(self.root / cell)) as writer:
            if metrics:
                for summary in hparams(_params(params), dict(metrics)):  # the HParams dashboard
                    writer.file_writer.add_summary(summary)
            for key, value in metrics.items():
                writer.add_scalar(key, value, 0)
            for step, values in sorted(series.items()):
                for key, value in values.items():
                    writer.add_scalar(key, value, step)


class _MLflow:
    def __init__(self, options: Mapping[str, Any], out: Path, experiment: str) -> None:
        self.uri = str(options.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
                       or (out / "mlruns").resolve().as_uri())  # fmt: skip
        self.experiment, self.prefix = str(options.get("experiment_name") or experiment), experiment
        self.tags = {str(k): str(v) for k, v in (options.get("tags") or {}).items()}
        self.key = f"mlflow:{self.uri}#{self.experiment}"
        if self.uri.startswith("file:") or "://" not in self.uri:
            # MLflow 3 refuses a file store without this opt-in; naming one (or the default
            # <out>/mlruns) has chosen it (as cm3leon.core.train.trackers does for training).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

    def log(self, cell: str, params: Mapping[str, Any], metrics: Mapping[str, float], series: Series) -> None:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        found = client.get_experiment_by_name(self.experiment)
        exp_id = found.experiment_id if found else client.create_experiment(self.experiment)
        info = client.create_run(exp_id, run_name=f"{self.prefix}/{cell}", tags=self.tags).info
        now = int(time.time() * 1000)
        points = [Metric(k, v, now, 0) for k, v in metrics.items()]
        points += [Metric(k, v, now, step) for step, vs in sorted(series.items()) for k, v in vs.items()]
        client.log_batch(info.run_id, params=[Param(k, str(v)[:6000]) for k, v in _params(params).items()])
        for i in range(0, len(points), 1000):  # MLflow's per-batch limit
            client.log_batch(info.run_id, metrics=points[i:i + 1000])
        client.set_terminated(info.run_id)


class _WandB:
    def __init__(self, options: Mapping[str, Any], out: Path, experiment: str) -> None:
        self.options = dict(options)
        self.init_kwargs = {"dir": str(out), **dict(options.get("init_kwargs") or {})}
        self.group, self.prefix = options.get("group") or experiment, experiment
        self.key = f"wandb:{options.get('entity')}/{options.get('project', 'cm3leon')}@{self.init_kwargs['dir']}"

    def log(self, cell: str, params: Mapping[str, Any], metrics: Mapping[str, float], series: Series) -> None:
        import wandb

        Path(self.init_kwargs["dir"]).mkdir(parents=True, exist_ok=True)
        kwargs = {"project": self.options.get("project", "cm3leon"), "entity": self.options.get("entity"),
                  "group": self.group, "tags": self.options.get("tags"), "name": f"{self.prefix}/{cell}",
                  "config": _params(params), "reinit": "create_new", **self.init_kwargs}  # fmt: skip
        handle = wandb.init(**kwargs)
        try:
            steps = {**series, 0: {**dict(series.get(0, {})), **metrics}} if metrics else dict(series)
            for step, values in sorted(steps.items()):  # W&B steps must increase
                handle.log(dict(values), step=step)
            handle.summary.update(dict(metrics))
        finally:
            handle.finish()


_SINKS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}


class TrackerLoggers:
    """The trackers of one ablation (or the demo's evaluations), opened for logging cells.

    Args:
        entries: ``{name, options}`` mappings (or bare names).
        out_dir: where default destinations go (``<out>/tensorboard``, ``<out>/mlruns``,
            ``<out>/wandb``).
        experiment: the ablation's name (TensorBoard folder, MLflow experiment, W&B group,
            prefix of every run name).
        where: how errors name the entries (``<file>: trackers``).

    Raises:
        ConfigError: :func:`tracker_entry_problems`, all of them in one message.
    """

    def __init__(self, entries: Sequence[Any], *, out_dir: str | Path, experiment: str,
                 where: str = "trackers") -> None:  # fmt: skip
        problems = tracker_entry_problems(entries, where=where)
        if problems:
            raise ConfigError("; ".join(problems))
        self.experiment = experiment
        self.sinks = [_SINKS[name](options, Path(out_dir), experiment) for name, options in map(_entry, entries)]

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def log_cell(self, cell: str, params: Mapping[str, Any], results: Mapping[str, Any], *,
                 marker: str | Path, fingerprint: str, series: Series | None = None) -> list[str]:  # fmt: skip
        """Log one cell to every destination that does not hold it yet; returns those logged.

        Args:
            cell: the run's name (``<experiment>/<cell>`` in the tracker).
            params: its parameters (axis labels).
            results: flattened results; the finite numbers become metrics at step 0.
            marker: ``runs/<cell>/trackers.json``, the destinations that hold the cell,
                keyed by ``fingerprint`` (a cell re-run with another config is logged again).
            series: a curve, ``{step: {key: value}}``, logged at its steps.
        """
        marker = Path(marker)
        try:
            record = read_json(marker) if marker.is_file() else {}
        except ValueError:
            record = {}
        done = set(record.get("logged", [])) if record.get("fingerprint") == fingerprint else set()
        metrics, logged = numeric_metrics(results), []
        for sink in self.sinks:
            if sink.key in done:
                continue
            sink.log(cell, params, metrics, series or {})
            done.add(sink.key)
            logged.append(sink.key)
            atomic_write_json(marker, {"fingerprint": fingerprint, "logged": sorted(done)})
        return logged
