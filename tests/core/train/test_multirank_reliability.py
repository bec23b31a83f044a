"""Reliability list rows 10 and 11 on 2 gloo ranks (``composer -n 2``, DDP):

* **10**: after *every* step both ranks hold bitwise the same parameters (a probe hashes
  them each step on each rank); the launcher exits 0; afterwards no rank process and no
  child of one (dataloader workers, streaming's resource tracker) is alive, and no
  ``/dev/shm`` segment registering the run's data is left.
* **11**: rank 1 alone is SIGKILLed after step 5 (``dist_timeout=30``): the launcher exits
  non-zero within ``dist_timeout + 30 s``, rank 0 and every child are gone, and the same
  command then autoresumes and reaches the uninterrupted run's per-step losses and
  per-step parameter hashes bitwise; again nothing is left behind.

Both runs use 2 persistent loader workers per rank (the shipped GPU configs' setting,
scaled down), so "no orphan" covers real worker processes.  Bitwise, not a tolerance: on
CPU with one thread per process every kernel and the gloo all-reduce of 2 ranks are
deterministic, and the checkpoint restores the weights, AdamW moments, schedule and the
loader position exactly (``test_resume.py``, ``test_workers.py``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from cm3leon.core.train.logs import read_metrics
from cm3leon.core.train.stream_memory import segments_naming
from tests.core.train._helpers import launch_ranks, tiny_config, write_config, write_token_dataset

PROBE = str(Path(__file__).with_name("_probe_train.py"))
STEPS, KILL_AT, DIST_TIMEOUT = 10, 5, 30  # 8 steps per epoch: the resumed part crosses into epoch 1

pytestmark = [pytest.mark.integration, pytest.mark.world_size(2), pytest.mark.slow]


def _config(tmp: Path, data: Path) -> Path:
    cfg = tiny_config(tmp / "run", {"ra": {"local": str(data)}}, max_duration=f"{STEPS}ba", dist_timeout=DIST_TIMEOUT,
                      **{"checkpoint.save_interval": "2ba", "data.num_workers": 2, "data.persistent_workers": True})
    return write_config(tmp / "run.yaml", cfg)


def _run(config: Path, log: Path, *, timeout: float = 900, **env: str) -> tuple[int, float]:
    """Launch 2 ranks, wait; returns (exit code, time.time() at exit)."""
    proc = launch_ranks(2, PROBE, config, log, **env)
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, time.time()


def _hashes(run_dir: Path, rank: int) -> dict[int, str]:
    """Per-step parameter hash of one rank; on a restart the re-run step's newest row."""
    rows = (run_dir / "probe" / f"steps-rank{rank}.jsonl").read_text().splitlines()
    return {r["batch"]: r["sha256"] for r in map(json.loads, rows)}


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["batch"]: r["loss/train/total"] for r in read_metrics(run_dir / "metrics.jsonl")
            if "loss/train/total" in r}


def _run_pids(run_dir: Path) -> tuple[list[int], list[int]]:
    """(rank pids, pids of their children) recorded by the probe, over every start."""
    probe = run_dir / "probe"
    ranks = [int(p.read_text()) for p in probe.glob("pid-rank*")]
    children = [pid for p in probe.glob("children-rank*.json") for pid in json.loads(p.read_text())]
    return ranks, children


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _assert_nothing_left(run_dir: Path, data: Path) -> None:
    ranks, children = _run_pids(run_dir)
    assert len(ranks) == 2 and len(children) >= 4, (ranks, children)  # 2 workers per rank at least
    deadline = time.monotonic() + 10  # the kernel reaps children a moment after their parent
    while (alive := [p for p in ranks + children if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive, f"still running after the launcher exited: {[psutil.Process(p).cmdline() for p in alive]}"
    assert segments_naming([data]) == {}, f"leftover streaming shared memory: {segments_naming([data])}"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The uninterrupted 2-rank run: (data, run_dir)."""
    tmp = tmp_path_factory.mktemp("baseline")
    data = write_token_dataset(tmp / "data", 64, retrieved=1)
    started = time.monotonic()
    code, _ = _run(_config(tmp, data), tmp / "launcher.log")
    print(f"baseline: {STEPS} steps on 2 ranks in {time.monotonic() - started:.0f} s")
    assert code == 0, (tmp / "launcher.log").read_text()[-4000:]
    return data, tmp / "run"


def test_two_ranks_agree_after_every_step_and_leave_nothing_behind(baseline: tuple[Path, Path]) -> None:
    data, run_dir = baseline
    rank0, rank1 = _hashes(run_dir, 0), _hashes(run_dir, 1)
    assert sorted(rank0) == list(range(1, STEPS + 1))
    for step in rank0:
        assert rank0[step] == rank1[step], f"ranks disagree after step {step}"
    assert len(set(rank0.values())) >= STEPS - 2  # the weights change (lr 0 at the first warm-up step)
    assert "Traceback" not in (run_dir.parent / "launcher.log").read_text()
    _assert_nothing_left(run_dir, data)


def test_rank_death_then_autoresume_reaches_the_baseline(tmp_path: Path, baseline: tuple[Path, Path]) -> None:
    data, reference = baseline
    config, log = _config(tmp_path, data), tmp_path / "launcher.log"
    run_dir = tmp_path / "run"

    code, exited = _run(config, log, CM3LEON_PROBE_KILL=f"{KILL_AT}:1")
    killed = float((run_dir / "probe" / "killed-rank1").read_text())
    print(f"launcher exited with {code} {exited - killed:.1f} s after rank 1 was SIGKILLed")
    assert code != 0, log.read_text()[-4000:]
    assert exited - killed < DIST_TIMEOUT + 30, f"launcher took {exited - killed:.0f} s to notice the dead rank"
    assert not (run_dir / "probe" / "killed-rank0").exists()
    _assert_nothing_left(run_dir, data)  # rank 0 and both ranks' workers were taken down

    code, _ = _run(config, log)  # the same command: autoresume from the step-4 checkpoint
    assert code == 0, log.read_text()[-4000:]
    assert _losses(run_dir) == _losses(reference)  # bitwise, all 10 steps
    for rank in (0, 1):
        assert _hashes(run_dir, rank) == _hashes(reference, rank), f"rank {rank}"
    _assert_nothing_left(run_dir, data)
