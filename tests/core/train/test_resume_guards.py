"""Resume guards (issue 20 item 3): a checkpoint records the config fingerprint and the data
hashes; resuming with a different lr, global batch, seed, architecture or dataset fails before
training, listing the differing dotted keys (old -> new), unless the change is allowed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cm3leon.core.config import load_config
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.callbacks import ResumeMismatchError
from cm3leon.core.train.cli import train_command
from cm3leon.core.train.composer_checkpoints import read_run_info
from cm3leon.core.train.config import RESUME_EXEMPT_KEYS, config_fingerprint
from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import tiny_config, write_config, write_token_dataset


def _cfg(run_dir: Path, data: Path, **overrides: object) -> dict:
    return tiny_config(run_dir, {"ra": {"local": str(data)}}, **{"max_duration": "2ba", **overrides})


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, token_data: Path) -> Path:
    """Two steps, checkpointed at ba2: the run every test tries to resume (on a copy)."""
    run_dir = tmp_path_factory.mktemp("guards") / "run"
    train(load_config(TrainConfig, data=_cfg(run_dir, token_data)))
    return run_dir


@pytest.fixture
def copied_run(tmp_path: Path, first_run: Path) -> Path:
    shutil.copytree(first_run, tmp_path / "run", symlinks=True)
    return tmp_path / "run"


def _steps(run_dir: Path) -> list[int]:
    return [r["batch"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss/train/total" in r]


def test_the_checkpoint_records_the_fingerprint_and_data_hash(first_run: Path, token_data: Path) -> None:
    info = read_run_info(first_run / "checkpoints" / "latest-rank0.pt")
    assert info is not None
    fingerprint = info["fingerprint"]
    assert fingerprint["optim.lr"] == 3.0e-3 and fingerprint["data.global_batch_size"] == 8
    assert fingerprint["seed"] == 3 and fingerprint["model.options.d_model"] == 32
    marker = (token_data / "COMPLETE").read_text()
    assert fingerprint["assets.streams.ra.manifest_sha256"] in marker
    assert not [k for k in fingerprint if k.startswith(("logging.", "checkpoint.")) or k == "max_duration"]


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("optim.lr", 1.0e-3, "optim.lr: 0.003 -> 0.001"),
    ("data.global_batch_size", 16, "data.global_batch_size: 8 -> 16"),
    ("seed", 4, "seed: 3 -> 4"),
    ("data.cm3.enabled", False, "data.cm3.enabled: True -> False"),
])
def test_a_changed_setting_fails_before_training_naming_the_key(copied_run: Path, token_data: Path,
                                                                key: str, value: object, shown: str) -> None:
    cfg = load_config(TrainConfig, data=_cfg(copied_run, token_data, max_duration="4ba", **{key: value}))
    with pytest.raises(ResumeMismatchError) as err:
        train(cfg)
    assert shown in str(err.value) and f"checkpoint.allow_changes=[{key}]" in str(err.value)
    assert _steps(copied_run) == [0, 1]  # nothing trained
    assert not (copied_run / "checkpoints" / "ep0-ba4-rank0.pt").exists()


def test_a_changed_architecture_is_named_not_a_load_state_dict_traceback(copied_run: Path,
                                                                          token_data: Path) -> None:
    cfg = load_config(TrainConfig, data=_cfg(copied_run, token_data, max_duration="4ba",
                                             **{"model.options.d_model": 48}))
    with pytest.raises(ResumeMismatchError, match=r"transformer\.d_model: 32 -> 48") as err:
        train(cfg)
    assert "size mismatch" not in str(err.value)
    # Allowing the config key cannot make the weights fit.
    cfg.checkpoint.allow_changes = ["model.*"]
    with pytest.raises(ResumeMismatchError, match="architecture"):
        train(cfg)


def test_changed_data_is_named_by_its_hash(copied_run: Path, tmp_path: Path) -> None:
    other = write_token_dataset(tmp_path / "other", 64, seed=1, retrieved=1)
    cfg = load_config(TrainConfig, data=_cfg(copied_run, other, max_duration="4ba"))
    with pytest.raises(ResumeMismatchError, match=r"assets\.streams\.ra\.manifest_sha256: '[0-9a-f]{64}' -> "):
        train(cfg)
    cfg.checkpoint.allow_changes = ["assets.*"]
    assert train(cfg).batches == 4


def test_allowed_and_exempt_changes_resume(copied_run: Path, token_data: Path) -> None:
    """``checkpoint.allow_changes`` lets the lr change; max_duration, microbatching and
    logging are exempt; the new checkpoint records the new value."""
    cfg = load_config(TrainConfig, data=_cfg(copied_run, token_data, max_duration="4ba", **{
        "optim.lr": 1.0e-3, "checkpoint.allow_changes": ["optim.lr"],
        "device_train_microbatch_size": 4, "logging.console_interval": "1ba"}))
    assert train(cfg).batches == 4
    assert _steps(copied_run) == [0, 1, 2, 3]
    info = read_run_info(copied_run / "checkpoints" / "ep0-ba4-rank0.pt")
    assert info is not None and info["fingerprint"]["optim.lr"] == 1.0e-3


def test_cli_flag_allows_a_change(copied_run: Path, token_data: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg.yaml", _cfg(copied_run, token_data, max_duration="4ba",
                                                      **{"optim.lr": 1.0e-3}))
    refused = CliRunner().invoke(train_command, ["run", str(config)])
    assert refused.exit_code == 1 and "optim.lr: 0.003 -> 0.001" in refused.output, refused.output
    allowed = CliRunner().invoke(train_command, ["run", str(config), "--allow-config-change", "optim.lr"])
    assert allowed.exit_code == 0, allowed.output
    assert _steps(copied_run) == [0, 1, 2, 3]


def test_fingerprint_leaves_out_exactly_the_exempt_keys(tmp_path: Path, token_data: Path) -> None:
    cfg = load_config(TrainConfig, data=_cfg(tmp_path / "run", token_data))
    fingerprint = config_fingerprint(cfg)
    assert {"optim.lr", "data.global_batch_size", "seed", "data.seq_len", "scheduler.warmup",
            "data.shuffle_seed", "model.options.d_model", "precision"} <= set(fingerprint)
    for key in ("max_duration", "run_dir", "device_train_microbatch_size", "logging.log_level",
                "checkpoint.autoresume", "checkpoint.load_path", "checkpoint.allow_changes",
                "data.streams.ra.local", "data.num_workers"):
        assert key not in fingerprint, key
    assert not [k for k in fingerprint if k == "eval" or k.startswith("eval.")]
    assert "logging.*" in RESUME_EXEMPT_KEYS
