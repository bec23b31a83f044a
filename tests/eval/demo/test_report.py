"""The demo report and summary, rendered from hand-written artefacts (no training)."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from PIL import Image

from cm3leon.eval.demo import Layout, build_stages, load_demo_config
from cm3leon.eval.demo.report import render_report
from cm3leon.eval.demo.summary import collect_summary, floors


def _png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


_BASELINES = ("baselines.chance.colour_shape_acc,baselines.chance.object_acc,baselines.shuffled.object_acc,"
              "baselines.other_scene.object_acc,baselines.mean_image.object_acc")  # fmt: skip


def _fake_run(out: Path, headline: tuple[float, float, float] | None = None) -> list:
    """A finished quick demo's artefacts; ``headline`` = (colour+shape accuracy, object
    accuracy, its shuffled baseline) of the k = 0, top-p run."""
    stages = build_stages(load_demo_config(None, [f"out={out}"], quick=True), Layout(out))
    lay = Layout(out)
    for stage in stages:
        _write(lay.stages / f"{stage.name}.json", {"name": stage.name, "status": "complete", "seconds": 1.5,
                                                   "steps_done": [s.name for s in stage.steps]})  # fmt: skip
    rows = [
        f"run,status,k,strategy,colour_shape_acc,object_acc,fid,clip_score,position_acc,{_BASELINES}"
    ]
    for k, base in ((0, 0.20), (2, 0.25)):
        for strategy, delta in (("top_p", 0.0), ("no_cfg", -0.1)):
            acc, obj, shuffled = base + delta, base + delta + 0.1, 0.09
            if headline is not None and (k, strategy) == (0, "top_p"):
                acc, obj, shuffled = headline
            rows.append(f"k={k}__strategy={strategy},done,{k},{strategy},{acc},{obj},{5 - k},{20 + k},0.3,"
                        f"{1 / 24},0.08,{shuffled},0.06,0.0")  # fmt: skip
    _write(lay.eval / "text_to_image" / "results.csv", "\n".join(rows) + "\n")
    # k = 2 alternates in pairs, k = 0 one by one: uncorrelated over the prompts, so the paired
    # SE of k2 - k0 equals the unpaired one (sqrt(2) x each run's SE).
    per_prompt = {"k=0__strategy=top_p": [0.1, 0.3] * 10, "k=2__strategy=top_p": [0.15, 0.15, 0.35, 0.35] * 5,
                  "k=0__strategy=no_cfg": [0.1] * 20}  # fmt: skip
    for run, values in per_prompt.items():
        _write(lay.eval / "text_to_image" / "runs" / run / "results.json",
               {"per_prompt": {str(i): {"world": {"colour_shape_acc": v, "object_acc": v + 0.1}}
                               for i, v in enumerate(values)}})  # fmt: skip
    _write(lay.eval / "text_to_image" / "results.md", "# table\n")
    _png(lay.eval / "text_to_image" / "plot-colour_shape_acc-vs-k-by-strategy.png")
    _png(lay.eval / "text_to_image" / "runs" / "k=0__strategy=top_p" / "samples.png")
    _write(lay.eval / "vqa" / "results.json", {
        "protocol": "vqa", "metrics": {"accuracy": 40.0}, "per_answer_type": {"yes/no": 60.0},
        "baselines": {"majority": {"accuracy": 15.0, "answer": "no"},
                      "majority_per_question_type": {"accuracy": 25.0}},
        "per_question": {"1": {"question": "What <colour>?", "answer": "red & blue", "accuracy": 100.0}},
    })  # fmt: skip
    _png(lay.eval / "vqa" / "samples.png", (30, 30, 200))
    _write(lay.eval / "captioning" / "results.json", {
        "protocol": "captioning", "metrics": {"cider_d": 0.5},
        "baselines": {"nearest_caption": {"cider_d": 0.8}},
    })  # fmt: skip
    _write(
        lay.run("pretrain") / "metrics.jsonl",
        "\n".join(json.dumps({"batch": i, "loss/train/total": 6.0 - i / 10}) for i in range(40))
        + "\n",
    )
    _png(lay.run("pretrain") / "loss_curve.png")
    _write(lay.eval / "vq_ceiling" / "reconstructions.json", {"scores": {"colour_shape_acc": 0.8}})
    return stages


def test_summary_floors_and_findings(tmp_path: Path) -> None:
    stages = _fake_run(tmp_path)
    summary = collect_summary(tmp_path, stages)
    checks = {c["key"]: c for c in floors(summary)}
    headline = checks["text_to_image"]  # the k = 0, top_p run
    # Against the run's chance bound (0.08); the strongest baseline (0.09) rides along.
    assert abs(headline["value"] - 0.3) < 1e-9 and headline["baseline"] == 0.08
    assert headline["strongest_baseline"] == 0.09
    assert headline["strongest_baseline_name"].startswith("the run's images vs other prompts")
    assert headline["status"] == "fail" and abs(headline["ratio"] - 0.3 / 0.08) < 1e-9  # 3.75x, and < 0.5
    assert headline["old_measure"]["value"] == 0.2  # the old measure: information, not a floor
    assert checks["vqa"]["passed"] and checks["vqa"]["ratio"] == 40 - 25 and checks["vqa"]["second_baseline"] == 15
    assert checks["captioning"]["status"] == "fail"  # 0.5 < 1.2 x 0.8: reported as a miss, not hidden
    assert checks["cfg"]["status"] == "pass"  # +0.1 at k = 0, over 2 SE
    assert checks["tail_retrieval"]["status"] == checks["editing"]["status"] == "not run"
    findings = summary["evaluations"]["text_to_image"]["findings"]
    assert findings["retrieval"]["top_p"]["object_acc"]["verdict"] == "unclear"
    assert findings["cfg"]["k0"]["object_acc"]["verdict"] == "better"
    retrieval, cfg = (
        findings["retrieval"]["top_p"]["colour_shape_acc"],
        findings["cfg"]["k0"]["colour_shape_acc"],
    )
    se = (
        0.1 * (20 / 19) ** 0.5
    ) / 20**0.5  # sample sd of alternating +-0.1 over 20 prompts, / sqrt(n)
    assert abs(retrieval["delta"] - 0.05) < 1e-9 and abs(retrieval["se"] - 2**0.5 * se) < 1e-9
    assert retrieval["verdict"] == "unclear"  # 0.05 < 2 SE: not claimed either way
    assert abs(cfg["delta"] - 0.1) < 1e-9 and cfg["verdict"] == "better"  # 0.1 > 2 SE
    assert "se" not in findings["cfg"]["k2"]["colour_shape_acc"]  # no per-prompt data, no verdict
    assert (
        summary["pretrain"]["steps"] == 40
        and summary["pretrain"]["first_loss"] > summary["pretrain"]["last_loss"]
    )


def test_report_is_self_contained_with_relative_links(tmp_path: Path) -> None:
    stages = _fake_run(tmp_path)
    report = render_report(tmp_path, stages, wall_seconds=12.0)
    text = report.read_text()
    assert report == tmp_path / "report.html" and (tmp_path / "summary.json").is_file()
    hrefs = re.findall(r'href="([^"]+)"', text)
    assert hrefs and not [h for h in hrefs if h.startswith(("/", "file:", "http"))]
    for href in hrefs:
        assert (tmp_path / href).exists(), href
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) >= 4  # loss curve, ablation plot, t2i grid, VQA samples
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    assert "What &lt;colour&gt;?" in text and "red &amp; blue" in text  # escaped
    assert "missing" in text  # artefacts that do not exist are marked, not linked
    assert ("retrieval (top_p), from k = 0 to the largest k: object accuracy +0.050 ± 0.032 SE (within noise), "
            "colour+shape accuracy (old) +0.050 ± 0.032 SE (within noise)") in text  # fmt: skip
    assert "CFG (k0), vs no guidance: object accuracy +0.100 ± 0.023 SE (helps)" in text
    assert "Object accuracy and its baselines (same run)" in text


def test_clutter_passes_no_floor_however_high_the_old_measure(tmp_path: Path) -> None:
    # A run whose images ignore their prompts (a clutter of shapes): the old measure is 8x its
    # chance, but it is information only; the headline is near its chance bound and fails.
    stages = _fake_run(tmp_path, headline=(0.35, 0.09, 0.09))
    found = floors(collect_summary(tmp_path, stages))
    assert not [c for c in found if "colour+shape" in c["name"]]
    headline = next(c for c in found if c["key"] == "text_to_image")
    assert not headline["passed"] and headline["old_measure"]["value"] == 0.35
    text = render_report(tmp_path, stages).read_text()
    assert "text-to-image object accuracy (headline" in text and '<span class="fail">no</span>' in text
    assert "colour+shape accuracy (recall only; information, not a floor)" in text


def test_headline_table_lists_all_seven_floors_and_figure_4(tmp_path: Path) -> None:
    stages = _fake_run(tmp_path)
    text = render_report(tmp_path, stages).read_text()
    headline = text[text.index("<h2>Headline results</h2>"):text.index("<h2>Paper claim")]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["floors"]) == 7
    for c in summary["floors"]:
        assert html.escape(c["name"]) in headline and html.escape(c["definition"]) in headline
    assert headline.count('<span class="muted">not run</span>') == 3  # tail, editing, in-context
    assert "Figure 4: CD-K vs top-p vs the two combined" in headline
    assert summary["figure_4"]["strategies"]["cd_k"] is None  # not in this run: reported as such
