"""The demo's numbers in experiment trackers (the demo config's ``trackers:``; default none).

``cm3leon demo trackers='[{name: tensorboard}, {name: mlflow}]'`` (or the same list in a
demo YAML) logs, after the stages and from the artefacts they wrote, to experiment
``demo`` (:mod:`cm3leon.eval.tracking`: TensorBoard under ``<out>/tensorboard/demo/``,
MLflow file store ``<out>/mlruns``, W&B offline under ``<out>/wandb/``):

* ``pretrain``, ``sft`` (and ``plain_pretrain`` when it ran): the training curves of
  ``metrics.jsonl`` (every logged number at its batch);
* ``text_to_image/<cell>``: each cell of an evaluation ablation, its axis labels as
  parameters and its results as metrics;
* ``captioning``, ``vqa``, ``editing``, ``vq_ceiling``: the results of a single protocol run.

Reading the artefacts afterwards, instead of putting trackers into the stages' configs,
keeps the stage fingerprints unchanged: adding a tracker to a finished demo re-runs
nothing and logs the cached stages too.  Each item is logged once per destination
(``trackers.json`` beside the artefact, keyed by its fingerprint).  For curves *while*
training, the training sections take Composer's loggers themselves:
``pretrain.logging.trackers='[{name: tensorboard}]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.io import read_json
from cm3leon.eval.ablation.report import flatten_results
from cm3leon.eval.demo.stages import Stage
from cm3leon.eval.demo.summary import training_series
from cm3leon.eval.tracking import TrackerLoggers

__all__ = ["EXPERIMENT", "log_demo", "open_demo_trackers", "training_series"]

EXPERIMENT = "demo"


def open_demo_trackers(entries: Sequence[Any], out: Path) -> TrackerLoggers | None:
    """The demo's trackers, validated (before any stage runs); None without any.

    Raises:
        ConfigError: a bad entry, naming ``trackers[i]``.
    """
    if not entries:
        return None
    return TrackerLoggers(entries, out_dir=out, experiment=EXPERIMENT, where="demo config: trackers")


#: Stages whose ``<out>/<stage>/metrics.jsonl`` curves are logged.
TRAINING_STAGES = ("pretrain", "sft", "plain_pretrain")


def _results(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _log_stage(trackers: TrackerLoggers, stage: Stage, fp: str, out: Path) -> list[str]:
    logged: list[str] = []
    if stage.name in TRAINING_STAGES:
        run = out / stage.name
        series = training_series(run / "metrics.jsonl")
        if series:
            logged += trackers.log_cell(stage.name, {"stage": stage.name}, {},
                                        marker=run / "trackers.json", fingerprint=fp, series=series)  # fmt: skip
        return logged
    folder = out / "eval" / stage.name
    cells = sorted((folder / "runs").glob("*/result.json"))
    for path in cells:  # an evaluation ablation: one tracker run per cell
        record = _results(path)
        if record and isinstance(record.get("results"), dict):
            logged += trackers.log_cell(
                f"{stage.name}/{path.parent.name}", {"stage": stage.name, **(record.get("labels") or {})},
                flatten_results(record["results"]), marker=path.parent / "trackers.json",
                fingerprint=str(record.get("fingerprint")),
            )  # fmt: skip
    if not cells:  # a single protocol run, or the VQ ceiling's scores
        files = [folder / "results.json"] if (folder / "results.json").is_file() else sorted(folder.glob("*.json"))
        results = {p.stem: r for p in files if p.name != "trackers.json" and (r := _results(p)) is not None}
        if results:
            flat = results.get("results") if list(results) == ["results"] else results
            logged += trackers.log_cell(stage.name, {"stage": stage.name}, flatten_results(flat),
                                        marker=folder / "trackers.json", fingerprint=fp)  # fmt: skip
    return logged


def log_demo(trackers: TrackerLoggers | None, stages: Sequence[Stage], outcomes: Sequence[Any],
             out: Path) -> list[str]:  # fmt: skip
    """Log every finished stage's numbers (see the module docstring); returns what was logged.

    Stages that failed or did not run are left out; a later invocation logs them.
    """
    if not trackers:
        return []
    finished = {o.name: o.fingerprint for o in outcomes if o.status in ("cached", "ran", "resumed")}
    logged: list[str] = []
    for stage in stages:
        if stage.name in finished and (stage.name in TRAINING_STAGES or (out / "eval" / stage.name).is_dir()):
            logged += [f"{stage.name}: {key}" for key in _log_stage(trackers, stage, finished[stage.name], out)]
    return logged
