"""Parallel ``data prepare`` as real processes: a SIGKILL mid-run, then a restart; two ranks
under the ``composer`` launcher.  Each result equals the single-process run's samples.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.prepare_parallel import work_dir
from cm3leon.core.shards import read_manifest
from tests.core._corpora import Sample, write_tars
from tests.core.test_prepare_parallel import assert_same_dataset, report_of

REPO = Path(__file__).resolve().parents[2]
COMPOSER = str(Path(sys.executable).with_name("composer"))

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _corpus(tmp_path: Path, shards: int) -> Path:
    items = [Sample(f"{i:06d}", f"caption {i}", (16, 12), corrupt=i == 7) for i in range(2 * shards)]
    write_tars(tmp_path / "wds", items, per_shard=2)
    return tmp_path / "wds"


def _prepare(*args: str) -> dict:
    return report_of(CliRunner().invoke(cli, ["data", "prepare", *args]))


def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    wds = _corpus(tmp_path, 40)
    common = ["--source", "webdataset", str(wds), "--skip-bad"]
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "cm3leon.core.data_cli", "prepare", *common, "--out", str(out), "--workers", "2"]
    log = tmp_path / "killed.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while len(list(work_dir(out).glob("part-*.json"))) < 3:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        workers = psutil.Process(proc.pid).children()
        os.kill(proc.pid, signal.SIGKILL)  # the command dies; its workers must stop by themselves
        proc.wait()
        gone, alive = psutil.wait_procs(workers, timeout=60)
        assert len(workers) == 2 and not alive
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = len(list(work_dir(out).glob("part-*.json")))
    assert 3 <= finished < 40 and not out.exists()
    _prepare(*common, "--out", str(tmp_path / "one"))
    report = _prepare(*common, "--out", str(out), "--workers", "2")
    assert_same_dataset(tmp_path / "one", out)
    assert report["parallel"]["resumed_parts"] == finished
    assert report["written"] == 79 and report["skipped"] == 1 and "000007" in report["skipped_items"][0][0]
    assert not work_dir(out).exists()


def test_two_ranks_with_two_workers_each_under_composer(tmp_path: Path) -> None:
    wds = _corpus(tmp_path, 9)
    common = ["--source", "webdataset", str(wds), "--skip-bad"]
    out = tmp_path / "ranks"
    port = str(29800 + os.getpid() % 1000)
    cmd = [COMPOSER, "-n", "2", "--master_port", port, "-m", "cm3leon.core.data_cli", "prepare", *common,
           "--out", str(out), "--workers", "2"]  # fmt: skip
    log = tmp_path / "launch.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            assert proc.wait(timeout=900) == 0, log.read_text()[-4000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    _prepare(*common, "--out", str(tmp_path / "one"))
    assert_same_dataset(tmp_path / "one", out)
    assert read_manifest(out)["meta"]["parallel"] == {"parts": 9, "workers": 4, "part_size": 10_000}
    text = log.read_text()
    report = json.loads(text[text.index("{\n"): text.rindex("}") + 1])
    assert [w["worker"] for w in report["parallel"]["per_worker"]] == ["1/4", "2/4", "3/4", "4/4"]
    assert sum(w["skipped"] for w in report["parallel"]["per_worker"]) == report["skipped"] == 1
    assert not work_dir(out).exists()
