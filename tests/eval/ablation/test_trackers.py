"""``cm3leon ablate`` logs every cell to TensorBoard, MLflow (file store) and W&B (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cm3leon.core.config import ConfigError
from cm3leon.core.io import read_json
from cm3leon.eval import tracking
from cm3leon.eval.ablation.execute import AblationRunError, run_ablation
from tests.eval.ablation.test_execute import CALLS, ToyPlugin, _write

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

ABLATION = {
    "name": "tracked",
    "base": {"runner": "toy_fid", "config": {"cfg_scale": 3.0}},
    "matrix": {"model": ["350m", "7b"], "k": [0, 2]},
    "run_name": "${matrix.model}-k${matrix.k}",
}
CELLS = ["350m-k0", "350m-k2", "7b-k0", "7b-k2"]


@pytest.fixture(scope="module")
def registries():
    from cm3leon.core.plugin_manager import registries_with

    return registries_with(ToyPlugin)


@pytest.fixture(autouse=True)
def _file_store(monkeypatch: pytest.MonkeyPatch) -> None:
    CALLS.clear()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _results(out: Path) -> dict[str, dict]:
    return {c: read_json(out / "runs" / c / "result.json")["results"] for c in CELLS}


def _tensorboard(out: Path, cell: str, key: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard" / "tracked" / cell))
    events.Reload()
    return [s.value for s in events.Scalars(key)]


def _mlflow_runs(out: Path) -> dict[str, object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    return {r.info.run_name: r for r in runs}


def test_every_cell_reaches_tensorboard_and_mlflow_once(tmp_path: Path, registries) -> None:
    path = _write(tmp_path / "a.yaml", {**ABLATION, "trackers": [{"name": "tensorboard"}, {"name": "mlflow"}]})
    out = tmp_path / "out"
    run_ablation(path, out_dir=out, registries=registries, progress=False)
    results = _results(out)
    for cell in CELLS:
        assert _tensorboard(out, cell, "fid") == pytest.approx([results[cell]["fid"]], rel=1e-6)
        assert _tensorboard(out, cell, "detail.clip_score") == pytest.approx([results[cell]["detail"]["clip_score"]])
    runs = _mlflow_runs(out)
    assert sorted(runs) == [f"tracked/{c}" for c in CELLS]
    run = runs["tracked/7b-k2"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["fid"] == pytest.approx(results["7b-k2"]["fid"])
    assert run.data.params == {"model": "7b", "k": "2", "runner": "toy_fid"}
    # Resuming runs nothing and logs nothing twice.
    run_ablation(path, out_dir=out, registries=registries, progress=False)
    assert len(_mlflow_runs(out)) == len(CELLS) and len(_tensorboard(out, "7b-k2", "fid")) == 1


def test_cells_finished_before_a_tracker_was_added_are_logged_later(tmp_path: Path, registries) -> None:
    path = _write(tmp_path / "a.yaml", ABLATION)
    out = tmp_path / "out"
    run_ablation(path, out_dir=out, registries=registries, progress=False)
    assert not (out / "mlruns").exists()
    CALLS.clear()
    run_ablation(path, out_dir=out, registries=registries, progress=False, trackers=("mlflow",))
    assert CALLS == []  # nothing re-ran
    runs = _mlflow_runs(out)
    assert sorted(runs) == [f"tracked/{c}" for c in CELLS]
    assert runs["tracked/350m-k0"].data.metrics["fid"] == pytest.approx(_results(out)["350m-k0"]["fid"])


def test_a_failing_tracker_keeps_the_results_and_the_next_run_logs_them(
    tmp_path: Path, registries, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "a.yaml", {**ABLATION, "trackers": ["mlflow"]})
    out = tmp_path / "out"

    def broken(self, *args):
        raise OSError("tracking server unreachable (simulated)")

    with monkeypatch.context() as m:
        m.setattr(tracking._MLflow, "log", broken)
        with pytest.raises(AblationRunError, match="re-run to log them.*tracking server unreachable"):
            run_ablation(path, out_dir=out, registries=registries, progress=False)
    assert len(CALLS) == len(CELLS) and all((out / "runs" / c / "result.json").is_file() for c in CELLS)
    CALLS.clear()
    run_ablation(path, out_dir=out, registries=registries, progress=False)
    assert CALLS == [] and len(_mlflow_runs(out)) == len(CELLS)


@pytest.mark.parametrize(
    ("trackers", "message"),
    [
        ([{"name": "mlflow", "options": {"log_system_metrics": True}}],
         "trackers[0].options: ['log_system_metrics'] apply to training only"),
        ([{"name": "neptune"}], "trackers[0].name: unknown tracker 'neptune'"),
        ([{"name": "wandb", "options": {"init_kwargs": {"api_key": "x"}}}],
         "trackers[0].options.init_kwargs.api_key: credentials come from the environment"),
    ],
)
def test_bad_trackers_are_named_before_anything_runs(tmp_path: Path, registries, trackers, message) -> None:
    path = _write(tmp_path / "a.yaml", {**ABLATION, "trackers": trackers})
    with pytest.raises(ConfigError) as err:
        run_ablation(path, out_dir=tmp_path / "out", registries=registries, progress=False)
    assert message in str(err.value) and str(path) in str(err.value)
    assert CALLS == []


def test_cli_tracker_flag(tmp_path: Path, registries, monkeypatch: pytest.MonkeyPatch) -> None:
    from cm3leon.eval import cli
    from cm3leon.eval.ablation import execute

    path = _write(tmp_path / "a.yaml", ABLATION)
    original = execute.run_ablation
    monkeypatch.setattr(execute, "run_ablation", lambda *a, **k: original(*a, registries=registries, **k))
    result = CliRunner().invoke(cli.ablate_command, [str(path), "--out", str(tmp_path / "out"),
                                                     "--tracker", "tensorboard"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _tensorboard(tmp_path / "out", "350m-k0", "fid")


@pytest.mark.slow  # wandb starts its service process per run: ~50 s on 2 busy cores
def test_wandb_offline_holds_each_cell(tmp_path: Path, registries, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    from tests.core.train.test_trackers import _wandb_history

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    small = {**ABLATION, "matrix": {"model": ["350m", "7b"], "k": [0]}}
    path = _write(tmp_path / "a.yaml", {**small, "trackers": [{"name": "wandb", "options": {"project": "t"}}]})
    out = tmp_path / "out"
    run_ablation(path, out_dir=out, registries=registries, progress=False)
    files = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    logged = sorted(_wandb_history(f, "fid")[0] for f in files)
    expected = sorted(read_json(out / "runs" / c / "result.json")["results"]["fid"] for c in ("350m-k0", "7b-k0"))
    assert logged == pytest.approx(expected)
