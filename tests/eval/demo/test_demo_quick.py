"""`cm3leon demo --quick` end to end (every stage's real command), resumption, and the report.

One module-scoped run (about 2-3 minutes on 2 CPU cores) feeds every test:

1. `cm3leon demo --quick --stop-after image_tokenizer` (an interrupted demo),
2. `cm3leon demo --quick` again: the finished stages are skipped, the rest run,
3. the report links every stage's artefact and renders in headless Chromium (when one is
   installed; `scripts/check_report.py` is the same check by hand).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
FIRST = ["world", "documents", "text_tokenizer", "image_tokenizer"]


def _cm3leon(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("cm3leon")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cm3leon.core.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("demo") / "run"
    first = _cm3leon(
        "demo", "--quick", "--no-progress", "--out", str(out), "--stop-after", "image_tokenizer"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    stopped = sorted(p.stem for p in (out / "stages").glob("*.json"))
    second = _cm3leon("demo", "--quick", "--no-progress", "--out", str(out))
    assert second.returncode == 0, second.stderr[-3000:]
    return {"out": out, "stopped": stopped, "first": first, "second": second}


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "stages").glob("*.json")}


def test_interrupted_demo_resumes_and_skips_finished_stages(demo: dict) -> None:
    assert demo["stopped"] == sorted(FIRST)  # nothing after the stop
    assert not (demo["out"] / "report.html").exists() or "report:" in demo["second"].stdout
    lines = demo["second"].stderr.splitlines()
    for name in FIRST:
        assert any(re.search(rf"✓ {name}\s+cached", line) for line in lines), (name, lines[:10])
    assert any(re.search(r"✓ pretrain\s+[\d.]+ s", line) for line in lines)
    assert "16 stages (12 run, 4 cached)" in demo["second"].stdout


def test_every_stage_completed_with_its_artefacts(demo: dict) -> None:
    records = _records(demo["out"])
    assert len(records) == 16
    for name, record in records.items():
        assert record["status"] == "complete", (name, record)
        assert record["artefacts"], name
        for label, path in record["artefacts"].items():
            assert Path(path).exists(), (name, label, path)
        log = (demo["out"] / "logs" / f"{name}.log").read_text()
        for command in record["commands"]:
            assert f"$ {command}" in log  # the log shows the public command that ran
    export = json.loads((demo["out"] / "sft" / "export" / "config.json").read_text())
    assert export  # the fine-tuned model was exported (safetensors + config)
    assert (demo["out"] / "sft" / "export" / "model.safetensors").is_file()


def test_report_links_every_artefact_and_holds_the_results(demo: dict) -> None:
    out = demo["out"]
    html = (out / "report.html").read_text()
    hrefs = set(re.findall(r'href="([^"]+)"', html))
    for name, record in _records(out).items():
        for label, path in record["artefacts"].items():
            assert os.path.relpath(path, out) in hrefs, (name, label)
        assert f"logs/{name}.log" in hrefs
    assert not [h for h in hrefs if h.startswith(("/", "file:"))]
    summary = json.loads((out / "summary.json").read_text())
    status = {c["key"]: c["status"] for c in summary["floors"]}  # all seven, in order
    assert list(status) == ["text_to_image", "tail_retrieval", "cfg", "captioning", "vqa", "editing", "in_context"]
    assert status.pop("tail_retrieval") == status.pop("cfg") == "not run"  # --quick: no tail, no no_cfg
    assert set(status.values()) <= {"pass", "fail"}, status  # the others ran and were judged
    assert {c["paper"] for c in summary["claims"]} >= {"Table 1", "Figure 4", "§4 SFT"}  # the claims table
    assert "ra_vs_plain" not in summary  # plain pretraining is off in --quick
    headline = next(
        c for c in summary["floors"] if c["name"].startswith("text-to-image object accuracy")
    )
    assert headline["baseline"] > 0 and headline["strongest_baseline"] >= headline["baseline"]  # chance; strongest
    assert set(summary["figure_4"]["strategies"]) == {"top_p", "cd_k", "combined"}  # reported, run or not
    ev = summary["evaluations"]
    assert {"text_to_image", "captioning", "vqa", "editing", "vq_ceiling"} <= set(ev)
    assert len(ev["text_to_image"]["rows"]) == 4  # k in {0, 2} x {top_p, cd_k} in the quick preset
    assert summary["pretrain"]["steps"] == 8 and summary["sft"]["steps"] == 6
    assert (
        ev["vq_ceiling"]["originals"]["scores"]["colour_shape_acc"] == 1.0
    )  # the scorer reads real images
    assert ev["vq_ceiling"]["originals"]["scores"]["object_acc"] == 1.0  # and draws nothing extra
    assert "data:image/png;base64," in html


def test_report_renders_in_headless_chromium(demo: dict) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import check_report
    finally:
        sys.path.pop(0)
    try:
        check_report.find_chromium()
    except FileNotFoundError as err:
        if os.environ.get("CM3LEON_REQUIRE_CHROMIUM"):  # set by .ci/run, which installs it
            raise
        pytest.skip(str(err))
    result = check_report.check_report(demo["out"] / "report.html", demo["out"] / "report.png",
                                       window="1280,2400")  # fmt: skip
    assert result["ok"], result["problems"]
    assert (demo["out"] / "report.png").stat().st_size > 10_000
