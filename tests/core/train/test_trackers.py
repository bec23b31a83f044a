"""Experiment trackers (``logging.trackers``): each one gets the training loss the run logged.

Every tracker test trains cm3leon_tiny for 3 steps in-process with one tracker, then reads
the loss back from what the tracker wrote -- TensorBoard event files, the MLflow file
store, the W&B offline run's transaction log -- and compares it, step by step, with the
run's ``metrics.jsonl``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from cm3leon.core.config import ConfigError, load_config
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train import trackers as trackers_module
from cm3leon.core.train.config import validate_train_config
from cm3leon.core.train.logs import read_metrics, series
from cm3leon.core.train.trackers import EXTRA, TRACKERS, tracker_problems
from tests.core.train._helpers import tiny_config

LOSS = "loss/train/total"
STEPS = 3


def _train_with(tmp_path: Path, token_data: Path, *trackers: dict[str, Any]) -> tuple[TrainConfig, list[float]]:
    run_dir = tmp_path / "run"
    cfg = load_config(TrainConfig, data=tiny_config(
        run_dir, {"ra": {"local": str(token_data)}},
        **{"max_duration": f"{STEPS}ba", "checkpoint.save_interval": "100ba",
           "logging.trackers": list(trackers)}))
    result = train(cfg)
    assert result.batches == STEPS
    steps, losses = series(read_metrics(result.metrics), LOSS)
    assert len(losses) == STEPS
    return cfg, [float(x) for x in losses]


def test_tensorboard_event_files_hold_the_training_loss(tmp_path: Path, token_data: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, expected = _train_with(tmp_path, token_data, {"name": "tensorboard"})
    log_dir = Path(cfg.run_dir) / "tensorboard" / cfg.run_name
    events = EventAccumulator(str(log_dir))
    events.Reload()
    scalars = events.Scalars(LOSS)
    steps = [s.step for s in scalars]
    assert steps == sorted(set(steps)) and len(steps) == STEPS
    assert [s.value for s in scalars] == pytest.approx(expected, rel=1e-6)


def test_mlflow_file_store_holds_the_training_loss(
    tmp_path: Path, token_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    # build_trackers opts in to MLflow 3's file store for a file:// URI; monkeypatch
    # restores the environment after the test (and lets the reader below open it).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").resolve().as_uri()
    _, expected = _train_with(tmp_path, token_data, {
        "name": "mlflow", "options": {"tracking_uri": uri, "experiment_name": "trackers-test"}})
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("trackers-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = sorted(client.get_metric_history(runs[0].info.run_id, LOSS), key=lambda m: m.step)
    assert len({m.step for m in history}) == STEPS
    assert [m.value for m in history] == pytest.approx(expected, rel=1e-6)


def _wandb_records(run_file: Path) -> list[bytes]:
    """The records of a W&B ``.wandb`` transaction log (LevelDB log format, as wandb writes it).

    A 7-byte file header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of
    records, each a 7-byte header -- CRC32C (4), length (2, little-endian), type (1: full,
    2/3/4: first/middle/last fragment) -- and its bytes; a block tail shorter than a header
    is padding.  (wandb >= 0.2x ships no Python reader; its Go core writes this format.)
    """
    raw = run_file.read_bytes()
    assert raw[:4] == b":W&B" and raw[4:6] == b"\xe1\xbe", raw[:7]
    block, pos, records, pending = 32768, 7, [], b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(raw[pos + 4:pos + 6], "little"), raw[pos + 6]
        data, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        pending = data if kind in (1, 2) else pending + data
        if kind in (1, 4):
            records.append(pending)
    return records


def _wandb_history(run_file: Path, key: str) -> dict[int, float]:
    """``{_step: value}`` of ``key`` in the history records of a ``.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    out: dict[int, float] = {}
    for data in _wandb_records(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") != "history":
            continue
        items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
        if key in items:
            out[int(items["_step"])] = float(items[key])
    return out


def test_wandb_offline_run_holds_the_training_loss(
    tmp_path: Path, token_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg, expected = _train_with(tmp_path, token_data, {"name": "wandb", "options": {"project": "t"}})
    run_files = list((Path(cfg.run_dir) / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1, run_files
    logged = _wandb_history(run_files[0], LOSS)
    # Composer logs with step = the batch count; W&B's own _step counts log calls.
    assert len(logged) == STEPS
    assert [logged[s] for s in sorted(logged)] == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ validation, no training
def _validate(tmp_path: Path, trackers: list[dict[str, Any]]) -> None:
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path, {"ra": {"local": str(tmp_path)}},
                                                    **{"logging.trackers": trackers}))
    validate_train_config(cfg, source="c.yaml")


def test_unknown_tracker_and_option_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _validate(tmp_path, [{"name": "tensorbord"}, {"name": "mlflow", "options": {"tracking_url": "x"}}])
    message = str(err.value)
    assert "logging.trackers[0].name: unknown tracker 'tensorbord'" in message
    assert "'mlflow', 'tensorboard', 'wandb'" in message
    assert "logging.trackers[1].options: unknown option(s) ['tracking_url']" in message


def test_credentials_in_options_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CM3LEON_TEST_WANDB_KEY", "s3cr3t-value")
    with pytest.raises(ConfigError) as err:
        _validate(tmp_path, [{"name": "wandb", "options": {
            "init_kwargs": {"settings": {"api_key": "${oc.env:CM3LEON_TEST_WANDB_KEY}"}}}}])
    message = str(err.value)
    assert "logging.trackers[0].options.init_kwargs.settings.api_key: credentials come from the environment (WANDB_API_KEY)" in message
    assert "s3cr3t-value" not in message


def test_missing_library_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = trackers_module.importlib.util.find_spec
    monkeypatch.setattr(trackers_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    problems = tracker_problems([{"name": "mlflow"}, {"name": "tensorboard"}])
    assert problems == [f"logging.trackers[0]: tracker 'mlflow' needs the 'mlflow' package, "
                        f"which is not installed: pip install '{EXTRA}'"]


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_option_lists_match_composer(name: str) -> None:
    import composer.loggers

    spec = TRACKERS[name]
    params = inspect.signature(getattr(composer.loggers, spec.logger)).parameters
    assert spec.options == tuple(p for p in params if p != "self")


def test_mlflow_file_store_is_opted_in_only_for_file_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    trackers_module._allow_file_store("sqlite:///x/mlflow.db")
    trackers_module._allow_file_store("http://mlflow.internal:5000")
    assert "MLFLOW_ALLOW_FILE_STORE" not in trackers_module.os.environ
    trackers_module._allow_file_store("file:///x/mlruns")
    assert trackers_module.os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
