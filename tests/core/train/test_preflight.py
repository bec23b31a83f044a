"""``cm3leon config validate --schema train`` runs ``cm3leon train run``'s checks.

Both commands call :func:`cm3leon.core.train.config.check_train_config` before a model is
built: each case below is given to both and must get the same one-line error (or both
accept it); missing data is one line naming the path and the command that creates it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.train.config import _header_commands, _how_to_create
from tests.core.train._helpers import REPO, tiny_config

TINY = REPO / "configs" / "pretrain" / "tiny.yaml"


def _write(tmp_path: Path, streams: dict, header: str = "", name: str = "train.yaml") -> Path:
    path = tmp_path / name
    path.write_text(header + yaml.safe_dump(tiny_config(tmp_path / "run", streams)))
    return path


def _both(config: Path, *overrides: str) -> tuple[str, str]:
    """``(config validate output, train run output)``; train run must fail before training."""
    runner = CliRunner()
    validate = runner.invoke(cli, ["config", "validate", "--schema", "train", str(config), *overrides])
    run = runner.invoke(cli, ["train", "run", str(config), *overrides, "max_duration=0ba"])
    return validate.output.strip(), run.output.strip()


@pytest.mark.parametrize("override, expected", [
    ("precision=bf16", "precision: 'bf16' is not one of ['auto', 'fp32', 'amp_bf16', 'amp_fp16']"),
    ("precision=amp_fp16", "precision: 'amp_fp16' is a GPU setting (fp16 needs loss scaling); "
                           "CPU runs use fp32, amp_bf16 or auto"),
    ("logging.trackers=[{name: tensorbord}]", "logging.trackers[0].name: unknown tracker 'tensorbord'"),
])
def test_validate_rejects_what_train_run_rejects(tmp_path: Path, token_data: Path, override: str,
                                                 expected: str) -> None:
    config = _write(tmp_path, {"ra": {"local": str(token_data)}})
    validate, run = _both(config, override)
    assert expected in validate and validate.startswith("Error:")
    assert validate == run  # the same check, the same message
    assert "Traceback" not in run and not (tmp_path / "run").exists()  # nothing built


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_availability_is_checked(tmp_path: Path, token_data: Path) -> None:
    config = _write(tmp_path, {"ra": {"local": str(token_data)}})
    validate, run = _both(config, "device=gpu")
    assert "device: 'gpu' requested but CUDA is not available" in validate
    assert validate == run
    validate, _ = _both(config, "device=auto", "precision=amp_fp16")
    assert "precision: 'amp_fp16' needs a GPU, and device 'auto' found no CUDA device" in validate


def test_valid_config_is_valid_for_both(tmp_path: Path, token_data: Path) -> None:
    config = _write(tmp_path, {"ra": {"local": str(token_data)}})
    result = CliRunner().invoke(cli, ["config", "validate", "--schema", "train", str(config)])
    assert result.exit_code == 0 and result.output.strip() == f"{config}: valid train config"


def test_missing_data_names_the_path_and_the_header_command(tmp_path: Path, token_data: Path) -> None:
    missing = tmp_path / "nowhere" / "ra"
    header = f"# Inputs: cm3leon data prepare x.jsonl --kind tokens --out {missing}\n"
    config = _write(tmp_path, {"ra": {"local": str(missing)}, "ok": {"local": str(token_data)}}, header)
    validate, run = _both(config)
    assert validate == run == (
        f"Error: {config}: data.streams.ra.local: {missing} does not exist; create it with "
        f"`cm3leon data prepare x.jsonl --kind tokens --out {missing}`")
    half_written = tmp_path / "half"
    half_written.mkdir()
    validate, _ = _both(_write(tmp_path, {"ra": {"local": str(half_written)}}, name="half.yaml"))
    assert f"{half_written} is not a finished token-shard dataset (no COMPLETE marker)" in validate
    validate, _ = _both(config, f"model.init_from={tmp_path / 'export'}", f"data.streams.ra.local={token_data}")
    assert validate.endswith(f"model.init_from: {tmp_path / 'export'} does not exist; the header "
                             f"comment of {config} lists the commands that create its inputs")


def test_shipped_tiny_config_without_data_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new user's first command, in a checkout without data: one line, not a traceback."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "run", str(TINY)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # not a traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(
        f"Error: {TINY}: data.streams.ra.local: runs/data/tiny_ra does not exist; create it with "
        "`cm3leon retrieval augment runs/demo_quick/configs/augment.yaml augment.output=runs/data/tiny_ra`; "
        "data.streams.plain.local: runs/data/tiny_plain does not exist; create it with `cm3leon data prepare ")
    assert not (tmp_path / "runs").exists()  # nothing built, no run directory


def test_header_commands_are_read_from_the_leading_comment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# Single node: cm3leon train c.yaml      (CPU)\n"
                    "# Inputs: cm3leon world export --out w\n#   cm3leon data prepare w/x --out d/ra\n"
                    "run_name: x\n# cm3leon not-a-header --out d/ra\n")
    assert _header_commands(str(path)) == [
        "cm3leon train c.yaml", "cm3leon world export --out w", "cm3leon data prepare w/x --out d/ra"]
    assert _how_to_create("d/ra", str(path)) == "create it with `cm3leon data prepare w/x --out d/ra`"
