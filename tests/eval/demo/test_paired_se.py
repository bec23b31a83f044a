"""The standard error of a difference between two runs on the same prompts is paired: the SE of
the per-prompt differences, not sqrt(SE_a² + SE_b²) (hand-written artefacts, no training)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from cm3leon.eval.demo import Layout, build_stages, load_demo_config
from cm3leon.eval.demo.report import render_report
from cm3leon.eval.demo.summary import collect_summary
from tests.eval.demo.test_plain import _fake as _fake_plain

N = 30
# Prompts of very different difficulty (0.1 .. 0.9), the same in every run: the spread between
# prompts dwarfs the run-to-run effect, which a paired SE removes and an unpaired one keeps.
BASE = [0.1 + 0.8 * ((i * 7) % N) / (N - 1) for i in range(N)]
NOISE = [0.01 * ((i * 11) % 5 - 2) for i in range(N)]  # -0.02 .. +0.02, no pattern shared with BASE


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


def _fake(out: Path, cells: dict[tuple[int, str], dict[str, float | None]]) -> list:
    """A text-to-image matrix: results.csv (each run's mean) and each run's per-prompt scores."""
    stages = build_stages(load_demo_config(None, [f"out={out}"], quick=True), Layout(out))
    folder = Layout(out).eval / "text_to_image"
    rows = ["run,status,k,strategy,object_acc"]
    for (k, strategy), per in cells.items():
        run = f"k={k}__strategy={strategy}"
        scored = [v for v in per.values() if v is not None]
        rows.append(f"{run},done,{k},{strategy},{sum(scored) / len(scored)}")
        _write(folder / "runs" / run / "results.json",
               {"per_prompt": {pid: {"world": {} if v is None else {"object_acc": v}} for pid, v in per.items()}})  # fmt: skip
    _write(folder / "results.csv", "\n".join(rows) + "\n")
    _write(folder / "results.md", "# table\n")
    return stages


def _per(values: list[float | None]) -> dict[str, float | None]:
    return {f"p{i}": v for i, v in enumerate(values)}


def _paired_se(a: list[float], b: list[float]) -> float:
    return statistics.stdev([y - x for x, y in zip(a, b, strict=True)]) / math.sqrt(len(a))


def _unpaired_se(a: list[float], b: list[float]) -> float:
    return math.hypot(statistics.stdev(a) / math.sqrt(len(a)), statistics.stdev(b) / math.sqrt(len(b)))


def test_differences_and_floors_use_the_paired_standard_error(tmp_path: Path) -> None:
    k2 = [v + 0.06 + e for v, e in zip(BASE, NOISE, strict=True)]
    no_cfg = [v - 0.03 + e for v, e in zip(BASE, reversed(NOISE), strict=True)]
    cd_k = [v + 0.01 + e for v, e in zip(BASE, NOISE[1:] + NOISE[:1], strict=True)]
    no_cfg_missing = [*no_cfg[:-1], None]  # the last prompt has no score in the no_cfg run
    stages = _fake(tmp_path, {(0, "top_p"): _per(BASE), (2, "top_p"): _per(k2),
                              (0, "no_cfg"): _per(no_cfg_missing), (0, "cd_k"): _per(cd_k)})  # fmt: skip
    summary = collect_summary(tmp_path, stages)
    findings = summary["evaluations"]["text_to_image"]["findings"]
    retrieval = findings["retrieval"]["top_p"]["object_acc"]
    assert abs(retrieval["se"] - _paired_se(BASE, k2)) < 1e-12
    assert retrieval["se_kind"] == "paired" and retrieval["n"] == N
    assert retrieval["se"] < _unpaired_se(BASE, k2) / 10  # the shared prompt spread cancels
    assert retrieval["verdict"] == "better"  # +0.06 is many paired SEs (within one unpaired SE)
    # CFG: paired over the 29 prompts both runs scored; its floor (>= 2 SE) is met on it
    cfg = findings["cfg"]["k0"]["object_acc"]
    assert cfg["se_kind"] == "paired" and cfg["n"] == N - 1
    assert abs(cfg["se"] - _paired_se(no_cfg[:-1], BASE[:-1])) < 1e-12
    floor = next(c for c in summary["floors"] if c["key"] == "cfg")
    assert floor["status"] == "pass" and floor["se"] == cfg["se"] and floor["ratio"] > 2
    assert abs(floor["delta"] - (sum(BASE) / N - sum(no_cfg[:-1]) / (N - 1))) < 1e-12
    # Figure 4 reads the same differences
    fig = summary["figure_4"]["differences"]["cd_k - top_p"]
    assert fig["se_kind"] == "paired" and abs(fig["se"] - _paired_se(BASE, cd_k)) < 1e-12
    text = render_report(tmp_path, stages).read_text()
    assert "(paired, n = 29)" in text  # the CFG floor's row says which SE it was judged on
    assert "<th>SE kind</th>" in text and "<td>paired</td>" in text  # the Figure 4 table


def test_different_prompt_sets_fall_back_to_the_unpaired_standard_error(tmp_path: Path) -> None:
    k2 = [v + 0.06 + e for v, e in zip(BASE, NOISE, strict=True)]
    other = {**_per(k2[:-1]), "q0": k2[-1]}  # the k = 2 run scored another prompt in place of p29
    stages = _fake(tmp_path, {(0, "top_p"): _per(BASE), (2, "top_p"): other})
    summary = collect_summary(tmp_path, stages)
    retrieval = summary["evaluations"]["text_to_image"]["findings"]["retrieval"]
    entry = retrieval["top_p"]["object_acc"]
    assert entry["se_kind"] == "unpaired" and entry["n"] is None
    assert abs(entry["se"] - _unpaired_se(BASE, k2)) < 1e-12
    assert "prompt sets differ" in entry["se_note"] and "29 shared" in entry["se_note"]
    assert entry["verdict"] == "unclear"  # +0.06 is within two unpaired SEs
    claim = next(c for c in summary["claims"] if c["claim"].startswith("retrieved documents in context"))
    assert f"{entry['se']:.3f} SE (unpaired)" in claim["this_run"]
    assert f"{entry['se']:.3f} SE, unpaired (within noise)" in render_report(tmp_path, stages).read_text()


def test_augmented_minus_plain_is_paired_over_the_same_prompts(tmp_path: Path) -> None:
    ra = [v + 0.05 + e for v, e in zip(BASE, NOISE, strict=True)]
    stages = _fake_plain(tmp_path, {0: ra, 2: ra}, BASE)
    comparisons = collect_summary(tmp_path, stages)["ra_vs_plain"]["comparisons"]
    head = next(c for c in comparisons if c["prompts"] == "head" and c["ra_k"] == 0)
    assert abs(head["se"] - _paired_se(BASE, ra)) < 1e-12 and head["verdict"] == "better"
    assert head["se_kind"] == "paired" and head["n"] == N
