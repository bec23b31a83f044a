"""Execute an ablation: validate every run, run the unfinished ones, write the report.

Layout of the output directory (default ``runs/ablations/<name>``)::

    ablation.yaml            the resolved ablation file
    plan.json                every run: name, axis labels, overrides, config hash
    ablate.log               log of every invocation
    runs/<run>/config.yaml   the run's validated config
    runs/<run>/result.json   written atomically when the run finished — the resume marker
    runs/<run>/error.json    the last failure (removed when the run succeeds)
    runs/<run>/trackers.json the tracker destinations that hold the run (``trackers:``)
    results.md results.csv table-*.csv plot-*.png

**Resuming**: a run whose ``result.json`` records the same runner and config hash is not
executed again (``force=True`` redoes everything); a run whose config changed is re-run.
A crash never leaves a ``result.json`` behind, so an interrupted run is simply redone.

**Trackers**: with a ``trackers:`` section (or ``--tracker NAME``), every finished run --
also one finished by an earlier invocation and not yet logged there -- is logged as one
tracker run (:mod:`cm3leon.eval.tracking`).  A tracker that fails does not stop the
ablation: the results stay, the failure is raised at the end, and the next invocation
logs what is missing.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm.auto import tqdm

from cm3leon.core.config import ConfigError, config_to_yaml, load_config, save_config
from cm3leon.core.io import atomic_write_json, atomic_write_text, read_json
from cm3leon.core.registry import resolve_object
from cm3leon.eval.ablation.report import flatten_results, write_report
from cm3leon.eval.ablation.spec import AblationConfig, Run, expand_runs, load_ablation, parse_axes
from cm3leon.eval.tracking import TrackerLoggers

__all__ = ["AblationOutcome", "AblationRunError", "RunOutcome", "active_registries", "run_ablation"]

log = logging.getLogger("cm3leon.eval.ablation")
_ACTIVE_REGISTRIES: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "cm3leon_ablation_registries"
)


def active_registries() -> Any:
    """The registries of the ablation being executed (for runners that look up others)."""
    registries = _ACTIVE_REGISTRIES.get(None)
    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    return registries


class AblationRunError(RuntimeError):
    """A run of the ablation failed (its traceback is in ``runs/<run>/error.json``)."""


@dataclass(frozen=True)
class RunOutcome:
    run: Run
    status: str  # "done" | "skipped" | "failed" | "pending"
    results: dict[str, Any] | None
    seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class AblationOutcome:
    config: AblationConfig
    out_dir: Path
    outcomes: list[RunOutcome]
    report_files: list[Path]

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def _typed_configs(runs: Sequence[Run], schema: type | None, where: str) -> list[Any]:
    typed = []
    for run in runs:
        if schema is None:
            typed.append(dict(run.config))
            continue
        try:
            typed.append(load_config(schema, data=run.config))
        except ConfigError as err:
            raise ConfigError(
                f"{where}: run {run.name}: {str(err).replace('<config>: ', '')}"
            ) from None
    return typed


def _fingerprint(runner: str, cfg: Any) -> str:
    """Runner name + SHA-256 of the validated config (schema defaults included)."""
    text = (
        config_to_yaml(cfg)
        if dataclasses.is_dataclass(cfg)
        else json.dumps(cfg, sort_keys=True, default=str)
    )
    return f"{runner}:{hashlib.sha256(text.encode()).hexdigest()}"


def _finished(result_path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not result_path.is_file():
        return None
    try:
        data = read_json(result_path)
    except ValueError:
        log.warning("%s is unreadable; re-running", result_path)
        return None
    if data.get("fingerprint") != fingerprint:
        log.info("%s: config or runner changed since it ran; re-running", result_path.parent.name)
        return None
    return data


def _execute(spec: Any, run: Run, cfg: Any, run_dir: Path, fingerprint: str) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    if dataclasses.is_dataclass(cfg):
        save_config(cfg, run_dir / "config.yaml")
    else:
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cfg)))
    start = time.perf_counter()
    results = spec.load()(cfg, run_dir)
    seconds = time.perf_counter() - start
    if not isinstance(results, dict):
        raise TypeError(
            f"runner {spec.name!r} returned {type(results).__name__}, expected a dict of results"
        )
    results = _jsonable(results)
    json.dumps(results)  # JSON-serialisable, or a TypeError naming the value
    record = {
        "run": run.name,
        "runner": spec.name,
        "fingerprint": fingerprint,
        "labels": run.labels,
        "overrides": run.overrides,
        "results": results,
        "seconds": seconds,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(run_dir / "result.json", record)
    (run_dir / "error.json").unlink(missing_ok=True)
    return record


def _jsonable(value: Any) -> Any:
    """Numpy/torch scalars (and 0-d arrays) -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _attach_log(path: Path) -> list[logging.Handler]:
    """Log every invocation to ``path``; echo to stderr only when ``-v`` asked for INFO."""
    handlers: list[logging.Handler] = [logging.FileHandler(path)]
    if logging.getLogger().getEffectiveLevel() <= logging.INFO:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handlers


class _CellTracker:
    """Logs finished runs to the ablation's trackers; keeps failures for the end."""

    def __init__(self, trackers: TrackerLoggers | None, runner: str) -> None:
        self.trackers, self.runner, self.errors = trackers, runner, []

    def __call__(self, run: Run, results: dict[str, Any], run_dir: Path, fingerprint: str) -> None:
        if not self.trackers:
            return
        params = {**run.labels, "runner": self.runner}
        try:
            logged = self.trackers.log_cell(run.name, params, flatten_results(results),
                                            marker=run_dir / "trackers.json", fingerprint=fingerprint)
        except Exception as err:  # the results are saved; the next invocation retries
            message = f"{run.name}: {type(err).__name__}: {err}"
            log.error("tracker logging failed for %s", message)
            self.errors.append(message)
            return
        if logged:
            log.info("logged %s to %s", run.name, ", ".join(logged))


def _trackers(cfg: AblationConfig, extra: Sequence[str], out: Path, where: str) -> TrackerLoggers:
    """The file's ``trackers`` plus ``--tracker`` names not already listed (validated)."""
    entries = list(cfg.trackers)
    names = {e if isinstance(e, str) else dict(e).get("name") for e in entries}
    entries += [{"name": n} for n in dict.fromkeys(extra) if n not in names]
    return TrackerLoggers(entries, out_dir=out, experiment=cfg.name, where=f"{where}: trackers")


def _rows(outcomes: Sequence[RunOutcome]) -> list[dict[str, Any]]:
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"run": o.run.name, "status": o.status, **o.run.labels}
        row.update(flatten_results(o.results or {}))
        rows.append(row)
    return rows


def run_ablation(
    source: str | Path | AblationConfig,
    *,
    overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    registries: Any = None,
    force: bool = False,
    keep_going: bool = False,
    dry_run: bool = False,
    only: Sequence[str] = (),
    progress: bool = True,
    trackers: Sequence[str] = (),
) -> AblationOutcome:
    """Expand, validate and execute an ablation, then write its tables and plots.

    Args:
        source: the ablation YAML (or an already loaded :class:`AblationConfig`).
        overrides: dotted ``key=value`` overrides of the ablation file.
        out_dir: output directory (default: ``output_dir`` of the file, else
            ``runs/ablations/<name>``).
        registries: registries holding the runner (default: the process-wide ones).
        force: re-run finished runs too.
        keep_going: record failed runs and continue instead of stopping at the first.
        dry_run: validate and write the plan only; nothing is executed.
        only: run only these run names (the report still covers every finished run).
        progress: show a progress bar.
        trackers: names of trackers to log every finished run to, besides the file's
            ``trackers`` section (:mod:`cm3leon.eval.tracking`).

    Raises:
        ConfigError: the ablation file, a run config or a tracker is invalid (before
            anything runs).
        AblationRunError: a run failed (without ``keep_going``), or logging to a tracker
            failed; finished runs are kept.
    """
    cfg, where, runs = _load(source, overrides, only)
    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    spec = registries.runners.get(cfg.base.runner, where=f"{where}: base.runner")
    schema = resolve_object(spec.schema) if spec.schema is not None else None
    typed = _typed_configs(runs, schema, where)
    out = Path(out_dir or cfg.output_dir or Path("runs") / "ablations" / cfg.name)
    tracker = _CellTracker(_trackers(cfg, trackers, out, where), spec.name)
    _write_plan(out, cfg, spec.name, runs, typed)
    handlers = _attach_log(out / "ablate.log")
    try:
        log.info("ablation %s: %d runs with runner %s%s", cfg.name, len(runs), spec.name,
                 " (dry run)" if dry_run else "")  # fmt: skip
        token = _ACTIVE_REGISTRIES.set(registries)
        try:
            outcomes = _run_all(
                spec, runs, typed, out, force, keep_going, dry_run, set(only), progress, tracker
            )
        finally:
            _ACTIVE_REGISTRIES.reset(token)
        report = write_report(cfg.name, parse_axes(cfg.matrix), _rows(outcomes), cfg.report, out)
        failed = [o for o in outcomes if o.status == "failed"]
        log.info("done: %d ran, %d skipped, %d failed; report in %s",
                 sum(o.status == "done" for o in outcomes),
                 sum(o.status == "skipped" for o in outcomes), len(failed), out)  # fmt: skip
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
        log.propagate = True
    if failed and not keep_going:
        raise AblationRunError(
            f"run {failed[0].run.name} failed: {failed[0].error} (see {out / 'runs' / failed[0].run.name / 'error.json'})"
        )
    if tracker.errors:
        raise AblationRunError(
            f"logging to a tracker failed (results are saved; re-run to log them): {'; '.join(tracker.errors)}"
        )
    return AblationOutcome(cfg, out, outcomes, report)


def _load(
    source: str | Path | AblationConfig, overrides: Sequence[str], only: Sequence[str]
) -> tuple[AblationConfig, str, list[Run]]:
    """The ablation, how errors name it, and its runs (``only`` checked against them)."""
    path = None if isinstance(source, AblationConfig) else Path(source)
    cfg = source if isinstance(source, AblationConfig) else load_ablation(source, overrides)
    where = str(path) if path is not None else cfg.name
    runs = expand_runs(cfg, source=path)
    unknown = sorted(set(only) - {r.name for r in runs})
    if unknown:
        raise ConfigError(
            f"{where}: --only names unknown runs {unknown}; runs: {[r.name for r in runs][:20]}"
        )
    return cfg, where, runs


def _write_plan(
    out: Path, cfg: AblationConfig, runner: str, runs: Sequence[Run], typed: Sequence[Any]
) -> None:
    """Write ``ablation.yaml`` (resolved) and ``plan.json`` (every run and its fingerprint)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation.yaml", config_to_yaml(cfg))
    plan = [
        {
            "run": r.name,
            "labels": r.labels,
            "overrides": r.overrides,
            "fingerprint": _fingerprint(runner, c),
        }
        for r, c in zip(runs, typed, strict=True)
    ]
    atomic_write_json(out / "plan.json", {"name": cfg.name, "runner": runner, "runs": plan})


def _run_all(
    spec: Any,
    runs: Sequence[Run],
    typed: Sequence[Any],
    out: Path,
    force: bool,
    keep_going: bool,
    dry_run: bool,
    only: set[str],
    progress: bool,
    tracker: _CellTracker,
) -> list[RunOutcome]:
    outcomes: list[RunOutcome] = []
    stop = False
    bar = tqdm(
        list(zip(runs, typed, strict=True)), desc="ablation runs", unit="run", disable=not progress
    )
    for run, cfg in bar:
        bar.set_postfix_str(run.name)
        run_dir = out / "runs" / run.name
        fingerprint = _fingerprint(spec.name, cfg)
        previous = None if force else _finished(run_dir / "result.json", fingerprint)
        if previous is not None:
            log.info("skip %s (finished %s)", run.name, previous.get("finished_at"))
            outcomes.append(
                RunOutcome(run, "skipped", previous["results"], previous.get("seconds", 0.0))
            )
            if not dry_run:
                tracker(run, previous["results"], run_dir, fingerprint)
            continue
        if dry_run or stop or (only and run.name not in only):
            outcomes.append(RunOutcome(run, "pending", None))
            continue
        log.info("run %s: %s", run.name, run.overrides)
        try:
            record = _execute(spec, run, cfg, run_dir, fingerprint)
        except Exception as err:  # a failed run is recorded, then reported or re-raised
            message = f"{type(err).__name__}: {err}"
            log.error("run %s failed: %s", run.name, message)
            atomic_write_json(
                run_dir / "error.json",
                {"run": run.name, "error": message, "traceback": traceback.format_exc()},
            )
            outcomes.append(RunOutcome(run, "failed", None, error=message))
            stop = not keep_going
            continue
        log.info(
            "finished %s in %.1fs: %s",
            run.name,
            record["seconds"],
            flatten_results(record["results"]),
        )
        outcomes.append(RunOutcome(run, "done", record["results"], record["seconds"]))
        tracker(run, record["results"], run_dir, fingerprint)
    return outcomes
