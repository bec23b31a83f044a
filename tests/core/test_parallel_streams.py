"""Processes on one host opening StreamingDatasets at the same time (reliability row 16, streaming#884).

``StreamingDataset`` takes the first free ``/dev/shm/{prefix}_locals`` and then creates it;
two processes doing that at once -- two pytest-xdist workers running the shard tests, two
evaluation jobs -- pick the same prefix and one dies with ``FileExistsError:
'/000002_locals'``.  cm3leon's datasets register under a host-wide lock
(``shard_datasets._shm_registration_lock``).  Without it the barrier test below fails in
most rounds (7 of 20 with 2 processes, 44 of 60 with 4, measured).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.core.train._helpers import PYTHON, REPO, subprocess_env, write_token_dataset

pytestmark = pytest.mark.slow  # spawned interpreters importing streaming and torch


def test_processes_opening_datasets_at_the_same_moment_do_not_collide(tmp_path: Path) -> None:
    data = write_token_dataset(tmp_path / "ra", 8, retrieved=1)
    proc = subprocess.run([PYTHON, str(Path(__file__).with_name("_concurrent_streams.py")), str(data), "2", "10"],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_two_xdist_workers_building_datasets_on_distinct_local_dirs(tmp_path: Path) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is in the dev group (uv sync)")
    proc = subprocess.run([PYTHON, "-m", "pytest", "-n", "2", "-p", "xdist", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "base"), str(Path(__file__).with_name("_xdist_streams.py"))],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "8 passed" in proc.stdout
