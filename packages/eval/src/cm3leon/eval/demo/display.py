"""The demo's terminal display: one rich progress bar over the stages, plus the last line
the running command wrote to its log (its own progress bar, loss, ...)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cm3leon.eval.demo.runner import last_line
from cm3leon.eval.demo.stages import Stage, Step

__all__ = ["Display"]


class Display:
    """``report`` callback of :func:`cm3leon.eval.demo.runner.run_stages` drawing with rich.

    The console writes to a duplicate of the terminal's stderr taken at construction, so it
    keeps drawing while the stages' own output is redirected into their log files.  With
    ``live=False`` only the one-line stage messages are printed (no live progress bar).
    """

    def __init__(self, stages: list[Stage], *, live: bool = True) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.text import Text

        display = self

        class _Tail(ProgressColumn):
            def render(self, task: Any) -> Text:
                text = last_line(display.log) if display.log else ""
                return Text(text[-70:], style="dim", no_wrap=True)

        self.log: Path | None = None
        self._started: dict[str, float] = {}
        self._stream = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")
        self.console = Console(file=self._stream, soft_wrap=True)
        self.live = live
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description:<16}"), BarColumn(bar_width=24),
            MofNCompleteColumn(), TimeElapsedColumn(), _Tail(),
            console=self.console, redirect_stdout=False, redirect_stderr=False, transient=True,
        )  # fmt: skip
        self.task = self.progress.add_task("demo", total=len(stages))

    def __enter__(self) -> Display:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.progress.stop()
        self._stream.flush()
        self._stream.close()

    def print(self, message: str) -> None:
        self.console.print(message)

    def __call__(self, event: str, stage: Stage, step: Step | None, log_path: Path) -> None:
        if event == "cached":
            self.print(f"[green]✓[/] {stage.name:<16} cached    [dim]{stage.title}[/]")
            self.progress.advance(self.task)
        elif event == "step":
            assert step is not None
            self.log = log_path
            self._started.setdefault(stage.name, time.monotonic())
            self.progress.update(self.task, description=f"{stage.name}:{step.name}")
            self.print(f"  [cyan]$[/] {step.command_line}")
        elif event == "done":
            self.log = None
            seconds = time.monotonic() - self._started.get(stage.name, time.monotonic())
            self.print(f"[green]✓[/] {stage.name:<16} {seconds:6.1f} s  [dim]{stage.title} (log: {log_path})[/]")
            self.progress.advance(self.task)
