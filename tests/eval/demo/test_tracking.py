"""``cm3leon demo`` logs its training curves and evaluation results to the configured trackers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cm3leon.core.config import ConfigError
from cm3leon.core.io import atomic_write_json
from cm3leon.eval.demo import Layout, build_stages, load_demo_config, run_demo
from cm3leon.eval.demo.runner import StageOutcome, fingerprint
from cm3leon.eval.demo.tracking import log_demo, open_demo_trackers, training_series

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

LOSSES = [5.0, 4.5, 4.25]
CELLS = {"k=0__strategy=top_p": {"object_acc": 0.25, "fid": 80.0},
         "k=2__strategy=cd_k": {"object_acc": 0.5, "fid": 70.0}}  # fmt: skip


def _artefacts(out: Path) -> None:
    """What the pretrain, text_to_image and vqa stages leave behind (hand-written)."""
    (out / "pretrain").mkdir(parents=True)
    rows = [{"batch": i, "loss/train/total": v, "trainer/lr": 0.1} for i, v in enumerate(LOSSES)]
    lines = [json.dumps(r) for r in rows] + ['{"batch": 3, "loss/train/to']  # last line cut by a crash
    (out / "pretrain" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for cell, results in CELLS.items():
        k, strategy = cell.split("__")
        atomic_write_json(out / "eval" / "text_to_image" / "runs" / cell / "result.json", {
            "run": cell, "fingerprint": f"text_to_image:{cell}", "results": results,
            "labels": {"k": int(k[2:]), "strategy": strategy.split("=")[1]}})  # fmt: skip
    atomic_write_json(out / "eval" / "vqa" / "results.json", {
        "accuracy": 0.4, "baseline": {"majority": 0.2}, "per_question": {"q1": 1.0, "q2": 0.0}})


def _outcomes(stages) -> list[StageOutcome]:
    return [StageOutcome(s.name, "ran", 1.0, f"fp-{s.name}") for s in stages]


def _mlflow(out: Path) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    return {r.info.run_name: r for r in runs}, client


def test_demo_logs_curves_cells_and_protocol_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_demo_config(None, ["trackers=[{name: tensorboard}, {name: mlflow}]", f"out={tmp_path}"], quick=True)
    assert [t["name"] for t in cfg.trackers] == ["tensorboard", "mlflow"]
    stages = build_stages(cfg, Layout(tmp_path))
    _artefacts(tmp_path)
    trackers = open_demo_trackers(cfg.trackers, tmp_path)
    logged = log_demo(trackers, stages, _outcomes(stages), tmp_path)
    assert {line.split(":", 1)[0] for line in logged} == {"pretrain", "text_to_image", "vqa"}
    events = EventAccumulator(str(tmp_path / "tensorboard" / "demo" / "pretrain"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("loss/train/total")] == list(enumerate(LOSSES))
    runs, client = _mlflow(tmp_path)
    assert sorted(runs) == ["demo/pretrain", "demo/text_to_image/k=0__strategy=top_p",
                            "demo/text_to_image/k=2__strategy=cd_k", "demo/vqa"]  # fmt: skip
    history = client.get_metric_history(runs["demo/pretrain"].info.run_id, "loss/train/total")
    assert sorted((m.step, m.value) for m in history) == list(enumerate(LOSSES))
    cell = runs["demo/text_to_image/k=2__strategy=cd_k"]
    assert cell.data.metrics == {"object_acc": 0.5, "fid": 70.0}
    assert cell.data.params == {"stage": "text_to_image", "k": "2", "strategy": "cd_k"}
    assert runs["demo/vqa"].data.metrics == {"accuracy": 0.4, "baseline.majority": 0.2}  # no per_* items
    # Logged once: a second pass (a re-run demo, every stage cached) adds nothing.
    assert log_demo(trackers, stages, _outcomes(stages), tmp_path) == []
    assert len(_mlflow(tmp_path)[0]) == 4


def test_demo_logs_the_plain_model_curves_when_it_ran(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_demo_config(None, ["trackers=[{name: tensorboard}]", f"out={tmp_path}", "plain.enabled=true",
                                  "pretrain.max_duration=6000tok"], quick=True)  # fmt: skip
    stages = build_stages(cfg, Layout(tmp_path))
    _artefacts(tmp_path)
    (tmp_path / "plain_pretrain").mkdir()
    rows = [{"batch": i, "loss/train/total": v + 1} for i, v in enumerate(LOSSES)]
    (tmp_path / "plain_pretrain" / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    logged = log_demo(open_demo_trackers(cfg.trackers, tmp_path), stages, _outcomes(stages), tmp_path)
    assert {line.split(":", 1)[0] for line in logged} == {"pretrain", "plain_pretrain", "text_to_image", "vqa"}
    events = EventAccumulator(str(tmp_path / "tensorboard" / "demo" / "plain_pretrain"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("loss/train/total")] == [(i, v + 1) for i, v in
                                                                               enumerate(LOSSES)]  # fmt: skip


def test_training_series_skips_cut_lines(tmp_path: Path) -> None:
    _artefacts(tmp_path)
    series = training_series(tmp_path / "pretrain" / "metrics.jsonl")
    assert series == {i: {"loss/train/total": v, "trainer/lr": 0.1} for i, v in enumerate(LOSSES)}


def test_default_demo_has_no_trackers_and_trackers_change_no_stage(tmp_path: Path) -> None:
    plain = load_demo_config(None, [f"out={tmp_path}"], quick=True)
    tracked = load_demo_config(None, [f"out={tmp_path}", "trackers=[{name: mlflow}]"], quick=True)
    assert plain.trackers == [] and open_demo_trackers(plain.trackers, tmp_path) is None
    fps = [{s.name: fingerprint(s, {d: "x" for d in s.depends}, tmp_path) for s in build_stages(c, Layout(tmp_path))}
           for c in (plain, tracked)]  # fmt: skip
    assert fps[0] == fps[1]  # adding a tracker to a finished demo re-runs nothing


def test_a_bad_tracker_fails_before_any_stage(tmp_path: Path) -> None:
    cfg = load_demo_config(None, [f"out={tmp_path / 'd'}", "trackers=[{name: comet}]"], quick=True)
    with pytest.raises(ConfigError, match=r"demo config: trackers\[0\]\.name: unknown tracker 'comet'"):
        run_demo(cfg, dry_run=True, progress=False)
    assert not (tmp_path / "d").exists()
