"""The report's "paper claim / this run / verdict" table, read off the summary's findings and
floors (hand-written artefacts, no training)."""

from __future__ import annotations

import copy
import html
import json
from pathlib import Path

from cm3leon.eval.demo.claims import VERDICTS, paper_claims
from cm3leon.eval.demo.report import render_report
from cm3leon.eval.demo.summary import collect_summary
from tests.eval.demo.test_report import _fake_run, _write


def _by_claim(summary: dict) -> dict[str, dict]:
    return {c["claim"].split(" (")[0].split(":")[0]: c for c in summary["claims"]}


def test_claims_cover_the_paper_and_follow_the_findings(tmp_path: Path) -> None:
    stages = _fake_run(tmp_path)
    _write(tmp_path / "eval" / "editing" / "results.json", json.dumps({
        "protocol": "editing", "metrics": {"success": 0.35}, "baselines": {"identity": {"success": 0.0}}}))  # fmt: skip
    summary = collect_summary(tmp_path, stages)
    claims = _by_claim(summary)
    assert {c["paper"] for c in summary["claims"]} >= {"Table 1", "Figure 4", "§2.1 / Table 1", "§4 SFT"}
    assert all(c["verdict"] in VERDICTS for c in summary["claims"])
    retrieval = claims["retrieved documents in context improve zero-shot text-to-image"]
    assert retrieval["verdict"] == "within noise"  # +0.05 < 2 SE in the fake run
    assert "0.300 (k0) → 0.350 (k2): +0.050 ± 0.032 SE" in retrieval["this_run"]
    assert claims["classifier-free guidance improves on unguided sampling"]["verdict"] == "reproduced"
    assert claims["CD-K is competitive with CFG top-p sampling"]["verdict"] == "not measured"  # no cd_k runs
    assert claims["retrieval helps most on rare"]["verdict"] == "not measured"  # no tail in this run
    caption = claims["the fine-tuned model captions images better than a nearest-caption lookup"]
    assert caption["verdict"] == "not met" and "0.5 vs nearest caption (no model) 0.8" in caption["this_run"]
    assert claims["the fine-tuned model answers questions about images"]["verdict"] == "reproduced"
    assert claims["the fine-tuned model edits images as instructed"]["verdict"] == "reproduced"  # 0.35 >= 0.3
    # Read off, not recomputed: change the CFG floor and its finding, and the claim follows them.
    changed = copy.deepcopy(summary)
    changed["evaluations"]["text_to_image"]["findings"]["cfg"]["k0"]["object_acc"]["verdict"] = "worse"
    assert _by_claim({"claims": paper_claims(changed)})[
        "classifier-free guidance improves on unguided sampling"]["verdict"] == "reproduced"  # the floor passed
    next(c for c in changed["floors"] if c["key"] == "cfg").update(status="fail", passed=False)
    assert _by_claim({"claims": paper_claims(changed)})[
        "classifier-free guidance improves on unguided sampling"]["verdict"] == "contradicted"  # fmt: skip


def test_cd_k_and_combined_rows_come_from_the_decoding_findings(tmp_path: Path) -> None:
    stages = _fake_run(tmp_path)
    summary = collect_summary(tmp_path, stages)
    findings = summary["evaluations"]["text_to_image"]["findings"]
    entry = {"top_p": 0.3, "delta": -0.2, "se": 0.05, "verdict": "worse"}
    findings["decoding"] = {"k0": {"cd_k": {"object_acc": {**entry, "cd_k": 0.1}},
                                   "combined": {"object_acc": {**entry, "combined": 0.4, "delta": 0.1,
                                                               "verdict": "better"}}}}  # fmt: skip
    claims = _by_claim({"claims": paper_claims(summary)})
    assert claims["CD-K is competitive with CFG top-p sampling"]["verdict"] == "contradicted"
    assert claims["top-p and CD-K candidates are complementary"]["verdict"] == "reproduced"
    entry["verdict"] = "unclear"  # within noise still counts as "competitive"
    findings["decoding"]["k0"]["cd_k"]["object_acc"] = {**entry, "cd_k": 0.25, "delta": -0.05}
    claims = _by_claim({"claims": paper_claims(summary)})
    assert claims["CD-K is competitive with CFG top-p sampling"]["verdict"] == "reproduced"


def test_decoding_findings_compare_guided_strategies_with_top_p(tmp_path: Path) -> None:
    stages = _fake_run(tmp_path)
    folder = tmp_path / "eval" / "text_to_image"
    csv = (folder / "results.csv").read_text().splitlines()
    header, top_p = csv[0], next(line for line in csv if line.startswith("k=0__strategy=top_p"))
    csv.append(top_p.replace("strategy=top_p,done,0,top_p", "strategy=cd_k,done,0,cd_k"))
    (folder / "results.csv").write_text("\n".join(csv) + "\n")
    per = json.loads((folder / "runs" / "k=0__strategy=top_p" / "results.json").read_text())
    _write(folder / "runs" / "k=0__strategy=cd_k" / "results.json", json.dumps(per))
    assert header.startswith("run,status,k,strategy")
    findings = collect_summary(tmp_path, stages)["evaluations"]["text_to_image"]["findings"]
    cd_k = findings["decoding"]["k0"]["cd_k"]["object_acc"]
    assert cd_k["delta"] == 0 and cd_k["verdict"] == "unclear"


def test_the_report_shows_the_claims_table(tmp_path: Path) -> None:
    stages = _fake_run(tmp_path)
    text = render_report(tmp_path, stages).read_text()
    assert "Paper claim / this run / verdict" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    for claim in summary["claims"]:
        assert html.escape(claim["claim"]) in text and html.escape(claim["this_run"]) in text
    assert text.index("Paper claim / this run / verdict") < text.index("<h2>Stages</h2>")
