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
from pathlib import Path

import pytest
import torch
from composer.core import Callback, State
from composer.loggers import Logger

from cm3leon.core.config import load_config
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.composer_checkpoints import (
    check_checkpoint,
    load_checkpoint_state,
    recover_save_folder,
)
from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import (
    PYTHON,
    run,
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
    """The uninterrupted run, in-process with one thread like the training subprocesses
    (``OMP_NUM_THREADS=1``), so their losses can be compared bitwise."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_config(TrainConfig, data=_config(run_dir, token_data)))
    finally:
        torch.set_num_threads(threads)
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


def test_recovery_points_latest_at_the_newest_committed_checkpoint(tmp_path: Path) -> None:
    """What a kill leaves, repaired without training: a partial save is removed, and a
    checkpoint renamed into place before ``latest`` moved becomes ``latest``."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("ep0-ba2-rank0.pt", "ep0-ba4-rank0.pt", "ep1-ba10-rank0.pt"):
        (folder / name).write_bytes(b"x")
    (folder / ".partial-ba12").mkdir()
    (folder / ".partial-ba12" / "ep1-ba12-rank0.pt").write_bytes(b"torn")
    os.symlink("ep0-ba4-rank0.pt", folder / "latest-rank0.pt")
    assert recover_save_folder(folder) == (folder / "ep1-ba10-rank0.pt").resolve()
    assert os.readlink(folder / "latest-rank0.pt") == "ep1-ba10-rank0.pt"  # batch order, not names
    assert not (folder / ".partial-ba12").exists()
    assert recover_save_folder(folder) == (folder / "ep1-ba10-rank0.pt").resolve()  # idempotent
    (folder / "latest-rank0.pt").unlink()  # killed before the first `latest` existed
    recover_save_folder(folder)
    assert os.readlink(folder / "latest-rank0.pt") == "ep1-ba10-rank0.pt"


# ------------------------------------------------------------- real SIGKILLs
KILL_TRAIN = str(Path(__file__).with_name("_kill_train.py"))


def _kill_at(point: str, batch: int, config: Path, log: Path) -> None:
    """Run the training command, SIGKILLed by itself at ``point`` of the save of ``batch``."""
    proc = run([PYTHON, KILL_TRAIN, point, str(batch), str(config)], log)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]


def _assert_only_complete_checkpoints(folder: Path) -> None:
    """Every final name loads; ``latest`` (if any) names one of them."""
    for path in folder.glob("ep*-ba*-rank0.pt"):
        check_checkpoint(path)
    latest = folder / "latest-rank0.pt"
    assert not latest.is_symlink() or latest.exists(), f"dangling {latest}"


@pytest.mark.integration
@pytest.mark.parametrize("kills", [
    [("before_latest", 6)],
    pytest.param([("before_write", 6)], marks=pytest.mark.slow),
    pytest.param([("mid_write", 6)], marks=pytest.mark.slow),
    pytest.param([("after_latest", 6)], marks=pytest.mark.slow),
    pytest.param([("before_latest", 4), ("mid_write", 10)], marks=pytest.mark.slow),
], ids=["before_latest", "before_write", "mid_write", "after_latest", "two-kills"])
def test_sigkill_and_restart_with_the_same_command_is_exact(
        tmp_path: Path, token_data: Path, reference: Path, kills: list[tuple[str, int]]) -> None:
    """A real SIGKILL at each named point of a checkpoint save (issue 20 item 7), then the
    unchanged command: it resumes from the newest committed checkpoint and reproduces the
    uninterrupted run bitwise.  ``before_latest`` is the window that used to block every
    restart with Composer's ``FileExistsError: ... may conflict with a future checkpoint``."""
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    config = write_config(tmp_path / "run.yaml", _config(run_dir, token_data))
    for point, batch in kills:
        _kill_at(point, batch, config, log)
        _assert_only_complete_checkpoints(run_dir / "checkpoints")
        if point == "before_latest":  # the window really was hit: committed, `latest` behind
            assert (run_dir / "checkpoints" / f"ep0-ba{batch}-rank0.pt").is_file()
            assert os.readlink(run_dir / "checkpoints" / "latest-rank0.pt") != f"ep0-ba{batch}-rank0.pt"
    assert run(train_cmd(config), log).returncode == 0, log.read_text()[-3000:]
    _assert_same_run(reference, run_dir)
