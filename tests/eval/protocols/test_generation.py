"""run_generator: the registered generator runner, resumption by fingerprint, errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cm3leon.core.config import ConfigError
from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.plugin_manager import registries_with
from cm3leon.core.registry import RunnerSpec
from cm3leon.eval.formats import FormatError
from cm3leon.eval.protocols.generation import run_generator
from tests.eval.protocols._oracle import ORACLE, OraclePlugin, oracle_generate

CALLS: list[str] = []


@dataclass
class TypedConfig:
    prompts: str = "???"
    output: str = "???"
    num_candidates: int = 1
    model: str = ""


def counting(cfg, run_dir: Path) -> dict:
    CALLS.append(str(run_dir))
    data = {"prompts": cfg.prompts, "num_candidates": cfg.num_candidates}
    return oracle_generate(data, run_dir)


def broken(cfg, run_dir: Path) -> dict:
    (Path(run_dir) / "samples").mkdir(parents=True, exist_ok=True)
    return {}


class Plugin:
    @staticmethod
    @hookimpl
    def cm3leon_register_runners():
        return [
            RunnerSpec("counting", counting, "typed", schema=TypedConfig),
            RunnerSpec("broken", broken, "x"),
        ]


@pytest.fixture
def registries():
    CALLS.clear()
    ORACLE.clear()
    ORACLE.update({"a": "alpha", "b": "beta"})
    yield registries_with(Plugin, OraclePlugin)
    ORACLE.clear()


def test_generation_is_reused_until_an_input_changes(registries, tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    entries = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}]
    kw = {"runner": "counting", "registries": registries}
    first = run_generator(entries, {"model": str(model)}, tmp_path / "gen", **kw)
    assert (
        not first.reused
        and first.best("a")["text"] == "alpha"
        and first.rows["b"]["candidates"][0]["text"] == "beta"
    )
    assert (tmp_path / "gen" / "prompts.jsonl").read_text().count("\n") == 2
    again = run_generator(entries, {"model": str(model)}, tmp_path / "gen", **kw)
    assert again.reused and again.rows == first.rows and len(CALLS) == 1
    run_generator(
        entries, {"model": str(model), "num_candidates": 2}, tmp_path / "gen", **kw
    )  # config
    run_generator(
        entries[:1], {"model": str(model), "num_candidates": 2}, tmp_path / "gen", **kw
    )  # prompts
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the export was re-trained
    run_generator(entries[:1], {"model": str(model), "num_candidates": 2}, tmp_path / "gen", **kw)
    assert len(CALLS) == 4
    run_generator(
        entries[:1], {"model": str(model), "num_candidates": 2}, tmp_path / "gen", **kw, force=True
    )
    assert len(CALLS) == 5
    (tmp_path / "gen" / "generation.json").unlink()  # interrupted after the samples: redo
    run_generator(entries[:1], {"model": str(model), "num_candidates": 2}, tmp_path / "gen", **kw)
    assert len(CALLS) == 6


def test_generator_errors(registries, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"generator 'counting' config: .*num_candidates"):
        run_generator([{"id": "a"}], {"num_candidates": "many"}, tmp_path / "g", runner="counting",
                      registries=registries)  # fmt: skip
    with pytest.raises(FormatError, match=r"duplicate prompt ids: \['a'\]"):
        run_generator(
            [{"id": "a"}, {"id": "a"}], {}, tmp_path / "g", runner="oracle", registries=registries
        )
    with pytest.raises(FormatError, match="left no complete"):
        run_generator([{"id": "a"}], {}, tmp_path / "g", runner="broken", registries=registries)
    with pytest.raises(Exception, match="unknown runner 'nope'"):
        run_generator([{"id": "a"}], {}, tmp_path / "g", runner="nope", registries=registries)
    gen = run_generator(
        [{"id": "a"}],
        {"num_candidates": 1},
        tmp_path / "ok",
        runner="oracle",
        registries=registries,
    )
    with pytest.raises(FormatError, match="no candidates for prompt 'zzz'"):
        gen.best("zzz")
