"""The demo's long tail: the world exports entity documents and a tail text-to-image
ablation runs beside the head prompts, with its retrieval floor (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

from cm3leon.eval.demo import Layout, build_stages, load_demo_config
from cm3leon.eval.demo.report import render_report
from cm3leon.eval.demo.runner import validate_stage_configs
from cm3leon.eval.demo.summary import TAIL_RETRIEVAL_SES, collect_summary, floors


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_without_a_tail_the_plan_is_unchanged(tmp_path: Path) -> None:
    stages = build_stages(load_demo_config(quick=True), Layout(tmp_path))
    assert "tail_to_image" not in [s.name for s in stages]
    assert "--entity-docs" not in stages[0].steps[0].argv


def test_a_tail_exports_entities_and_adds_the_tail_ablation(tmp_path: Path) -> None:
    cfg = load_demo_config(None, ["world.entity_docs=300", "world.entities=40"], quick=True)
    stages = build_stages(cfg, Layout(tmp_path))
    names = [s.name for s in stages]
    assert names.index("tail_to_image") == names.index("text_to_image") + 1
    argv = stages[0].steps[0].argv
    assert argv[argv.index("--entity-docs") + 1] == "300" and argv[argv.index("--entities") + 1] == "40"
    assert "entities" in argv[argv.index("--formats") + 1].split(",")
    tail = stages[names.index("tail_to_image")]
    (path, (schema, ablation)), = tail.configs.items()
    assert schema == "ablation" and ablation["base"]["runner"] == "text_to_image"
    docs = ablation["base"]["config"]["data"]["entities"]
    assert docs == str(tmp_path / "world" / "entities" / "documents.jsonl")
    assert "ground_truth" not in ablation["base"]["config"]["data"]
    validate_stage_configs(stages)  # the tail protocol config is a valid text_to_image config


def _fake_tail(out: Path, k0: list[float], k2: list[float]) -> list:
    cfg = load_demo_config(None, [f"out={out}", "world.entity_docs=300"], quick=True)
    stages = build_stages(cfg, Layout(out))
    folder = Layout(out).eval / "tail_to_image"
    rows = ["run,status,k,strategy,entity_cell_acc,entity_match,fid"]
    for k, values in ((0, k0), (2, k2)):
        run = f"k={k}__strategy=top_p"
        mean = sum(values) / len(values)
        rows.append(f"{run},done,{k},top_p,{mean},{mean / 2},{5 - k}")
        per = {str(i): {"entity": {"entity_cell_acc": v, "entity_match": float(v > 0.7)}}
               for i, v in enumerate(values)}  # fmt: skip
        _write(folder / "runs" / run / "results.json", json.dumps({"per_prompt": per}))
    _write(folder / "results.csv", "\n".join(rows) + "\n")
    _write(folder / "results.md", "# tail\n")
    return stages


def test_the_tail_retrieval_floor_counts_standard_errors(tmp_path: Path) -> None:
    # k = 2 alternates in pairs, k = 0 one by one: uncorrelated over the prompts, so the paired
    # SE equals sqrt(2) x each run's SE
    stages = _fake_tail(tmp_path / "pass", [0.1, 0.3] * 20, [0.8, 0.8, 1.0, 1.0] * 10)
    check = next(c for c in floors(collect_summary(tmp_path / "pass", stages)) if c["key"] == "tail_retrieval")
    se = (2 * (0.1 * (40 / 39) ** 0.5) ** 2 / 40) ** 0.5
    assert abs(check["value"] - 0.9) < 1e-9 and abs(check["baseline"] - 0.2) < 1e-9
    assert abs(check["se"] - se) < 1e-9 and check["ratio"] > TAIL_RETRIEVAL_SES and check["passed"]
    # a gain within noise is reported as a miss, not hidden
    stages = _fake_tail(tmp_path / "noise", [0.1, 0.3] * 20, [0.12, 0.12, 0.32, 0.32] * 10)
    summary = collect_summary(tmp_path / "noise", stages)
    check = next(c for c in floors(summary) if c["key"] == "tail_retrieval")
    assert not check["passed"] and 0 < check["ratio"] < TAIL_RETRIEVAL_SES
    page = render_report(tmp_path / "noise", stages).read_text()
    assert "Tail entities" in page
    assert "minus k = 0 &gt;= 3 SE" in page and f"{check['ratio']:+.3g} SE</td>" in page  # not "x baseline"


def _fake_context(out: Path, values: dict[str, list[float]], ceiling: float) -> list:
    stages = build_stages(load_demo_config(None, [f"out={out}"], quick=True), Layout(out))
    lay = Layout(out)
    folder = lay.eval / "in_context"
    rows = ["run,status,context,object_acc,colour_shape_acc"]
    for context, vals in values.items():
        run = f"context={context}"
        rows.append(f"{run},done,{context},{sum(vals) / len(vals)},0.5")
        per = {str(i): {"world": {"object_acc": v}} for i, v in enumerate(vals)}
        _write(folder / "runs" / run / "results.json", json.dumps({"per_prompt": per}))
    _write(folder / "results.csv", "\n".join(rows) + "\n")
    _write(folder / "results.md", "# in context\n")
    _write(lay.eval / "vq_ceiling" / "reconstructions.json",
           json.dumps({"scores": {"object_acc": ceiling}}))  # fmt: skip
    return stages


def _context_check(out: Path, stages: list) -> dict:
    return next(c for c in floors(collect_summary(out, stages)) if c["key"] == "in_context")


def test_the_in_context_floor_needs_the_ceiling_and_the_standard_errors(tmp_path: Path) -> None:
    values = {"none": [0.1, 0.3] * 20, "own": [0.7, 0.7, 0.9, 0.9] * 10, "other": [0.1, 0.2] * 20}
    stages = _fake_context(tmp_path / "a", values, ceiling=0.9)
    check = _context_check(tmp_path / "a", stages)
    assert abs(check["value"] - 0.8) < 1e-9 and abs(check["baseline"] - 0.2) < 1e-9
    assert abs(check["control"] - 0.15) < 1e-9 and check["passed"]  # 0.8 >= 0.8 * 0.9, many SEs
    # far above no context, but below 0.8 of the VQ ceiling: not met
    stages = _fake_context(tmp_path / "b", values, ceiling=1.0)
    assert not _context_check(tmp_path / "b", stages)["passed"]
    # the target in context changes nothing: not met however high the ceiling allows
    same = {"none": [0.7, 0.9] * 20, "own": [0.7, 0.7, 0.9, 0.9] * 10, "other": [0.7, 0.9] * 20}
    stages = _fake_context(tmp_path / "c", same, ceiling=0.5)
    check = _context_check(tmp_path / "c", stages)
    assert check["ratio"] == 0 and not check["passed"]
    assert "In-context use" in render_report(tmp_path / "c", stages).read_text()
