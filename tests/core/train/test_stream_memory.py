"""Stale streaming shared memory (issue 20 item 3; reliability list 16): after a SIGKILL of a
process using a ``StreamingDataset``, starting again works, or fails saying what to do."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cm3leon.core.train.stream_memory import (
    OWNER_FILE,
    SHM,
    release_stale_shared_memory,
    segments_naming,
)
from tests.core.train._helpers import PYTHON, REPO, subprocess_env

LOADER = str(Path(__file__).with_name("_stream_loader.py"))

pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm (Linux)")


def _fake_registration(prefix: int, local: Path) -> list[Path]:
    """What a SIGKILLed StreamingDataset leaves in /dev/shm (streaming's `_pack_locals` layout)."""
    text = f"{os.path.abspath(local)}\0{prefix}".encode()
    locals_ = SHM / f"{prefix:06d}_locals"
    locals_.write_bytes((4 + len(text)).to_bytes(4, "little") + text)
    barrier = SHM / f"{prefix:06d}_barrier"
    barrier.write_bytes(b"\0" * 64)
    return [barrier, locals_]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("owner", ["dead", "alive", "unrecorded"])
def test_only_segments_of_a_dead_recorded_owner_are_removed(tmp_path: Path, owner: str) -> None:
    local, prefix = tmp_path / "cache", 900000 + os.getpid() % 99999
    local.mkdir()
    paths = _fake_registration(prefix, local)
    try:
        if owner != "unrecorded":
            pid = _dead_pid() if owner == "dead" else os.getpid()
            (local / OWNER_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "prefix": prefix}))
        assert segments_naming([local]) == {prefix: paths}
        removed = release_stale_shared_memory([local])
        if owner == "dead":
            assert removed == paths and not any(p.exists() for p in paths)
        else:  # a live process, or one we know nothing about: never touched
            assert removed == [] and all(p.exists() for p in paths)
        assert release_stale_shared_memory([tmp_path / "other"]) == []
    finally:
        for p in paths:
            p.unlink(missing_ok=True)


def _hold(remote: Path, local: Path, tmpdir: Path, ready: Path, log: Path) -> subprocess.Popen:
    tmpdir.mkdir()
    return subprocess.Popen([PYTHON, LOADER, str(remote), str(local), "2", "--hold", str(ready)], cwd=REPO,
                            env=subprocess_env(TMPDIR=str(tmpdir)), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _start(remote: Path, local: Path, tmpdir: Path) -> subprocess.CompletedProcess:
    tmpdir.mkdir()
    return subprocess.run([PYTHON, LOADER, str(remote), str(local), "2"], cwd=REPO, capture_output=True,
                          text=True, env=subprocess_env(TMPDIR=str(tmpdir)), timeout=300, check=False)


@pytest.mark.slow
@pytest.mark.integration
def test_restart_after_sigkill_of_a_loader_works_and_a_live_one_is_named(tmp_path: Path, token_data: Path) -> None:
    """Each start gets its own ``$TMPDIR`` (as a scheduler gives each job), so streaming's file
    locks do not hide the stale prefix; the whole process group is SIGKILLed (resource
    tracker included), so its shared memory stays."""
    local, ready = tmp_path / "cache", tmp_path / "ready"
    holder = _hold(token_data, local, tmp_path / "tmp1", ready, tmp_path / "holder.log")
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline, (tmp_path / "holder.log").read_text()
            time.sleep(0.2)
        stale = segments_naming([local])
        assert stale, "the loader registered no shared memory"
        busy = _start(token_data, local, tmp_path / "tmp2")  # while the holder lives: named, not clobbered
        assert busy.returncode == 1, busy.stdout + busy.stderr
        assert f"pid {holder.pid}" in busy.stderr and "alive" in busy.stderr and "Traceback" not in busy.stderr
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        time.sleep(0.5)
        assert all(p.exists() for paths in stale.values() for p in paths)  # left behind by the kill
        again = _start(token_data, local, tmp_path / "tmp3")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "read 2 batches" in again.stdout
        assert not any(p.exists() for paths in stale.values() for p in paths)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
        for paths in segments_naming([local]).values():
            for p in paths:
                p.unlink(missing_ok=True)
