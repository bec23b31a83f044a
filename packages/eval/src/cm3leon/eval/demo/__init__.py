"""``cm3leon demo``: the whole paper, end to end, on the built-in procedural world.

::

    world -> text BPE -> VQ tokenizer -> small CLIP -> FAISS bank -> retrieval-augmented
    shards -> CM3 pretraining (Composer) -> SFT mixture -> fine-tuning -> evaluation
    (text-to-image k x strategy, VQ ceiling, captioning, VQA, editing) -> report.html

Every stage is one or more of the packages' public commands (:mod:`.stages`), cached and
resumable (:mod:`.runner`); the report (:mod:`.report`) is a self-contained HTML page
with relative links to every artefact.

Python API::

    from cm3leon.eval.demo import load_demo_config, run_demo
    result = run_demo(load_demo_config(quick=True, overrides=["out=/tmp/demo"]))
    result.report          # Path of report.html
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cm3leon.eval.demo.config import (
    LONG_PRESET,
    PRESETS,
    QUICK_PRESET,
    DemoConfig,
    demo_config,
    load_demo_config,
)
from cm3leon.eval.demo.runner import DemoError, StageOutcome, run_stages
from cm3leon.eval.demo.stages import Layout, Stage, Step, build_stages

__all__ = [
    "LONG_PRESET",
    "PRESETS",
    "QUICK_PRESET",
    "DemoConfig",
    "DemoError",
    "DemoResult",
    "Layout",
    "Stage",
    "StageOutcome",
    "Step",
    "build_stages",
    "demo_config",
    "load_demo_config",
    "run_demo",
]


@dataclass
class DemoResult:
    """What :func:`run_demo` did: the stages (cached / ran / resumed) and the report."""

    out: Path
    outcomes: list[StageOutcome] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


def _quiet_threads() -> None:
    # Spinning OpenMP waits make small CPU kernels far slower on a shared machine (the
    # tokenizers package measured ~10x); only effective before torch loads libgomp.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_demo(cfg: DemoConfig, *, stop_after: str | None = None, progress: bool = True,
             dry_run: bool = False) -> DemoResult:  # fmt: skip
    """Run (or resume) the demo described by ``cfg`` and write ``<out>/report.html``.

    Args:
        cfg: the demo config (:func:`load_demo_config`).
        stop_after: stop after this stage (no report unless it is the last one).
        progress: show the live progress display (stage lines are printed either way).
        dry_run: validate and write the stage configs and ``commands.sh`` only.

    Raises:
        ConfigError: a stage config is invalid (before anything runs).
        DemoError: a stage failed (finished stages stay cached; re-running resumes).
    """
    from cm3leon.core.config import save_config
    from cm3leon.core.io import atomic_write_text
    from cm3leon.eval.demo.display import Display
    from cm3leon.eval.demo.runner import (
        commands_script,
        validate_stage_configs,
        write_stage_configs,
    )
    from cm3leon.eval.demo.tracking import log_demo, open_demo_trackers

    _quiet_threads()
    out = Path(cfg.out).resolve()
    trackers = open_demo_trackers(cfg.trackers, out)  # validated before anything runs
    stages = build_stages(cfg, Layout(out))
    validate_stage_configs(stages)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "demo.yaml")
    result = DemoResult(out)
    if dry_run:
        for stage in stages:
            write_stage_configs(stage, out)
        atomic_write_text(out / "commands.sh", commands_script(stages))
        return result
    start = time.monotonic()
    with Display(stages, live=progress) as display:
        result.outcomes = run_stages(stages, out, stop_after=stop_after, report=display)
        if stop_after is None or stop_after == stages[-1].name:
            from cm3leon.eval.demo.report import render_report

            result.seconds = time.monotonic() - start
            result.report = render_report(out, stages, result.outcomes, wall_seconds=result.seconds)
            display.print(f"[bold green]report:[/] {result.report}")
        logged = log_demo(trackers, stages, result.outcomes, out)
        if logged:
            names = ", ".join(dict.fromkeys(line.split(":", 1)[0] for line in logged))
            display.print(f"[bold green]trackers:[/] {len(logged)} runs logged ({names})")
    result.seconds = time.monotonic() - start
    return result
