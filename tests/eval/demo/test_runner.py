"""Caching, resumption and logging of the demo runner, on stand-in commands (fast)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import pytest

from cm3leon.eval.demo.runner import (
    DemoError,
    commands_script,
    fingerprint,
    invoke_command,
    run_stages,
)
from cm3leon.eval.demo.stages import Stage, Step


class Recorder:
    """An ``invoke`` that writes each step's first output and can fail once on demand."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.calls: list[str] = []
        self.fail_on: str | None = None
        self.interrupt_on: str | None = None

    def __call__(self, argv: Sequence[str]) -> None:
        name = argv[1]
        self.calls.append(name)
        print(f"stdout of {name}")
        print(f"stderr of {name}", file=sys.stderr)
        if name == self.interrupt_on:
            self.interrupt_on = None
            raise KeyboardInterrupt
        if name == self.fail_on:
            self.fail_on = None
            raise DemoError(f"cm3leon fake {name}: boom")
        (self.out / f"{name}.txt").write_text(" ".join(argv))


def _plan(out: Path, value: str = "1") -> list[Stage]:
    cfg = out / "configs" / "b.yaml"
    return [
        Stage("a", "first", (Step("a1", ("fake", "a1"), (out / "a1.txt",)),),
              artefacts={"a": out / "a1.txt"}, owns=(out / "a1.txt",)),
        Stage("b", "second", (Step("b1", ("fake", "b1", str(cfg)), (out / "b1.txt",)),
                              Step("b2", ("fake", "b2"), (out / "b2.txt",))),
              configs={cfg: ("train", {"value": value})}, artefacts={"b": out / "b2.txt"},
              owns=(out / "b1.txt", out / "b2.txt"), depends=("a",)),
        Stage("c", "third", (Step("c1", ("fake", "c1"), (out / "c1.txt",)),),
              artefacts={"c": out / "c1.txt"}, owns=(out / "c1.txt",), depends=("b",)),
    ]  # fmt: skip


def test_second_run_skips_every_finished_stage(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    first = run_stages(_plan(tmp_path), tmp_path, invoke=rec)
    assert [o.status for o in first] == ["ran", "ran", "ran"]
    assert rec.calls == ["a1", "b1", "b2", "c1"]
    second = run_stages(_plan(tmp_path), tmp_path, invoke=rec)
    assert [o.status for o in second] == ["cached", "cached", "cached"]
    assert rec.calls == ["a1", "b1", "b2", "c1"]  # nothing ran again
    record = json.loads((tmp_path / "stages" / "b.json").read_text())
    assert record["status"] == "complete" and record["steps_done"] == ["b1", "b2"]


def test_outputs_logs_and_config_files(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    run_stages(_plan(tmp_path), tmp_path, invoke=rec)
    log = (tmp_path / "logs" / "b.log").read_text()
    assert "$ cm3leon fake b1" in log and "stdout of b1" in log and "stderr of b2" in log
    config = (tmp_path / "configs" / "b.yaml").read_text()
    assert config.startswith("# cm3leon fake b1 ") and "value: '1'" in config
    script = (tmp_path / "commands.sh").read_text()
    assert script.index("cm3leon fake a1") < script.index("cm3leon fake b2") < script.index("cm3leon fake c1")


def test_interrupted_stage_resumes_after_its_finished_steps(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    rec.interrupt_on = "b2"
    with pytest.raises(KeyboardInterrupt):
        run_stages(_plan(tmp_path), tmp_path, invoke=rec)
    record = json.loads((tmp_path / "stages" / "b.json").read_text())
    assert record["status"] == "interrupted" and record["steps_done"] == ["b1"]
    outcomes = run_stages(_plan(tmp_path), tmp_path, invoke=rec)
    assert [o.status for o in outcomes] == ["cached", "resumed", "ran"]
    assert outcomes[1].steps_skipped == ["b1"] and outcomes[1].steps_run == ["b2"]
    assert rec.calls == ["a1", "b1", "b2", "b2", "c1"]


def test_failure_names_stage_command_and_log(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    rec.fail_on = "b1"
    with pytest.raises(DemoError, match=r"stage 'b' failed: cm3leon fake b1: boom\n\(log: .*b\.log\)"):
        run_stages(_plan(tmp_path), tmp_path, invoke=rec)
    assert json.loads((tmp_path / "stages" / "b.json").read_text())["status"] == "failed"
    assert [o.status for o in run_stages(_plan(tmp_path), tmp_path, invoke=rec)] == ["cached", "resumed", "ran"]


def test_changed_config_reruns_the_stage_and_everything_downstream(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    run_stages(_plan(tmp_path), tmp_path, invoke=rec)
    (tmp_path / "stale.txt").write_text("x")
    outcomes = run_stages(_plan(tmp_path, value="2"), tmp_path, invoke=rec)
    assert [o.status for o in outcomes] == ["cached", "ran", "ran"]
    assert rec.calls[4:] == ["b1", "b2", "c1"]
    assert "value: '2'" in (tmp_path / "configs" / "b.yaml").read_text()


def test_missing_artefact_reruns_only_that_stage(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    run_stages(_plan(tmp_path), tmp_path, invoke=rec)
    (tmp_path / "c1.txt").unlink()
    assert [o.status for o in run_stages(_plan(tmp_path), tmp_path, invoke=rec)] == ["cached", "cached", "ran"]


def test_step_without_its_output_is_an_error(tmp_path: Path) -> None:
    plan = [Stage("a", "first", (Step("a1", ("fake", "a1"), (tmp_path / "never.txt",)),))]
    with pytest.raises(DemoError, match=r"did not write .*never\.txt"):
        run_stages(plan, tmp_path, invoke=Recorder(tmp_path))


def test_stop_after(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    assert [o.name for o in run_stages(_plan(tmp_path), tmp_path, invoke=rec, stop_after="b")] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown stage 'z'"):
        run_stages(_plan(tmp_path), tmp_path, invoke=rec, stop_after="z")


def test_fingerprint_ignores_the_run_directory_location(tmp_path: Path) -> None:
    a, b = tmp_path / "one", tmp_path / "two"
    assert fingerprint(_plan(a)[1], {"a": "x"}, a) == fingerprint(_plan(b)[1], {"a": "x"}, b)
    assert fingerprint(_plan(a)[1], {"a": "x"}, a) != fingerprint(_plan(a)[1], {"a": "y"}, a)
    assert fingerprint(_plan(a, "1")[1], {"a": "x"}, a) != fingerprint(_plan(a, "2")[1], {"a": "x"}, a)


def test_commands_script_is_every_command_line(tmp_path: Path) -> None:
    lines = [line for line in commands_script(_plan(tmp_path)).splitlines() if line.startswith("cm3leon")]
    assert lines == ["cm3leon fake a1", f"cm3leon fake b1 {tmp_path}/configs/b.yaml", "cm3leon fake b2",
                     "cm3leon fake c1"]  # fmt: skip


class _Registries:
    """Just a ``commands`` registry holding one click command."""

    def __init__(self, command: click.Command) -> None:
        from cm3leon.core.registry import CommandSpec, Registration, Registry

        self.commands = Registry("commands", CommandSpec)
        self.commands.add(Registration(CommandSpec("fake", command, "test command"), "tests", "0", "tests"))


def test_invoke_command_runs_a_registered_click_command() -> None:
    seen: list[str] = []

    @click.command("fake")
    @click.argument("word")
    def ok(word: str) -> None:
        seen.append(word)

    invoke_command(["fake", "hello"], registries=_Registries(ok))
    assert seen == ["hello"]


def test_invoke_command_turns_click_errors_into_demo_errors() -> None:
    @click.command("fake")
    def bad() -> None:
        raise click.ClickException("no good")

    with pytest.raises(DemoError, match=r"cm3leon fake: no good"):
        invoke_command(["fake"], registries=_Registries(bad))

    @click.command("fake")
    @click.option("--n", type=int, required=True)
    def usage(n: int) -> None:
        del n

    with pytest.raises(DemoError, match=r"cm3leon fake --n x: .*not a valid integer"):
        invoke_command(["fake", "--n", "x"], registries=_Registries(usage))
