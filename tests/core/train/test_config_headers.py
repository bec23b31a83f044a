"""Every shipped train config names the commands that create its inputs, and they work.

The fast test checks that each ``configs/{pretrain,sft}/*.yaml`` header has an ``Inputs``
block whose commands name every local data directory and ``model.init_from`` the config
reads.  The slow one runs exactly the ``Inputs`` commands of the tiny pretrain and SFT
configs in an empty directory, then the configs' own launch commands for a few steps,
single process and under ``composer -n 2``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from cm3leon.core.config import load_config
from cm3leon.core.train.config import TrainConfig
from tests.core.train._helpers import COMPOSER, REPO

CONFIGS = sorted([*REPO.glob("configs/pretrain/*.yaml"), *REPO.glob("configs/sft/*.yaml")])


def inputs_block(path: Path) -> list[str]:
    """The commands of the header's ``# Inputs`` block (indented ``#   cm3leon ...`` lines)."""
    lines = path.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# Inputs")), None)
    if start is None:
        return []
    commands = []
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        commands.append(line[1:].strip())
    return commands


def _reads(path: Path) -> list[str]:
    cfg = load_config(TrainConfig, path)
    paths = [s.local for s in cfg.data.streams.values() if s.remote is None and s.local]
    return paths + ([cfg.model.init_from] if cfg.model.init_from else [])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_header_names_the_commands_that_create_the_inputs(path: Path) -> None:
    commands = inputs_block(path)
    assert commands, f"{path}: no '# Inputs' block in the header"
    assert all(c.startswith("cm3leon ") for c in commands), commands
    text = " ".join(commands)
    for needed in _reads(path):
        assert needed in text or needed.replace("/export", "/checkpoints") in text, (
            f"{path}: no Inputs command creates {needed}")


def _launch_lines(path: Path) -> tuple[str, str]:
    """The ``Single node:`` and ``Multi node:`` commands of a CPU preset's first lines."""
    lines = path.read_text().splitlines()
    single = lines[0].removeprefix("# Single node:").split("  ")[0].strip()
    multi = lines[1].removeprefix("# Multi node:").strip().split("  ")[0].strip()
    return single, multi


def _sh(command: str, cwd: Path, *extra: str) -> None:
    args = shlex.split(command) + list(extra)
    if args[0] == "composer":
        args[0] = COMPOSER
    else:
        args[0] = str(Path(COMPOSER).with_name(args[0]))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.integration
def test_tiny_header_commands_then_training(tmp_path: Path) -> None:
    """About 6 minutes on 2 CPU cores: the inputs, then pretrain and SFT for a few steps."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    for name in ("pretrain", "sft"):
        config = REPO / "configs" / name / "tiny.yaml"
        for command in inputs_block(config):
            _sh(command, tmp_path)
        single, multi = _launch_lines(config)
        _sh(single, tmp_path, "max_duration=2ba", "checkpoint.save_interval=2ba")
        if name == "pretrain":  # the SFT inputs export this run
            assert (tmp_path / "runs" / "pretrain_tiny" / "checkpoints" / "latest-rank0.pt").exists()
        _sh(multi, tmp_path, "max_duration=2ba", f"run_name={name}_tiny_2ranks")
        assert (tmp_path / "runs" / f"{name}_tiny_2ranks" / "metrics.jsonl").exists()
