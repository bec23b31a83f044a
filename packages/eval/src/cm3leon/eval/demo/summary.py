"""Collect the demo's numbers from the artefacts its stages wrote (``<out>/summary.json``).

Nothing is recomputed here: every number is read from a file a public command wrote
(training ``metrics.jsonl``, tokenizer ``summary.json``, CLIP ``metrics.json``, the
ablation's ``results.csv``, the protocols' ``results.json``, ``cm3leon world score``
output), so the report shows exactly what the commands measured.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.io import read_json
from cm3leon.eval.demo.stages import Layout, Stage

__all__ = ["EQUAL_COMPUTE", "FLOOR_KEYS", "collect_summary", "figure_4", "floors", "training_curve",
           "training_series"]  # fmt: skip

#: The demo's seven floors (issue 15, "Floors for `cm3leon demo`"), in the report's order.
#: Every one is listed in ``summary.json`` ``floors``, with ``status`` ``"not run"`` where its
#: evaluation did not run, so a reader always sees all seven.
FLOOR_KEYS = ("text_to_image", "tail_retrieval", "cfg", "captioning", "vqa", "editing", "in_context")
T2I_METRIC = "object_acc"
T2I_OLD_METRIC = "colour_shape_acc"
#: Text-to-image: the world scorer's headline ``object_acc`` (precision-aware: extra objects
#: cost as much as missing ones) of the run fixed by :data:`T2I_HEADLINE` (never the best of
#: the matrix) >= this absolute value and >= this many times the run's own chance bound
#: (``baselines.chance.object_acc``).  The strongest of the run's baselines is reported
#: beside it as information; the old colour+shape measure is information only.
T2I_FLOOR = 0.5
T2I_CHANCE_TIMES = 5.0
#: The text-to-image run the floors are checked on, fixed in advance: CFG + top-p (the
#: paper's default decoding), zero-shot without retrieval.
T2I_HEADLINE = {"strategy": "top_p", "k": 0}
#: CFG: guidance minus no guidance (``no_cfg``) at k = 0, in standard errors of the difference.
CFG_SES = 2.0
#: Tail entities: the entity scorer's measures, and the retrieval floor -- on prompts naming
#: rare entities, the default strategy at the largest k minus k = 0, in standard errors.
TAIL_METRIC = "entity_cell_acc"
TAIL_METRICS = ("entity_cell_acc", "entity_match")
TAIL_RETRIEVAL_SES = 3.0
TAIL_STRATEGY = "top_p"
#: Captioning: CIDEr-D >= this many times the nearest-caption baseline's.
CAPTION_TIMES = 1.2
#: VQA: accuracy >= the per-question-type prior (``majority_per_question_type``) + this many
#: points (accuracies are percentages); the majority answer is reported as a second baseline.
VQA_POINTS = 10.0
#: Editing: success (the asked edit made, everything else kept) >= 0.3; returning the input
#: unchanged (the identity baseline) scores 0.
EDIT_FLOOR = 0.3
#: In-context use: with the target itself as the one retrieved document, object accuracy
#: reaches this fraction of the VQ ceiling and beats no context by this many SEs.
IN_CONTEXT_CEILING = 0.8
IN_CONTEXT_SES = 3.0


def _json(path: Path) -> Any:
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def training_series(metrics_jsonl: Path) -> dict[int, dict[str, float]]:
    """``{batch: {key: value}}`` of every finite number in a trainer's JSON-lines log."""
    series: dict[int, dict[str, float]] = {}
    try:
        lines = metrics_jsonl.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return series
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if not isinstance(row, dict) or not isinstance(row.get("batch"), int):
            continue
        values = {k: float(v) for k, v in row.items() if k != "batch" and isinstance(v, (int, float))
                  and not isinstance(v, bool) and math.isfinite(float(v))}  # fmt: skip
        series.setdefault(row["batch"], {}).update(values)
    return series


def training_curve(metrics_jsonl: Path, key: str = "loss/train/total") -> list[tuple[int, float]]:
    """``(batch, value)`` pairs of ``key`` in a trainer's JSON-lines log (a batch logged again
    after a resume counts once, with its last value)."""
    return [(b, v[key]) for b, v in sorted(training_series(metrics_jsonl).items()) if key in v]


def _training(run: Path) -> dict[str, Any]:
    curve = training_curve(run / "metrics.jsonl")
    if not curve:
        return {}
    head = [v for _, v in curve[: max(1, len(curve) // 20)]]
    tail = [v for _, v in curve[-max(1, len(curve) // 20) :]]
    out: dict[str, Any] = {"steps": curve[-1][0] + 1, "first_loss": sum(head) / len(head),
                           "last_loss": sum(tail) / len(tail)}  # fmt: skip
    for key in ("metrics/train/loss_text", "metrics/train/loss_image"):
        part = training_curve(run / "metrics.jsonl", key)
        if part:
            out[key.rsplit("/", 1)[-1] + "_last"] = sum(v for _, v in part[-5:]) / len(part[-5:])
    # Composer's counters: real (non-pad) tokens and examples trained on, and the steps
    # (the last row is logged after the final step: ``time/batch`` = steps taken).
    for key, name in (("time/token", "tokens"), ("time/sample", "examples"), ("time/batch", "batches")):
        counts = training_curve(run / "metrics.jsonl", key)
        if counts:
            out[name] = int(max(v for _, v in counts))
    return out


def _per_prompt(run_dir: Path, metric: str) -> dict[str, float | None]:
    """A world (or entity) metric of one text-to-image run by prompt id (``results.json``
    ``per_prompt``; None where the prompt has no such score)."""
    result = _json(run_dir / "results.json") or {}
    return {
        str(pid): _float({**(p.get("world") or {}), **(p.get("entity") or {})}.get(metric))
        for pid, p in (result.get("per_prompt") or {}).items()
    }


def _standard_error(run_dir: Path, metric: str) -> float | None:
    """Standard error over prompts of a world (or entity) metric of one text-to-image run."""
    return _mean_se(list(_per_prompt(run_dir, metric).values()))


def _mean_se(values: Sequence[float | None]) -> float | None:
    """Standard error of the mean of the numbers in ``values`` (None: fewer than two)."""
    found = [v for v in values if v is not None]
    if len(found) < 2:
        return None
    return statistics.stdev(found) / math.sqrt(len(found))


#: Per-item scores of the §4 protocols (``results.json``: the per-item mapping, the path to
#: the score in each item, the headline metric) the floors' standard errors are taken over.
_PER_ITEM = {"captioning": ("per_image", ("cider_d",), "cider_d"),
             "vqa": ("per_question", ("accuracy",), "accuracy"),
             "editing": ("per_sample", ("world", "success"), "success")}  # fmt: skip


def _ablation(folder: Path, metrics: Sequence[str] = (T2I_METRIC, T2I_OLD_METRIC)) -> dict[str, Any]:
    """Rows of an ablation's ``results.csv`` (numbers parsed, plus the headline's and the old
    accuracy's standard errors over prompts from each run's ``results.json``, and ``run_dir``,
    the run's folder) and its plots."""
    rows: list[dict[str, Any]] = []
    try:
        with open(folder / "results.csv", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows.append(
                    {k: (_float(v) if _float(v) is not None else v) for k, v in row.items()}
                )
    except FileNotFoundError:
        return {}
    for row in rows:
        row["run_dir"] = str(folder / "runs" / str(row.get("run")))  # per-prompt scores, for paired SEs
        for metric in metrics:
            row[f"{metric}_se"] = _standard_error(Path(row["run_dir"]), metric)
    return {"rows": rows, "plots": sorted(str(p) for p in folder.glob("plot-*.png")),
            "table": str(folder / "results.md")}  # fmt: skip


def _same(a: Any, b: Any) -> bool:
    """Axis labels equal as numbers (``0`` == ``0.0``) or else as strings."""
    fa, fb = _float(a), _float(b)
    return fa == fb if fa is not None and fb is not None else str(a) == str(b)


def _row(rows: Sequence[dict[str, Any]], **labels: Any) -> dict[str, Any] | None:
    """The first row whose axis labels match ``labels``."""
    return next((r for r in rows if all(_same(r.get(k), v) for k, v in labels.items())), None)


def _cell(rows: Sequence[dict[str, Any]], value: str, **labels: Any) -> float | None:
    row = _row(rows, **labels)
    return None if row is None else _float(row.get(value))


def _verdict(delta: float, se: float) -> str:
    """``better`` / ``worse`` beyond two standard errors of a difference, else ``unclear``."""
    return "better" if delta > 2 * se else "worse" if -delta > 2 * se else "unclear"


def _se_of_difference(row_a: dict[str, Any], row_b: dict[str, Any], metric: str) -> dict[str, Any]:
    """Standard error of ``b - a`` of ``metric`` between two runs on the same prompts.

    ``se_kind`` ``"paired"`` when both runs' per-prompt scores (``run_dir``'s ``results.json``)
    are keyed by the same prompt ids: the SE of the per-prompt differences ``b_i - a_i`` over
    the ``n`` prompts scored in both, so the prompt-to-prompt spread the runs share cancels.
    Otherwise ``"unpaired"``, sqrt(SE_a² + SE_b²) of the rows' own SEs (as if the runs were
    independent), with ``se_note`` saying why.  ``{}`` when neither can be had."""
    pa, pb = (_per_prompt(Path(r["run_dir"]), metric) if r.get("run_dir") else {} for r in (row_a, row_b))
    note = "no per-prompt results to pair"
    if pa and pb and pa.keys() != pb.keys():
        note = (f"the two runs' prompt sets differ ({len(pa)} and {len(pb)} prompts, "
                f"{len(pa.keys() & pb.keys())} shared)")  # fmt: skip
    elif pa and pb:
        diffs = [pb[p] - pa[p] for p in pa if pa[p] is not None and pb[p] is not None]
        se = _mean_se(diffs)
        if se is not None:
            return {"se": se, "se_kind": "paired", "n": len(diffs)}
        note = "fewer than two prompts scored in both runs"
    sa, sb = _float(row_a.get(f"{metric}_se")), _float(row_b.get(f"{metric}_se"))
    if sa is None or sb is None:
        return {}
    return {"se": math.sqrt(sa**2 + sb**2), "se_kind": "unpaired", "n": None, "se_note": note}


def _difference(rows: Sequence[dict[str, Any]], metric: str, a: dict[str, Any], b: dict[str, Any],
                names: tuple[str, str]) -> dict[str, Any] | None:  # fmt: skip
    """``b - a`` of ``metric`` between two matrix cells, with, for the accuracies, the standard
    error of the difference (:func:`_se_of_difference`: paired over the prompts) and a verdict:
    ``better``/``worse`` beyond two standard errors of the difference, else ``unclear``."""
    row_a, row_b = _row(rows, **a), _row(rows, **b)
    va, vb = (None if r is None else _float(r.get(metric)) for r in (row_a, row_b))
    if row_a is None or row_b is None or va is None or vb is None:
        return None
    out: dict[str, Any] = {names[0]: va, names[1]: vb, "delta": vb - va}
    if metric in (T2I_METRIC, T2I_OLD_METRIC, *TAIL_METRICS):
        out.update(_se_of_difference(row_a, row_b, metric))
        if "se" in out:
            out["verdict"] = _verdict(vb - va, out["se"])
    return out


def _t2i_findings(
    rows: Sequence[dict[str, Any]], accuracies: Sequence[str] = (T2I_METRIC, T2I_OLD_METRIC)
) -> dict[str, Any]:
    """Does retrieval (largest k vs 0) help, does CFG help, how do the other guided
    strategies (CD-K, combined) compare with top-p (Figure 4): differences read off the matrix."""
    ks = sorted({int(r["k"]) for r in rows if _float(r.get("k")) is not None})
    strategies = sorted({str(r["strategy"]) for r in rows if r.get("strategy")})
    out: dict[str, Any] = {"retrieval": {}, "cfg": {}, "decoding": {}}
    metrics = (*accuracies, "fid", "clip_score")

    def diffs(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> dict[str, Any]:
        found = {m: _difference(rows, m, a, b, names) for m in metrics}
        return {m: d for m, d in found.items() if d is not None}

    if ks and min(ks) == 0 and max(ks) > 0:
        for s in strategies:
            out["retrieval"][s] = diffs({"k": 0, "strategy": s}, {"k": max(ks), "strategy": s},
                                        ("k0", f"k{max(ks)}"))  # fmt: skip
    if "no_cfg" in strategies and "top_p" in strategies:
        for k in ks:
            out["cfg"][f"k{k}"] = diffs({"k": k, "strategy": "no_cfg"}, {"k": k, "strategy": "top_p"},
                                        ("no_cfg", "cfg"))  # fmt: skip
    others = [s for s in strategies if s not in ("top_p", "no_cfg")]
    if "top_p" in strategies and others:
        for k in ks:
            found = {s: diffs({"k": k, "strategy": "top_p"}, {"k": k, "strategy": s}, ("top_p", s))
                     for s in others}  # fmt: skip
            out["decoding"][f"k{k}"] = {s: d for s, d in found.items() if d}
    return out


def _evaluations(lay: Layout) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t2i = _ablation(lay.eval / "text_to_image")
    if t2i:
        t2i["findings"] = _t2i_findings(t2i["rows"])
        t2i["grids"] = {row["run"]: str(lay.eval / "text_to_image" / "runs" / str(row["run"]) / "samples.png")
                        for row in t2i["rows"] if row.get("run")}  # fmt: skip
        out["text_to_image"] = t2i
    tail = _ablation(lay.eval / "tail_to_image", TAIL_METRICS)
    if tail:
        tail["findings"] = _t2i_findings(tail["rows"], TAIL_METRICS)
        tail["grids"] = {row["run"]: str(lay.eval / "tail_to_image" / "runs" / str(row["run"]) / "samples.png")
                         for row in tail["rows"] if row.get("run")}  # fmt: skip
        out["tail_to_image"] = tail
    context = _ablation(lay.eval / "in_context")
    if context:
        out["in_context"] = context
    for name, metrics in (("plain_text_to_image", (T2I_METRIC, T2I_OLD_METRIC)), ("plain_tail_to_image", TAIL_METRICS)):
        plain = _ablation(lay.eval / name, metrics)
        if plain:
            plain["grids"] = {row["run"]: str(lay.eval / name / "runs" / str(row["run"]) / "samples.png")
                              for row in plain["rows"] if row.get("run")}  # fmt: skip
            out[name] = plain
    for name in ("captioning", "vqa", "editing"):
        result = _json(lay.eval / name / "results.json")
        if result is not None:
            result.pop("config", None)
            items, path, metric = _PER_ITEM[name]
            if isinstance(result.get(items), dict):  # over every item, before the examples are cut
                se = _mean_se([_num_at(item, *path) for item in result[items].values()])
                result["standard_errors"] = {metric: se}
            for key in ("per_image", "per_question", "per_sample", "per_prompt"):
                if isinstance(result.get(key), dict):  # keep the report small: a few examples
                    result[key] = dict(list(result[key].items())[:12])
            out[name] = result
    ceiling = {
        "reconstructions": _json(lay.eval / "vq_ceiling" / "reconstructions.json"),
        "originals": _json(lay.eval / "vq_ceiling" / "originals.json"),
        "reconstruct": _json(lay.eval / "vq_ceiling" / "reconstructions" / "summary.json"),
    }
    if any(v is not None for v in ceiling.values()):
        out["vq_ceiling"] = ceiling
    return out


#: What each ``baselines.<name>`` of a text-to-image run is, for the floor's label.
_T2I_BASELINES = {
    "chance": "chance bound of the prompts",
    "shuffled": "the run's images vs other prompts",
    "other_scene": "other scenes' renders",
    "mean_image": "the prompts' mean image",
}


def _strongest_baseline(row: dict[str, Any], metric: str) -> tuple[float | None, str]:
    """The largest ``baselines.<name>.<metric>`` of a results row, and its label."""
    found = [(value, name) for key in row if key.startswith("baselines.") and key.endswith(f".{metric}")
             for name in [key[len("baselines."):-len(metric) - 1]]
             for value in [_float(row[key])] if value is not None]  # fmt: skip
    if not found:
        return None, "no baseline in the results"
    value, name = max(found)
    return (
        value,
        f"{_T2I_BASELINES.get(name, name)} (strongest of {len(found)} measured in the run)",
    )


def _floor(key: str, name: str, definition: str, reason: str, **fields: Any) -> dict[str, Any]:
    """A floor entry, ``"not run"`` (``passed`` None, ``reason`` saying what is missing)
    until :func:`_judge` decides it; ``ratio`` is in ``ratio_unit`` (x, SE or points)."""
    entry: dict[str, Any] = {"key": key, "name": name, "definition": definition, "status": "not run",
                             "passed": None, "value": None, "se": None, "baseline": None, "baseline_name": None,
                             "ratio": None, "ratio_unit": None, "reason": reason}  # fmt: skip
    entry.update(fields)
    return entry


def _judge(entry: dict[str, Any], passed: bool) -> dict[str, Any]:
    entry.update(status="pass" if passed else "fail", passed=bool(passed), reason=None)
    return entry


def _se_floor(entry: dict[str, Any], diff: dict[str, Any] | None, names: tuple[str, str],
              ses: float) -> dict[str, Any]:  # fmt: skip
    """Judge ``diff`` (a :func:`_difference`, ``names[1] - names[0]``): positive and at least
    ``ses`` standard errors of the difference (its ``se_kind``, ``n`` and ``se_note`` copied
    along).  Left "not run" without a standard error."""
    if not diff:
        return entry
    entry.update(value=diff[names[1]], baseline=diff[names[0]], delta=diff["delta"], ratio_unit="SE")
    if diff.get("se") is None:
        entry["reason"] = "no standard error (no per-prompt results)"
        return entry
    entry.update(se=diff["se"], ratio=diff["delta"] / diff["se"] if diff["se"] else None,
                 **{k: diff[k] for k in ("se_kind", "n", "se_note") if k in diff})  # fmt: skip
    return _judge(entry, diff["delta"] > 0 and diff["delta"] >= ses * diff["se"])


def _t2i_floor(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Object accuracy of the run fixed by :data:`T2I_HEADLINE` (never the best of the
    matrix): absolute, and against the run's chance bound; its strongest baseline and the old
    colour+shape measure ride along as information."""
    entry = _floor("text_to_image", "text-to-image object accuracy (headline, precision-aware; k = 0, CFG + top-p)",
                   f"object accuracy >= {T2I_FLOOR:g} and >= {T2I_CHANCE_TIMES:g}x the run's chance bound",
                   "no text-to-image run with CFG + top-p at k = 0", ratio_unit="x",
                   baseline_name="chance bound of the prompts (baselines.chance.object_acc)")  # fmt: skip
    row = next((r for r in rows if all(_same(r.get(k), v) for k, v in T2I_HEADLINE.items())), None)
    value = _float(row.get(T2I_METRIC)) if row else None
    if row is None or value is None:
        return entry
    chance = _float(row.get(f"baselines.chance.{T2I_METRIC}"))
    strongest, strongest_name = _strongest_baseline(row, T2I_METRIC)
    entry.update(value=value, se=_float(row.get(f"{T2I_METRIC}_se")), baseline=chance,
                 ratio=value / chance if chance else None, strongest_baseline=strongest,
                 strongest_baseline_name=strongest_name,
                 old_measure={"name": "colour+shape accuracy (recall only; information, not a floor)",
                              "value": _float(row.get(T2I_OLD_METRIC)),
                              "chance": _float(row.get(f"baselines.chance.{T2I_OLD_METRIC}"))})  # fmt: skip
    if chance is None:
        entry["reason"] = "the run measured no chance bound"
        return entry
    return _judge(entry, value >= T2I_FLOOR and value >= T2I_CHANCE_TIMES * chance)


def _tail_floor(tail: dict[str, Any]) -> dict[str, Any]:
    """Retrieval on tail entities: k = max minus k = 0 of the default strategy, in SEs."""
    diff = ((tail.get("findings") or {}).get("retrieval", {}).get(TAIL_STRATEGY) or {}).get(TAIL_METRIC)
    k_max = next((k for k in diff or {} if k.startswith("k") and k != "k0"), "k2")
    entry = _floor("tail_retrieval", f"retrieval on tail entities: mosaic cells right, {k_max} minus k0 "
                   f"({TAIL_STRATEGY})", f"k = {k_max[1:]} (the largest k) minus k = 0 >= {TAIL_RETRIEVAL_SES:g} "
                   "SE of the difference, positive", "no tail-entity evaluation (world.entity_docs = 0, "
                   "tail_to_image off, or no top_p run at k = 0 and k > 0)",
                   baseline_name="k = 0 (no retrieval), same prompts")  # fmt: skip
    return _se_floor(entry, diff, ("k0", k_max), TAIL_RETRIEVAL_SES)


def _cfg_floor(t2i: dict[str, Any]) -> dict[str, Any]:
    """Guidance (CFG + top-p) minus no guidance (``no_cfg``) at k = 0, in SEs."""
    diff = (((t2i.get("findings") or {}).get("cfg", {}).get("k0")) or {}).get(T2I_METRIC)
    entry = _floor("cfg", "CFG: object accuracy with guidance (CFG + top-p) minus without (no_cfg), k = 0",
                   f"guidance minus no guidance at k = 0 >= {CFG_SES:g} SE of the difference, positive",
                   "no top_p and no_cfg runs at k = 0 in the text-to-image matrix",
                   baseline_name="no guidance (no_cfg), same prompts")  # fmt: skip
    return _se_floor(entry, diff, ("no_cfg", "cfg"), CFG_SES)


def _sft_floors(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """Captioning, VQA and editing (§4), each against its no-model baseline."""
    cap, vqa, edit = (ev.get(n) or {} for n in ("captioning", "vqa", "editing"))
    out = [_floor("captioning", "caption CIDEr-D", f"CIDEr-D >= {CAPTION_TIMES:g}x the nearest-caption baseline",
                  "no captioning results with CIDEr-D and the nearest-caption baseline", ratio_unit="x",
                  baseline_name="nearest caption (no model)"),
           _floor("vqa", "VQA accuracy (%)", f"accuracy >= the per-question-type prior + {VQA_POINTS:g} points",
                  "no VQA results with accuracy and the per-question-type prior", ratio_unit="points",
                  baseline_name="per-question-type prior (the majority answer of each question type)"),
           _floor("editing", "editing success", f"success >= {EDIT_FLOOR:g} (absolute)",
                  "no editing results with success", baseline_name="identity (the input image returned)")]  # fmt: skip
    cider, near = _num_at(cap, "metrics", "cider_d"), _num_at(cap, "baselines", "nearest_caption", "cider_d")
    if cider is not None and near is not None:
        out[0].update(value=cider, se=_num_at(cap, "standard_errors", "cider_d"), baseline=near,
                      ratio=cider / near if near else None)  # fmt: skip
        _judge(out[0], cider >= CAPTION_TIMES * near)
    acc, prior = _num_at(vqa, "metrics", "accuracy"), _num_at(vqa, "baselines", "majority_per_question_type", "accuracy")
    if acc is not None and prior is not None:
        answer = _dig(vqa, "baselines", "majority", "answer")
        out[1].update(value=acc, se=_num_at(vqa, "standard_errors", "accuracy"), baseline=prior, ratio=acc - prior,
                      second_baseline=_num_at(vqa, "baselines", "majority", "accuracy"),
                      second_baseline_name=f"majority answer ({answer!r})" if answer else "majority answer")  # fmt: skip
        _judge(out[1], acc >= prior + VQA_POINTS)
    success = _num_at(edit, "metrics", "success")
    if success is not None:
        out[2].update(value=success, se=_num_at(edit, "standard_errors", "success"),
                      baseline=_num_at(edit, "baselines", "identity", "success"))  # fmt: skip
        _judge(out[2], success >= EDIT_FLOOR)
    return out


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _num_at(data: Any, *path: str) -> float | None:
    return _float(_dig(data, *path))


def _in_context_floor(rows: Sequence[dict[str, Any]], ceiling: float | None) -> dict[str, Any]:
    """The target itself in context vs nothing (in SEs of the difference), and vs the VQ
    ceiling; another document in context is the control, reported beside it."""
    entry = _floor("in_context", "in-context use: object accuracy with the target itself as the retrieved "
                   "document (oracle), minus no context", f"oracle >= {IN_CONTEXT_CEILING:g}x the VQ ceiling and "
                   f"oracle minus no context >= {IN_CONTEXT_SES:g} SE of the difference, positive",
                   "no in_context evaluation (context: none and own)", ceiling=ceiling,
                   baseline_name="no document in context (k = 0), same prompts",
                   control=_cell(rows, T2I_METRIC, context="other"),
                   control_name="another test document in context (the control)")  # fmt: skip
    diff = _difference(rows, T2I_METRIC, {"context": "none"}, {"context": "own"}, ("none", "own"))
    _se_floor(entry, diff, ("none", "own"), IN_CONTEXT_SES)
    if entry["passed"] is not None and ceiling is None:
        entry.update(status="not run", passed=None, reason="no VQ ceiling measured (vq_ceiling stage)")
    elif entry["passed"] is not None:
        _judge(entry, entry["passed"] and entry["value"] >= IN_CONTEXT_CEILING * ceiling)
    return entry


def floors(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's seven floors, in :data:`FLOOR_KEYS` order: ``key``, ``name``,
    ``definition``, ``value``, ``se``, ``baseline`` and ``baseline_name``, ``ratio`` (in
    ``ratio_unit``), ``status`` (``pass`` / ``fail`` / ``not run``, with a ``reason``) and
    ``passed`` (None when not run)."""
    ev = summary.get("evaluations", {})
    t2i = ev.get("text_to_image") or {}
    recon = (ev.get("vq_ceiling") or {}).get("reconstructions") or {}
    checks = [_t2i_floor(t2i.get("rows", [])), _tail_floor(ev.get("tail_to_image") or {}), _cfg_floor(t2i),
              *_sft_floors(ev), _in_context_floor((ev.get("in_context") or {}).get("rows", []),
                                                  _float((recon.get("scores") or {}).get(T2I_METRIC)))]  # fmt: skip
    assert [c["key"] for c in checks] == list(FLOOR_KEYS)
    return checks


#: Figure 4's strategies at k = 0 (the text-to-image matrix's names) and the pairs compared.
FIGURE_4 = ("top_p", "cd_k", "combined")
_FIGURE_4_PAIRS = (("top_p", "cd_k"), ("top_p", "combined"), ("cd_k", "combined"))


def figure_4(summary: dict[str, Any]) -> dict[str, Any]:
    """Figure 4 at k = 0, reported whatever the outcome: object accuracy ± SE of CFG + top-p,
    CD-K and the two combined, and each pair's difference (``b - a`` with its SE and verdict,
    by :func:`_difference`); a strategy (or pair) that did not run is ``None``."""
    rows = (summary.get("evaluations", {}).get("text_to_image") or {}).get("rows", [])
    strategies: dict[str, Any] = {}
    for s in FIGURE_4:
        value = _cell(rows, T2I_METRIC, k=0, strategy=s)
        strategies[s] = None if value is None else {"value": value,
                                                    "se": _cell(rows, f"{T2I_METRIC}_se", k=0, strategy=s)}  # fmt: skip
    differences = {f"{b} - {a}": _difference(rows, T2I_METRIC, {"k": 0, "strategy": a}, {"k": 0, "strategy": b},
                                             (a, b)) for a, b in _FIGURE_4_PAIRS}  # fmt: skip
    return {"k": 0, "metric": T2I_METRIC, "strategies": strategies, "differences": differences}


#: Retrieval-augmented vs plain pretraining at equal compute: what "equal" means here.
EQUAL_COMPUTE = ("the same number of real (non-pad) training tokens (Composer's time/token) through the "
                 "same model at the same seq_len; both runs stop at the first step that reaches the "
                 "token budget, so they may differ by up to one step's tokens")  # fmt: skip


def _compute(ra: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """Both runs' training tokens, steps and examples, and whether the tokens agree to one step."""
    out: dict[str, Any] = {"definition": EQUAL_COMPUTE,
                           "retrieval_augmented": {k: ra.get(k) for k in ("tokens", "batches", "examples")},
                           "plain": {k: plain.get(k) for k in ("tokens", "batches", "examples")}}  # fmt: skip
    steps = [t["tokens"] / t["batches"] for t in (ra, plain) if t.get("tokens") and t.get("batches")]
    if len(steps) == 2:
        out["tolerance_tokens"] = max(steps)
        out["ratio"] = plain["tokens"] / ra["tokens"]
        out["equal"] = abs(ra["tokens"] - plain["tokens"]) <= max(steps)
    else:
        out["equal"] = None  # a run left no token counts: not checked
    return out


def _ra_vs_plain(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The paper's efficiency claim: the retrieval-augmented model (at k = 0, and with its
    retrieval at the largest k) minus the plain model at k = 0, on the same prompts with the
    same decoding, head and tail; ``None`` when no plain model was evaluated."""
    ev = summary.get("evaluations", {})
    if "plain_text_to_image" not in ev and "plain_tail_to_image" not in ev:
        return None
    comparisons = []
    for prompts, name, metric in (("head", "text_to_image", T2I_METRIC), ("tail", "tail_to_image", TAIL_METRIC)):
        ra_rows = ev.get(name, {}).get("rows", [])
        ks = sorted({int(r["k"]) for r in ra_rows if _float(r.get("k")) is not None})
        for row in ev.get(f"plain_{name}", {}).get("rows", []):
            strategy, plain = str(row.get("strategy")), _float(row.get(metric))
            for k in dict.fromkeys([0, ks[-1]] if ks and ks[0] == 0 else []):  # weights alone; with retrieval
                ra_row = _row(ra_rows, k=k, strategy=strategy)
                ra = None if ra_row is None else _float(ra_row.get(metric))
                if ra_row is None or ra is None or plain is None:
                    continue
                entry: dict[str, Any] = {"prompts": prompts, "metric": metric, "strategy": strategy, "ra_k": k,
                                         "retrieval_augmented": ra, "plain": plain, "delta": ra - plain,
                                         **_se_of_difference(row, ra_row, metric)}  # fmt: skip
                if "se" in entry:
                    entry["verdict"] = _verdict(ra - plain, entry["se"])
                comparisons.append(entry)
    return {"compute": _compute(summary.get("pretrain") or {}, summary.get("plain_pretrain") or {}),
            "comparisons": comparisons}  # fmt: skip


def _stages(lay: Layout, stages: Sequence[Stage]) -> list[dict[str, Any]]:
    rows = []
    for stage in stages:
        record = _json(lay.stages / f"{stage.name}.json") or {}
        rows.append({
            "name": stage.name, "title": stage.title, "status": record.get("status", "not run"),
            "seconds": record.get("seconds"), "step_seconds": record.get("step_seconds", {}),
            "commands": [s.command_line for s in stage.steps],
            "configs": [str(p) for p in stage.configs], "log": str(lay.logs / f"{stage.name}.log"),
            "artefacts": {k: str(p) for k, p in stage.artefacts.items()},
        })  # fmt: skip
    return rows


def collect_summary(out: Path, stages: Sequence[Stage], outcomes: Sequence[Any] = (),
                    *, wall_seconds: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Everything the report shows, as one JSON-serialisable mapping."""
    lay = Layout(out)
    world = _json(lay.world / "world.json") or {}
    summary: dict[str, Any] = {
        "out": str(out),
        "wall_seconds": wall_seconds,
        "this_invocation": {o.name: {"status": o.status, "seconds": round(o.seconds, 2)} for o in outcomes},
        "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "stages": _stages(lay, stages),
        "world": {"params": world.get("params"), "formats": world.get("formats")},
        "image_tokenizer": _json(lay.image_run / "summary.json"),
        "clip": (_json(lay.clip_run / "metrics.json") or {}).get("eval"),
        "pretrain": _training(lay.run("pretrain")),
        "sft": _training(lay.run("sft")),
        "evaluations": _evaluations(lay),
    }  # fmt: skip
    plain = _training(lay.run("plain_pretrain"))
    if plain:
        summary["plain_pretrain"] = plain
    comparison = _ra_vs_plain(summary)
    if comparison is not None:
        summary["ra_vs_plain"] = comparison
    summary["figure_4"] = figure_4(summary)
    summary["floors"] = floors(summary)
    from cm3leon.eval.demo.claims import paper_claims

    summary["claims"] = paper_claims(summary)
    return summary
