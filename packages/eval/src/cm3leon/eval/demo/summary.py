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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.io import read_json
from cm3leon.eval.demo.stages import Layout, Stage

__all__ = ["EQUAL_COMPUTE", "collect_summary", "floors", "training_curve", "training_series"]

#: Quality floors of the demo (issue: "must show"), as ratios to a baseline.
#: Text-to-image: the world scorer's headline ``object_acc`` (precision-aware: extra objects
#: cost as much as missing ones) >= 3x the strongest baseline of the *same run* -- the
#: largest of its ``baselines.*.object_acc``: the chance bound of its prompts (no image made
#: without reading the prompt expects more), its own images against other prompts, other
#: scenes' renders, the prompts' mean image.
T2I_FLOOR = 3.0
#: The old text-to-image measure, kept beside the headline for comparison: colour+shape
#: accuracy (recall only, blind to extra objects) >= 3x its chance (1/24).
T2I_OLD_FLOOR = 3.0
T2I_METRIC = "object_acc"
T2I_OLD_METRIC = "colour_shape_acc"
VQA_FLOOR = 2.0  # VQA accuracy >= 2x the majority-answer baseline
#: The text-to-image run the floor is checked on, fixed in advance (the paper's default
#: decoding, zero-shot without retrieval) rather than the best of the matrix.
T2I_HEADLINE = {"strategy": "top_p", "k": 0}
#: Tail entities (issue 15): the entity scorer's measures, and the retrieval floor -- on
#: prompts naming rare entities, the default strategy with the most retrieved documents
#: beats k = 0 by at least this many standard errors of the difference.
TAIL_METRIC = "entity_cell_acc"
TAIL_METRICS = ("entity_cell_acc", "entity_match")
TAIL_RETRIEVAL_SES = 3.0
TAIL_STRATEGY = "top_p"
#: In-context use (issue 15): with the target itself as the one retrieved document, object
#: accuracy reaches this fraction of the VQ ceiling and beats no context by this many SEs.
IN_CONTEXT_CEILING = 0.8
IN_CONTEXT_SES = 3.0
#: Editing (issue 15): success (the asked edit made, everything else kept) >= 0.3; returning
#: the input unchanged scores 0.
EDIT_FLOOR = 0.3


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


def _standard_error(run_dir: Path, metric: str) -> float | None:
    """Standard error over prompts of a world (or entity) metric of one text-to-image run."""
    result = _json(run_dir / "results.json") or {}
    values = [
        _float({**(p.get("world") or {}), **(p.get("entity") or {})}.get(metric))
        for p in (result.get("per_prompt") or {}).values()
    ]
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return math.sqrt(var / len(values))


def _ablation(folder: Path, metrics: Sequence[str] = (T2I_METRIC, T2I_OLD_METRIC)) -> dict[str, Any]:
    """Rows of an ablation's ``results.csv`` (numbers parsed, plus the headline's and the old
    accuracy's standard errors over prompts from each run's ``results.json``) and its plots."""
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
        for metric in metrics:
            row[f"{metric}_se"] = _standard_error(folder / "runs" / str(row.get("run")), metric)
    return {"rows": rows, "plots": sorted(str(p) for p in folder.glob("plot-*.png")),
            "table": str(folder / "results.md")}  # fmt: skip


def _same(a: Any, b: Any) -> bool:
    """Axis labels equal as numbers (``0`` == ``0.0``) or else as strings."""
    fa, fb = _float(a), _float(b)
    return fa == fb if fa is not None and fb is not None else str(a) == str(b)


def _cell(rows: Sequence[dict[str, Any]], value: str, **labels: Any) -> float | None:
    for row in rows:
        if all(_same(row.get(k), v) for k, v in labels.items()):
            return _float(row.get(value))
    return None


def _verdict(delta: float, se: float) -> str:
    """``better`` / ``worse`` beyond two standard errors of a difference, else ``unclear``."""
    return "better" if delta > 2 * se else "worse" if -delta > 2 * se else "unclear"


def _difference(rows: Sequence[dict[str, Any]], metric: str, a: dict[str, Any], b: dict[str, Any],
                names: tuple[str, str]) -> dict[str, Any] | None:  # fmt: skip
    """``b - a`` of ``metric`` between two matrix cells, with a verdict for the accuracies:
    ``better``/``worse`` beyond two standard errors of the difference, else ``unclear``."""
    va, vb = _cell(rows, metric, **a), _cell(rows, metric, **b)
    if va is None or vb is None:
        return None
    out: dict[str, Any] = {names[0]: va, names[1]: vb, "delta": vb - va}
    if metric in (T2I_METRIC, T2I_OLD_METRIC, *TAIL_METRICS):
        sa, sb = _cell(rows, f"{metric}_se", **a), _cell(rows, f"{metric}_se", **b)
        if sa is not None and sb is not None:
            out["se"] = math.sqrt(sa**2 + sb**2)
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


def _t2i_floors(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The headline check (object accuracy vs the run's strongest baseline) and the old one
    (colour+shape accuracy vs its chance), on the run fixed by :data:`T2I_HEADLINE`."""
    headline = [r for r in rows if all(_same(r.get(k), v) for k, v in T2I_HEADLINE.items())]
    key = T2I_METRIC if any(_float(r.get(T2I_METRIC)) is not None for r in rows) else T2I_OLD_METRIC
    row = (
        headline[0]
        if headline
        else max(rows, key=lambda r: _float(r.get(key)) or 0.0, default=None)
    )
    if row is None:
        return []
    label = "k = 0, CFG + top-p" if headline else f"best run {row.get('run')}"
    checks = []
    value = _float(row.get(T2I_METRIC))
    if value is not None:
        base, base_name = _strongest_baseline(row, T2I_METRIC)
        ratio = value / base if base else None
        checks.append({"name": f"text-to-image object accuracy (headline, precision-aware; {label})",
                       "value": value, "se": row.get(f"{T2I_METRIC}_se"), "baseline": base,
                       "baseline_name": base_name, "floor": T2I_FLOOR, "ratio": ratio,
                       "passed": ratio is not None and ratio >= T2I_FLOOR})  # fmt: skip
    old = _float(row.get(T2I_OLD_METRIC))
    chance = _float(row.get(f"baselines.chance.{T2I_OLD_METRIC}"))
    if old is not None:
        ratio = old / chance if chance else None
        checks.append({"name": f"text-to-image colour+shape accuracy (old measure: recall only, blind to extra "
                               f"objects; {label})", "value": old, "se": row.get(f"{T2I_OLD_METRIC}_se"),
                       "baseline": chance, "baseline_name": "chance", "floor": T2I_OLD_FLOOR, "ratio": ratio,
                       "passed": ratio is not None and ratio >= T2I_OLD_FLOOR})  # fmt: skip
    return checks


def _tail_floor(tail: dict[str, Any]) -> list[dict[str, Any]]:
    """Retrieval on tail entities: k = max minus k = 0 of the default strategy, in SEs."""
    entry = (tail.get("findings", {}).get("retrieval", {}).get(TAIL_STRATEGY) or {}).get(TAIL_METRIC)
    if not entry or entry.get("se") is None:
        return []
    k_max = next(k for k in entry if k.startswith("k") and k != "k0")
    ses = entry["delta"] / entry["se"] if entry["se"] else None
    return [{"name": f"retrieval on tail entities: mosaic cells right, {k_max} minus k0 "
                     f"({TAIL_STRATEGY}); floor in standard errors of the difference",
             "value": entry[k_max], "se": entry["se"], "baseline": entry["k0"],
             "baseline_name": "k = 0 (no retrieval), same prompts", "floor": TAIL_RETRIEVAL_SES, "floor_unit": "SE",
             "ratio": ses, "passed": ses is not None and ses >= TAIL_RETRIEVAL_SES}]  # fmt: skip


def _in_context_floor(rows: Sequence[dict[str, Any]], ceiling: float | None) -> list[dict[str, Any]]:
    """The target itself in context vs nothing (in SEs of the difference), and vs the VQ
    ceiling; another document in context is the control, reported beside it."""
    diff = _difference(rows, T2I_METRIC, {"context": "none"}, {"context": "own"}, ("none", "own"))
    if diff is None:
        return []
    control = _cell(rows, T2I_METRIC, context="other")
    ses = diff["delta"] / diff["se"] if diff.get("se") else None
    high = ceiling is not None and diff["own"] >= IN_CONTEXT_CEILING * ceiling
    return [{"name": "in-context use: object accuracy with the target itself as the retrieved document, "
                     f"minus no context, in SEs (control: another document, {control}); also >= "
                     f"{IN_CONTEXT_CEILING} x the VQ ceiling ({ceiling})",
             "value": diff["own"], "se": diff.get("se"), "baseline": diff["none"],
             "baseline_name": "no document in context, same prompts", "floor": IN_CONTEXT_SES, "floor_unit": "SE",
             "ratio": ses, "control": control, "ceiling": ceiling,
             "passed": ses is not None and ses >= IN_CONTEXT_SES and high}]  # fmt: skip


def _editing_floor(edit: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Editing success (colour and shape edited, the rest kept) against returning the input."""
    if not edit:
        return []
    value = _float((edit.get("metrics") or {}).get("success"))
    base = _float(((edit.get("baselines") or {}).get("identity") or {}).get("success"))
    if value is None:
        return []
    return [{"name": f"editing success (floor {EDIT_FLOOR} absolute)", "value": value, "baseline": base,
             "baseline_name": "identity (the input image returned)", "floor": None, "ratio": None,
             "absolute_floor": EDIT_FLOOR, "passed": value >= EDIT_FLOOR}]  # fmt: skip


def floors(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's must-show checks: value, baseline, ratio, floor, pass/fail."""
    ev = summary.get("evaluations", {})
    checks = _t2i_floors(ev.get("text_to_image", {}).get("rows", []))
    checks += _tail_floor(ev.get("tail_to_image", {}))
    recon = (ev.get("vq_ceiling") or {}).get("reconstructions") or {}
    checks += _in_context_floor(ev.get("in_context", {}).get("rows", []),
                                _float((recon.get("scores") or {}).get(T2I_METRIC)))  # fmt: skip
    vqa = ev.get("vqa")
    if vqa:
        acc = _float(vqa["metrics"].get("accuracy"))
        base = _float(vqa.get("baselines", {}).get("majority", {}).get("accuracy"))
        if acc is not None and base:
            checks.append({"name": "VQA accuracy (%)", "value": acc, "baseline": base,
                           "baseline_name": "majority answer", "floor": VQA_FLOOR, "ratio": acc / base,
                           "passed": acc >= VQA_FLOOR * base})  # fmt: skip
    cap = ev.get("captioning")
    if cap:
        cider = _float(cap["metrics"].get("cider_d"))
        base = _float(cap.get("baselines", {}).get("nearest_caption", {}).get("cider_d"))
        if cider is not None and base is not None:
            checks.append({"name": "caption CIDEr-D", "value": cider, "baseline": base,
                           "baseline_name": "nearest caption (no model)", "floor": None,
                           "ratio": cider / base if base else None, "passed": cider > base})  # fmt: skip
    checks += _editing_floor(ev.get("editing"))
    return checks


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
                ra = _cell(ra_rows, metric, k=k, strategy=strategy)
                if ra is None or plain is None:
                    continue
                entry: dict[str, Any] = {"prompts": prompts, "metric": metric, "strategy": strategy, "ra_k": k,
                                         "retrieval_augmented": ra, "plain": plain, "delta": ra - plain}  # fmt: skip
                ra_se, plain_se = _cell(ra_rows, f"{metric}_se", k=k, strategy=strategy), _float(row.get(f"{metric}_se"))
                if ra_se is not None and plain_se is not None:
                    entry["se"] = math.sqrt(ra_se**2 + plain_se**2)
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
    summary["floors"] = floors(summary)
    from cm3leon.eval.demo.claims import paper_claims

    summary["claims"] = paper_claims(summary)
    return summary
