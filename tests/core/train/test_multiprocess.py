"""``composer -n 2`` on CPU (gloo over loopback): agreement across ranks, clean exit, rank failure."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import (
    COMPOSER,
    REPO,
    subprocess_env,
    tiny_config,
    write_config,
    write_token_dataset,
)

PROBE = str(Path(__file__).with_name("_probe_train.py"))

pytestmark = [pytest.mark.integration, pytest.mark.world_size(2)]


def _launch(config: Path, log: Path, *overrides: str) -> subprocess.Popen:
    cmd = [COMPOSER, "-n", "2", "--master_port", str(29500 + os.getpid() % 1000), PROBE, str(config), *overrides]
    return subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_two_ranks_train_agree_and_exit_cleanly(tmp_path: Path) -> None:
    """One example has NaN loss weights: only the rank that draws it sees a NaN loss, yet both
    skip that step (the flag is all-reduced; gradient checks are off so nothing else would
    catch it), and both replicas end with the same finite weights."""
    data = write_token_dataset(tmp_path / "data", 64, retrieved=1, nan_weight_ids=[5])
    run = tmp_path / "run"
    config = write_config(tmp_path / "cfg.yaml", tiny_config(run, {"ra": {"local": str(data)}},
                                                             max_duration="6ba",
                                                             **{"nonfinite.check_gradients": False,
                                                                "checkpoint.save_interval": "3ba"}))
    proc = _launch(config, tmp_path / "launcher.log")
    try:
        assert proc.wait(timeout=600) == 0, (tmp_path / "launcher.log").read_text()[-4000:]
    finally:
        _kill_group(proc)
    p0 = torch.load(run / "probe" / "params-rank0.pt", weights_only=True)
    p1 = torch.load(run / "probe" / "params-rank1.pt", weights_only=True)
    assert p0.keys() == p1.keys() and p0
    for name in p0:
        assert torch.isfinite(p0[name]).all(), name
        assert torch.equal(p0[name], p1[name]), name
    rows = read_metrics(run / "metrics.jsonl")
    assert max(r.get("nonfinite/skipped_steps", 0) for r in rows) == 1
    assert (run / "checkpoints" / "ep0-ba6-rank0.pt").is_file()
    assert "Traceback" not in (tmp_path / "launcher.log").read_text()


@pytest.mark.slow
def test_killing_one_rank_makes_the_launcher_fail_promptly(tmp_path: Path) -> None:
    data = write_token_dataset(tmp_path / "data", 64)
    run = tmp_path / "run"
    config = write_config(tmp_path / "cfg.yaml", tiny_config(run, {"ra": {"local": str(data)}},
                                                             max_duration="100000ba",
                                                             **{"checkpoint.save_interval": "1000ba"}))
    proc = _launch(config, tmp_path / "launcher.log")
    try:
        deadline = time.monotonic() + 600
        pid_file, metrics = run / "probe" / "pid-rank1", run / "metrics.jsonl"
        while not (pid_file.exists() and metrics.exists() and metrics.stat().st_size > 0):
            assert proc.poll() is None, (tmp_path / "launcher.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.5)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        killed = time.monotonic()
        code = proc.wait(timeout=120)
        elapsed = time.monotonic() - killed
    finally:
        _kill_group(proc)
    print(f"launcher exited with {code} {elapsed:.1f}s after rank 1 was killed")
    assert code != 0
    assert elapsed < 60, f"launcher took {elapsed:.0f}s to notice the dead rank"
