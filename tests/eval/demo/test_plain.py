"""Retrieval-augmented vs plain pretraining at equal compute, read from hand-written artefacts
(no training): the summary's comparison, its equal-compute check, the claim row, the report."""

from __future__ import annotations

import json
from pathlib import Path

from cm3leon.eval.demo import Layout, build_stages, load_demo_config
from cm3leon.eval.demo.report import render_report
from cm3leon.eval.demo.summary import collect_summary


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _ablation(folder: Path, cells: dict[tuple[int, str], list[float]]) -> None:
    """An ablation's results.csv and each run's per-prompt object accuracies."""
    rows = ["run,status,k,strategy,object_acc,colour_shape_acc"]
    for (k, strategy), values in cells.items():
        run = f"k={k}__strategy={strategy}"
        rows.append(f"{run},done,{k},{strategy},{sum(values) / len(values)},0.5")
        per = {str(i): {"world": {"object_acc": v, "colour_shape_acc": 0.5}} for i, v in enumerate(values)}
        _write(folder / "runs" / run / "results.json", json.dumps({"per_prompt": per}))
    _write(folder / "results.csv", "\n".join(rows) + "\n")
    _write(folder / "results.md", "# table\n")


def _metrics(run: Path, steps: int, tokens_per_step: int, batch: int) -> None:
    lines = [{"batch": i, "loss/train/total": 6.0 - i / steps, "time/batch": i, "time/token": i * tokens_per_step,
              "time/sample": i * batch} for i in range(steps)]  # fmt: skip
    lines.append({"batch": steps, "time/batch": steps, "time/token": steps * tokens_per_step,
                  "time/sample": steps * batch})  # fmt: skip
    _write(run / "metrics.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")


def _fake(out: Path, ra: dict[int, list[float]], plain: list[float], plain_tokens_per_step: int = 2700) -> list:
    cfg = load_demo_config(None, [f"out={out}", "plain.enabled=true", "pretrain.max_duration=27000tok"], quick=True)
    stages = build_stages(cfg, Layout(out))
    lay = Layout(out)
    _ablation(lay.eval / "text_to_image", {(k, "top_p"): v for k, v in ra.items()})
    _ablation(lay.eval / "plain_text_to_image", {(0, "top_p"): plain})
    _metrics(lay.run("pretrain"), 10, 2700, 16)  # 27,000 tokens in 10 steps
    _metrics(lay.run("plain_pretrain"), 10, plain_tokens_per_step, 32)
    return stages


def test_augmented_better_beyond_two_standard_errors_at_equal_compute(tmp_path: Path) -> None:
    # plain alternates in pairs, the augmented runs one by one: uncorrelated over the prompts,
    # so the paired SE equals sqrt(2) x each run's SE
    stages = _fake(tmp_path, {0: [0.3, 0.5] * 20, 2: [0.6, 0.8] * 20}, [0.1, 0.1, 0.3, 0.3] * 10)
    summary = collect_summary(tmp_path, stages)
    found = summary["ra_vs_plain"]
    compute = found["compute"]
    assert compute["equal"] and compute["retrieval_augmented"]["tokens"] == compute["plain"]["tokens"] == 27000
    assert compute["retrieval_augmented"]["batches"] == 10 and compute["plain"]["examples"] == 320
    by_k = {c["ra_k"]: c for c in found["comparisons"]}
    assert set(by_k) == {0, 2}  # the weights alone, and with their retrieval
    se = (2 * (0.1 * (40 / 39) ** 0.5) ** 2 / 40) ** 0.5  # two runs, sd 0.1 each, 40 prompts
    assert abs(by_k[0]["delta"] - 0.2) < 1e-9 and abs(by_k[0]["se"] - se) < 1e-9
    assert by_k[0]["verdict"] == "better" and by_k[2]["verdict"] == "better"
    assert abs(by_k[2]["retrieval_augmented"] - 0.7) < 1e-9 and abs(by_k[2]["plain"] - 0.2) < 1e-9
    claims = [c for c in summary["claims"] if c["paper"] == "§1 / RA-CM3"]
    assert [c["verdict"] for c in claims] == ["reproduced", "reproduced"]
    text = render_report(tmp_path, stages).read_text()
    assert "Retrieval-augmented vs plain pretraining at equal compute" in text
    assert "augmented with its retrieval (k = 2) 0.700 vs plain 0.200: +0.500" in text


def test_plain_better_is_reported_as_such(tmp_path: Path) -> None:
    stages = _fake(tmp_path, {0: [0.1, 0.3] * 20, 2: [0.15, 0.35] * 20}, [0.6, 0.8] * 20)
    summary = collect_summary(tmp_path, stages)
    assert {c["verdict"] for c in summary["ra_vs_plain"]["comparisons"]} == {"worse"}
    assert {c["verdict"] for c in summary["claims"] if c["paper"] == "§1 / RA-CM3"} == {"contradicted"}


def test_unequal_token_counts_are_not_called_equal_compute(tmp_path: Path) -> None:
    # The plain run saw half the tokens (e.g. a step-count budget with the same examples per step).
    stages = _fake(tmp_path, {0: [0.3, 0.5] * 20, 2: [0.6, 0.8] * 20}, [0.1, 0.3] * 20, plain_tokens_per_step=1350)
    summary = collect_summary(tmp_path, stages)
    compute = summary["ra_vs_plain"]["compute"]
    assert compute["equal"] is False and abs(compute["ratio"] - 0.5) < 1e-9
    claims = [c for c in summary["claims"] if c["paper"] == "§1 / RA-CM3"]
    assert {c["verdict"] for c in claims} == {"not measured"} and "not equal compute" in claims[0]["this_run"]


def test_no_plain_model_no_comparison(tmp_path: Path) -> None:
    stages = build_stages(load_demo_config(None, [f"out={tmp_path}"], quick=True), Layout(tmp_path))
    _ablation(Layout(tmp_path).eval / "text_to_image", {(0, "top_p"): [0.2, 0.4] * 5})
    summary = collect_summary(tmp_path, stages)
    assert "ra_vs_plain" not in summary and not [c for c in summary["claims"] if c["paper"] == "§1 / RA-CM3"]
    assert "Retrieval-augmented vs plain" not in render_report(tmp_path, stages).read_text()
