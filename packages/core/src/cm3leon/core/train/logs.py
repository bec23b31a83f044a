"""Metrics as JSON lines (one object per batch) and their plots.

``metrics.jsonl`` holds one line per Composer batch index ``batch`` (the number of
batches completed when the values were logged: the training loss of the first batch is
logged at ``batch: 0``)::

    {"batch": 0, "loss/train/total": 10.41, "metrics/train/loss_image": 10.43, ...}

Only global rank 0 writes.  On resumption the lines of batches at or after the resumed
batch (written by the attempt that crashed after its last checkpoint) are dropped first,
atomically, so the file is always the history of the run as it continued.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from composer.core import State
from composer.loggers import Logger, LoggerDestination
from composer.utils import dist

from cm3leon.core.io import atomic_write_text

__all__ = ["DEFAULT_CURVES", "JSONLLogger", "plot_metrics", "read_metrics"]

DEFAULT_CURVES = (
    "loss/train/total",
    "metrics/train/loss_text",
    "metrics/train/loss_image",
    "metrics/eval/loss_all",
)


def _number(value: Any) -> float | int | None:
    if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    return None


class JSONLLogger(LoggerDestination):
    """Composer logger destination writing ``metrics.jsonl``.

    Args:
        path: the file (created with its parent directory).
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._batch: int | None = None
        self._row: dict[str, Any] = {}
        self._fh: Any = None

    # ---------------------------------------------------------------- events
    def fit_start(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        resumed_at = int(state.timestamp.batch)
        if self.path.exists():
            keep = [r for r in read_metrics(self.path) if r.get("batch", -1) < resumed_at]
            atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if dist.get_global_rank() != 0 or step is None:
            return
        if self._batch is not None and step != self._batch:
            self._flush()
        self._batch = step
        for key, value in metrics.items():
            number = _number(value)
            if number is not None:
                self._row[key] = number

    def batch_end(self, state: State, logger: Logger) -> None:
        # Everything of batch k is logged (at step k) before BATCH_END; writing it now puts
        # it on disk before the checkpoint of this batch, so a resumed run never lacks it.
        if self._batch is not None and self._batch < int(state.timestamp.batch):
            self._flush()

    def fit_end(self, state: State, logger: Logger) -> None:
        self._flush()
        if self._fh is not None:
            self._fh.flush()

    def close(self, state: State, logger: Logger) -> None:
        self._flush()
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _flush(self) -> None:
        if self._fh is None or self._batch is None or not self._row:
            return
        row: dict[str, Any] = {"batch": self._batch}
        for key, value in self._row.items():
            if isinstance(value, float) and not math.isfinite(value):
                row[key] = None  # NaN/inf are not JSON: null, plus the raw value as a string
                row[f"{key}#nonfinite"] = str(value)
            else:
                row[key] = value
        self._fh.write(json.dumps(row, sort_keys=True) + "\n")
        self._fh.flush()
        self._row, self._batch = {}, None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl``; a torn last line (a crash mid-write) is ignored."""
    rows: list[dict[str, Any]] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {n + 1} is not valid JSON") from None
    return rows


def series(rows: Iterable[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """``(batches, values)`` of one metric (rows without it are skipped)."""
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)):
            xs.append(int(row["batch"]))
            ys.append(float(value))
    return xs, ys


def plot_metrics(jsonl: str | Path, png: str | Path, *, keys: Sequence[str] = DEFAULT_CURVES,
                 title: str | None = None) -> Path:
    """Plot the given metrics of ``jsonl`` against the batch index into ``png`` (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(jsonl)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    drawn = 0
    for key in keys:
        xs, ys = series(rows, key)
        if xs:
            ax.plot(xs, ys, label=key, linewidth=1.4)
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError(f"{jsonl}: none of the metrics {list(keys)} was logged")
    ax.set_xlabel("batch")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(title or Path(jsonl).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(png)
    return png
