"""Results of an ablation as tables (Markdown + CSV) and line plots (PNG).

* ``results.md`` / ``results.csv`` — one row per run: run name, status, every axis label and
  every scalar result (nested results flattened to dotted keys).
* one pivot table per ``report.tables`` entry — Table 1's shape: rows = one axis (e.g. the
  model), columns = another (e.g. retrieval k), cells = a result (e.g. ``fid``); appended to
  ``results.md`` and written as ``table-<value>-<rows>-x-<columns>.csv``;
* one PNG per ``report.plots`` entry — Figure 4's shapes: ``y`` against axis ``x``, one line
  per label of axis ``series`` (FID vs CFG weight per model; FID vs #samples per strategy).

Axes that a table or plot does not mention and ``where`` does not fix, but which take
several values among the runs, split it into one table/plot per combination (a facet),
named by the fixed values.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.io import atomic_write_bytes, atomic_write_text
from cm3leon.eval.ablation.spec import Axis, PlotConfig, ReportConfig, TableConfig

__all__ = ["flatten_results", "render_markdown_table", "write_report"]


def flatten_results(results: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of a nested results mapping, with dotted keys (lists are skipped)."""
    out: dict[str, Any] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_results(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
    return out


def _fmt(value: Any, precision: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{precision}f}"
    return str(value)


def render_markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], precision: int = 2
) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = [
        "| " + " | ".join(str(h) for h in header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(v, precision).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x"


def _facets(
    rows: Sequence[Mapping[str, Any]],
    axes: Sequence[Axis],
    used: set[str],
    where: Mapping[str, Any],
) -> list[tuple[dict[str, Any], list[Mapping[str, Any]]]]:
    """Split ``rows`` (filtered by ``where``) by the labels of the axes not in ``used``."""
    for axis_name in where:
        if axis_name not in {a.name for a in axes}:
            raise ValueError(f"report 'where' names unknown axis {axis_name!r}")
    kept = [r for r in rows if all(str(r[k]) == str(v) for k, v in where.items())]
    free = [a for a in axes if a.name not in used and a.name not in where]
    groups: dict[tuple[str, ...], tuple[dict[str, Any], list[Mapping[str, Any]]]] = {}
    for row in kept:
        key = tuple(str(row[a.name]) for a in free)
        groups.setdefault(key, ({a.name: row[a.name] for a in free} | dict(where), []))[1].append(
            row
        )
    order = {a.name: a for a in axes}
    return sorted(
        groups.values(),
        key=lambda g: tuple(
            order[k].index(v) for k, v in g[0].items() if k in order and k not in where
        ),
    )


def _check_axis(name: str | None, axes: Sequence[Axis], what: str) -> None:
    if name is not None and name not in {a.name for a in axes}:
        raise ValueError(
            f"report {what} {name!r} is not a matrix axis; axes: {[a.name for a in axes]}"
        )


def _pivot(
    rows: Sequence[Mapping[str, Any]],
    axes: Sequence[Axis],
    table: TableConfig,
    out_dir: Path,
    precision: int,
) -> tuple[str, list[Path]]:
    _check_axis(table.rows, axes, "table rows")
    _check_axis(table.columns, axes, "table columns")
    by_name = {a.name: a for a in axes}
    row_axis, col_axis = by_name[table.rows], by_name[table.columns]
    text, paths = [], []
    for fixed, group in _facets(rows, axes, {table.rows, table.columns}, table.where):
        cells = {(str(r[table.rows]), str(r[table.columns])): r.get(table.value) for r in group}
        header = [f"{table.rows} \\ {table.columns}"] + [str(c) for c in col_axis.labels]
        body = [
            [str(lab)] + [cells.get((str(lab), str(c))) for c in col_axis.labels]
            for lab in row_axis.labels
            if any((str(lab), str(c)) in cells for c in col_axis.labels)
        ]
        suffix = ", ".join(f"{k}={v}" for k, v in fixed.items())
        title = table.title or f"{table.value} ({table.rows} × {table.columns})"
        text.append(
            f"### {title}{' — ' + suffix if suffix else ''}\n\n"
            + render_markdown_table(header, body, precision)
        )
        stem = f"table-{table.value}-{table.rows}-x-{table.columns}" + (
            f"-{suffix}" if suffix else ""
        )
        paths.append(atomic_write_text(out_dir / f"{_slug(stem)}.csv", _csv(header, body)))
    return "\n".join(text), paths


def _numeric(labels: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels)


def _plot(
    rows: Sequence[Mapping[str, Any]], axes: Sequence[Axis], plot: PlotConfig, out_dir: Path
) -> list[Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    _check_axis(plot.x, axes, "plot x")
    _check_axis(plot.series, axes, "plot series")
    by_name = {a.name: a for a in axes}
    x_axis = by_name[plot.x]
    numeric = _numeric(x_axis.labels)
    series_labels = by_name[plot.series].labels if plot.series else (None,)
    paths = []
    used = {plot.x} | ({plot.series} if plot.series else set())
    for fixed, group in _facets(rows, axes, used, plot.where):
        fig = Figure(figsize=(5.5, 4.0), dpi=120)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        drawn = 0
        for s in series_labels:
            pts = []
            for r in group:
                y = r.get(plot.y)
                if (s is not None and str(r[plot.series]) != str(s)) or not isinstance(
                    y, (int, float)
                ):
                    continue
                pts.append((x_axis.index(r[plot.x]), r[plot.x], float(y)))
            if not pts:
                continue
            pts.sort()
            xs = [p[1] if numeric else p[0] for p in pts]
            ax.plot(
                xs,
                [p[2] for p in pts],
                marker="o",
                label=None if s is None else f"{plot.series}={s}",
            )
            drawn += 1
        ax.set_xscale("log" if plot.logx else "linear")
        # Ticks at the matrix values, labelled as written in the ablation file.
        ticks = list(x_axis.labels) if numeric else list(range(len(x_axis.labels)))
        ax.set_xticks(ticks, [str(v) for v in x_axis.labels])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("log" if plot.logy else "linear")
        ax.set_xlabel(plot.x)
        ax.set_ylabel(plot.y)
        suffix = ", ".join(f"{k}={v}" for k, v in fixed.items())
        ax.set_title(
            (plot.title or f"{plot.y} vs {plot.x}") + (f"\n{suffix}" if suffix else ""), fontsize=10
        )
        ax.grid(True, alpha=0.3)
        if plot.series and drawn:
            ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        stem = plot.file or f"plot-{plot.y}-vs-{plot.x}" + (
            f"-by-{plot.series}" if plot.series else ""
        )
        stem = Path(stem).stem + (f"-{suffix}" if suffix else "")
        paths.append(atomic_write_bytes(out_dir / f"{_slug(stem)}.png", buf.getvalue()))
    return paths


def write_report(
    name: str,
    axes: Sequence[Axis],
    rows: Sequence[Mapping[str, Any]],
    report: ReportConfig,
    out_dir: Path,
) -> list[Path]:
    """Write ``results.md``/``results.csv``, the pivot tables and the plots; return their paths.

    ``rows`` hold ``run``, ``status``, one key per axis (its label) and flattened results.
    """
    fixed = ["run", "status"] + [a.name for a in axes]
    metrics = sorted({k for row in rows for k in row if k not in fixed})  # stable across resumes
    header = fixed + metrics
    body = [[row.get(k) for k in header] for row in rows]
    paths = [atomic_write_text(out_dir / "results.csv", _csv(header, body))]
    sections = [f"# Ablation: {name}\n", render_markdown_table(header, body, report.precision)]
    done = [r for r in rows if r.get("status") in ("done", "skipped")]
    for table in report.tables:
        text, csvs = _pivot(done, axes, table, out_dir, report.precision)
        sections.append(text)
        paths.extend(csvs)
    for plot in report.plots:
        paths.extend(_plot(done, axes, plot, out_dir))
    paths.insert(0, atomic_write_text(out_dir / "results.md", "\n".join(sections)))
    return paths
