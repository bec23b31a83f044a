"""Values from the environment stay out of everything a run writes (issue 20, item 5).

Before: ``run_name: ${oc.env:SECRET}`` was printed by ``config validate --print`` and
written in clear into the run's ``config.yaml`` and into every checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.config import load_config, redact
from tests.core.train._helpers import tiny_config, write_config

SECRET = "tok-5f3a9c1e7b-do-not-log"
PLACEHOLDER = "${oc.env:CM3LEON_TEST_SECRET}"


def test_redact_puts_the_interpolation_back_and_ignores_short_values(monkeypatch) -> None:
    from cm3leon.core.train import TrainConfig

    monkeypatch.setenv("CM3LEON_TEST_SECRET", SECRET)
    monkeypatch.setenv("CM3LEON_TEST_SHORT", "1")
    cfg = load_config(TrainConfig, data=tiny_config(Path("runs/x"), {}, run_name=PLACEHOLDER,
                                                    seed="${oc.env:CM3LEON_TEST_SHORT}"))  # fmt: skip
    assert cfg.run_name == SECRET and cfg.seed == 1  # the run itself uses the values
    assert redact(f"name {SECRET}-v2, seed 1") == f"name {PLACEHOLDER}-v2, seed 1"


def test_secret_from_the_environment_is_never_written(tmp_path: Path, token_data: Path, monkeypatch) -> None:
    from cm3leon.core.train import TrainConfig, train

    monkeypatch.setenv("CM3LEON_TEST_SECRET", SECRET)
    run_dir = tmp_path / "run"
    raw = tiny_config(run_dir, {"ra": {"local": str(token_data)}}, run_name=PLACEHOLDER,
                      max_duration="2ba", **{"checkpoint.save_interval": "1ba"})  # fmt: skip
    path = write_config(tmp_path / "train.yaml", raw)

    printed = CliRunner().invoke(cli, ["config", "validate", str(path), "--schema", "train", "--print"])
    assert printed.exit_code == 0, printed.output
    assert SECRET not in printed.output and f"run_name: {PLACEHOLDER}" in printed.output

    result = train(load_config(TrainConfig, path))
    assert result.batches == 2
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pt" for p in files)
    leaked = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert not leaked, f"the secret is written in clear into {leaked}"
    # The saved config still loads, resolving the secret from the environment again.
    assert load_config(TrainConfig, run_dir / "config.yaml").run_name == SECRET

