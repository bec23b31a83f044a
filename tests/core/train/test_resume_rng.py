"""A real SIGKILL mid-epoch, then the same command, with a stochastic augmentation switched on
(reliability rows 5 and 8), with 0 and 2 loader workers.

``_stochastic_train.py`` replaces ~15% of the input tokens at random every step (torch's
global RNG) and draws from numpy's and Python's global RNGs, recording the draws and the
sample ids of every step (collected in the loader workers).  After the kill at the ba6 save
and the restart, every step's sample ids, random draws and loss must equal the uninterrupted
run's, bitwise.  Composer restores the checkpoint's RNG only at an epoch boundary or while
spinning a dataloader; a mid-epoch StreamingDataset resume started from ``seed_all(seed)``
and every draw after the resume differed (the torch, numpy and python draws of steps 6-11
all did, measured) until ``AtomicCheckpointSaver`` restored it.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest

from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import PYTHON, run, tiny_config, write_config

PROBE = str(Path(__file__).with_name("_stochastic_train.py"))
STEPS, KILL_AT = 12, 6  # 8 steps per epoch: killed mid-epoch 0, the resumed part crosses into epoch 1

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _steps(run_dir: Path) -> dict[int, dict]:
    """The record of each step; a step recorded again after a restart keeps its last record."""
    rows = [json.loads(line) for line in (run_dir / "probe" / "steps.jsonl").read_text().splitlines()]
    return {row["batch"]: row for row in rows}


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["batch"]: r["loss/train/total"] for r in read_metrics(run_dir / "metrics.jsonl")
            if "loss/train/total" in r}


@pytest.mark.parametrize("workers", [0, 2])
def test_kill_and_restart_keeps_the_samples_and_the_random_draws(tmp_path: Path, token_data: Path,
                                                                 workers: int) -> None:
    extra = {"data.num_workers": workers, "data.persistent_workers": True, "data.prefetch_factor": 2} if workers else {}

    def config(name: str) -> Path:
        cfg = tiny_config(tmp_path / name, {"ra": {"local": str(token_data)}}, max_duration=f"{STEPS}ba",
                          **{"checkpoint.save_interval": "2ba", **extra})
        return write_config(tmp_path / f"{name}.yaml", cfg)

    reference, killed, log = config("reference"), config("killed"), tmp_path / "train.log"
    assert run([PYTHON, PROBE, "none", "0", str(reference)], log).returncode == 0, log.read_text()[-3000:]
    died = run([PYTHON, PROBE, "before_latest", str(KILL_AT), str(killed)], log)
    assert died.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert run([PYTHON, PROBE, "none", "0", str(killed)], log).returncode == 0, log.read_text()[-3000:]

    ref, res = _steps(tmp_path / "reference"), _steps(tmp_path / "killed")
    assert sorted(ref) == sorted(res) == list(range(STEPS))
    for step in range(STEPS):
        assert len(ref[step]["ids"]) == 8
        assert res[step] == ref[step], f"step {step}: {res[step]} vs {ref[step]}"  # ids and every draw
    everything = Counter(i for step in ref.values() for i in step["ids"])
    assert everything == Counter(i for step in res.values() for i in step["ids"])  # none lost or repeated
    assert set(everything.values()) <= {1, 2} and len(everything) == 64  # one epoch and a half of 64 samples
    assert _losses(tmp_path / "killed") == _losses(tmp_path / "reference")  # bitwise
