"""Directory locks (issue 20, item 1): a second writer fails at once naming the holder.

Before the lock, two ``data prepare`` runs into one ``--out`` both exited 0 and one
silently replaced the other's finished dataset, and two ``train run`` into one run
directory clashed on checkpoint names and lost metrics rows.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.io import atomic_directory, atomic_write_text
from cm3leon.core.locks import DirectoryLock, DirectoryLockedError, lock_path_for

_HOLD = (
    "import sys, time\n"
    "from cm3leon.core.locks import DirectoryLock\n"
    "lock = DirectoryLock(sys.argv[1]).acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def holder(tmp_path: Path):
    """Start another process holding the lock of a directory; yields (path, process)."""
    procs: list[subprocess.Popen] = []

    def start(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_second_holder_fails_naming_the_first(tmp_path: Path, holder) -> None:
    out = tmp_path / "out"
    proc = holder(out)
    with pytest.raises(DirectoryLockedError, match=rf"{out}: in use by pid {proc.pid} on "):
        DirectoryLock(out).acquire()


def test_lock_of_a_killed_process_is_reported_and_taken_over(tmp_path: Path, holder, caplog) -> None:
    out = tmp_path / "out"
    proc = holder(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with caplog.at_level(logging.WARNING, logger="cm3leon.core.locks"), DirectoryLock(out) as lock:
        assert lock.stale is not None and lock.stale["pid"] == proc.pid
        assert json.loads(lock_path_for(out).read_text())["pid"] == os.getpid()
    assert f"taking over a lock left by pid {proc.pid}" in caplog.text and "no longer running" in caplog.text
    assert not lock_path_for(out).exists()  # a clean release leaves nothing behind
    with DirectoryLock(out) as again:
        assert again.stale is None


def test_same_process_nests(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with DirectoryLock(out), atomic_directory(out) as tmp:
        atomic_write_text(tmp / "x.txt", "x")
    assert (out / "x.txt").read_text() == "x"


def test_data_prepare_into_a_held_directory_fails_and_writes_nothing(tmp_path: Path, holder) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"caption": "a red square", "codes": [1, 2, 3, 4]}) + "\n")
    out = tmp_path / "shards"
    proc = holder(out)
    result = CliRunner().invoke(cli, ["data", "prepare", "--source", "jsonl", str(src), "--out", str(out)])
    assert result.exit_code != 0
    assert f"in use by pid {proc.pid}" in result.output
    assert not out.exists()


def test_output_that_appears_during_the_fill_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with (
        pytest.raises(FileExistsError, match="appeared while this output was being written"),
        atomic_directory(out) as tmp,
    ):
        atomic_write_text(tmp / "mine.txt", "mine")
        out.mkdir()  # a writer that ignores the lock
        atomic_write_text(out / "theirs.txt", "theirs")
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_train_into_a_held_run_directory_fails_before_anything_is_written(tmp_path: Path, holder) -> None:
    from cm3leon.core.config import load_config
    from cm3leon.core.train import TrainConfig, train
    from tests.core.train._helpers import tiny_config, write_token_dataset

    data = write_token_dataset(tmp_path / "ra", 8, retrieved=1)
    run_dir = tmp_path / "run"
    cfg = load_config(TrainConfig, data=tiny_config(run_dir, {"ra": {"local": str(data)}}))
    proc = holder(run_dir)
    with pytest.raises(DirectoryLockedError, match=f"in use by pid {proc.pid}"):
        train(cfg)
    assert not run_dir.exists()
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(tiny_config(run_dir, {"ra": {"local": str(data)}})))
    result = CliRunner().invoke(cli, ["train", "run", str(config)])
    assert result.exit_code == 1 and f"Error: {run_dir}: in use by pid {proc.pid}" in result.output
    assert not run_dir.exists()
