"""Exact resumption: a run interrupted (exception, or SIGKILL of the process) and restarted
with the same command reproduces the uninterrupted run's per-step losses and final weights.

Equality is **bitwise**: on CPU with one thread per process every kernel is deterministic,
the checkpoint restores weights, AdamW moments, LR-schedule state, the timestamp and the
``StreamingDataset`` position exactly, and the CM3 spans of a sample are a pure function of
``(seed, epoch, sample id)``; nothing is recomputed in a different order.  The run crosses
an epoch boundary (8 steps per epoch, 12 steps), so both mid-epoch and next-epoch
resumption are covered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from composer.core import Callback, State
from composer.loggers import Logger

from cm3leon.core.config import load_config
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.composer_checkpoints import load_checkpoint_state
from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import (
    REPO,
    run,
    subprocess_env,
    tiny_config,
    train_cmd,
    write_config,
)

STEPS = 12
FINAL = f"ep1-ba{STEPS}-rank0.pt"


def _config(run_dir: Path, data: Path) -> dict:
    return tiny_config(run_dir, {"ra": {"local": str(data)}}, max_duration=f"{STEPS}ba",
                       **{"checkpoint.save_interval": "2ba"})


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["batch"]: r["loss/train/total"] for r in read_metrics(run_dir / "metrics.jsonl")
            if "loss/train/total" in r}


def _final_state(run_dir: Path) -> dict:
    return load_checkpoint_state(run_dir / "checkpoints" / FINAL)["state"]


def _assert_same_run(reference: Path, resumed: Path) -> None:
    ref, res = _losses(reference), _losses(resumed)
    assert sorted(ref) == list(range(STEPS))
    assert res == ref  # bitwise: the floats are identical, not merely close
    a, b = _final_state(reference), _final_state(resumed)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    moments_a = next(iter(a["optimizers"].values()))["state"]
    moments_b = next(iter(b["optimizers"].values()))["state"]
    for key, s in moments_a.items():
        assert torch.equal(s["exp_avg"], moments_b[key]["exp_avg"]) and torch.equal(s["exp_avg_sq"], moments_b[key]["exp_avg_sq"])


class _CrashAt(Callback):
    """Raise (as a crashed process would stop) at the end of batch ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def batch_end(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) == self.n:
            raise KeyboardInterrupt(f"simulated crash after batch {self.n}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, token_data: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(load_config(TrainConfig, data=_config(run_dir, token_data)))
    return run_dir


def test_resume_after_crash_is_exact(tmp_path: Path, token_data: Path, reference: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = load_config(TrainConfig, data=_config(run_dir, token_data))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, extra_callbacks=[_CrashAt(5)])  # last checkpoint: ba4, mid-epoch 0
    assert os.readlink(run_dir / "checkpoints" / "latest-rank0.pt") == "ep0-ba4-rank0.pt"
    result = train(cfg)  # the same call again: autoresume
    assert result.batches == STEPS
    _assert_same_run(reference, run_dir)


# ------------------------------------------------------------- real SIGKILLs
def _kill_when(cmd: list[str], run_dir: Path, checkpoint: str, log: Path) -> None:
    """Start ``cmd``; SIGKILL it as soon as ``checkpoint`` exists (mid-run, maybe mid-save)."""
    target = run_dir / "checkpoints" / checkpoint
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    try:
        while not target.exists():
            assert proc.poll() is None, f"finished before {checkpoint} appeared: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{checkpoint} never appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.integration
@pytest.mark.parametrize("kill_after", [
    ["ep0-ba6-rank0.pt"],
    pytest.param(["ep0-ba4-rank0.pt", "ep1-ba10-rank0.pt"], marks=pytest.mark.slow),
], ids=["one-kill", "two-kills"])
def test_sigkill_and_restart_with_the_same_command_is_exact(tmp_path: Path, token_data: Path,
                                                            kill_after: list[str]) -> None:
    reference_dir = tmp_path / "reference"
    ref_cfg = write_config(tmp_path / "reference.yaml", _config(reference_dir, token_data))
    assert run(train_cmd(ref_cfg), tmp_path / "reference.log").returncode == 0
    run_dir = tmp_path / "run"
    cmd = train_cmd(write_config(tmp_path / "run.yaml", _config(run_dir, token_data)))
    for checkpoint in kill_after:
        _kill_when(cmd, run_dir, checkpoint, tmp_path / "run.log")
    assert run(cmd, tmp_path / "run.log").returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    _assert_same_run(reference_dir, run_dir)
