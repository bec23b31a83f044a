"""Ablation runs: Table 1 / Figure 4 shaped outputs, resumption, failures, validation."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cm3leon.core.config import ConfigError
from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.plugin_manager import registries_with
from cm3leon.core.registry import RunnerSpec, UnknownComponentError
from cm3leon.eval.ablation.execute import AblationRunError, run_ablation

CALLS: list[str] = []
BROKEN: set[tuple[str, int]] = set()
MODEL_BASE = {"350m": 14.0, "760m": 7.0, "7b": 5.0}


@dataclass
class ToyConfig:
    model: str = "350m"
    k: int = 0
    cfg_scale: float = 3.0
    strategy: str = "cfg"
    num_samples: int = 1


def toy_fid(cfg: ToyConfig, run_dir: Path) -> dict:
    """A cheap stand-in for generate+score: FID falls with model size, k and samples."""
    CALLS.append(f"{cfg.model}/{cfg.k}/{cfg.cfg_scale}/{cfg.strategy}/{cfg.num_samples}")
    if (cfg.model, cfg.k) in BROKEN:
        raise RuntimeError("out of memory (simulated)")
    (run_dir / "samples.txt").write_text("artefacts go here")
    fid = MODEL_BASE[cfg.model] * (1 + 0.5 / (cfg.k + 1)) + 0.4 * (cfg.cfg_scale - 3.0) ** 2
    fid *= {"cfg": 1.0, "cd_k": 1.02, "both": 0.9}[cfg.strategy] * (1 + 1.0 / cfg.num_samples)
    return {
        "fid": fid,
        "detail": {"clip_score": np.float32(30.0 - cfg.k)},
    }  # numpy scalars are fine


class ToyPlugin:
    @staticmethod
    @hookimpl
    def cm3leon_register_runners():
        return [RunnerSpec("toy_fid", toy_fid, "synthetic FID", schema=ToyConfig)]


@pytest.fixture(scope="module")
def registries():
    return registries_with(ToyPlugin)


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    BROKEN.clear()


def _write(path: Path, data: dict) -> Path:
    path.write_text("# cm3leon ablate " + path.name + "\n" + yaml.safe_dump(data, sort_keys=False))
    return path


TABLE1 = {
    "name": "table1",
    "base": {"runner": "toy_fid", "config": {"cfg_scale": 3.0}},
    "matrix": {"model": ["350m", "760m", "7b"], "k": [0, 1, 2], "cfg_scale": [1.0, 3.0, 6.0]},
    "run_name": "${matrix.model}-k${matrix.k}-cfg${matrix.cfg_scale}",
    "report": {
        "tables": [{"rows": "model", "columns": "k", "value": "fid", "where": {"cfg_scale": 3.0}}],
        "plots": [
            {
                "x": "cfg_scale",
                "y": "fid",
                "series": "model",
                "where": {"k": 2},
                "file": "figure4-left.png",
            }
        ],
    },
}
FIGURE4_RIGHT = {
    "name": "samples",
    "base": {"runner": "toy_fid", "config": {"model": "7b", "k": 2}},
    "matrix": {"strategy": ["cfg", "cd_k", "both"], "num_samples": [1, 2, 4, 8]},
    "report": {"plots": [{"x": "num_samples", "y": "fid", "series": "strategy", "logx": True}]},
}


def test_table1_and_figure4_left_then_resume(tmp_path: Path, registries) -> None:
    path = _write(tmp_path / "table1.yaml", TABLE1)
    out = tmp_path / "out"
    res = run_ablation(path, out_dir=out, registries=registries, progress=False)
    assert res.count("done") == 27 and len(CALLS) == 27
    assert (out / "runs" / "7b-k2-cfg3.0" / "samples.txt").is_file()

    md = (out / "results.md").read_text()
    # Table 1's shape: models as rows, retrieval k as columns, FID in the cells.
    assert "| model \\ k | 0 | 1 | 2 |" in md
    expected_7b = [2 * 5.0 * (1 + 0.5 / (k + 1)) for k in range(3)]  # num_samples=1: x2
    assert "| 7b | " + " | ".join(f"{v:.2f}" for v in expected_7b) + " |" in md
    with open(out / "table-fid-model-x-k-cfg_scale=3.0.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["model \\ k", "0", "1", "2"] and rows[1][0] == "350m"
    assert float(rows[3][3]) == pytest.approx(expected_7b[2])
    with open(out / "results.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 27 and {"fid", "detail.clip_score", "model", "k", "cfg_scale"} <= set(
        table[0]
    )

    png = out / "figure4-left-k=2.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300

    # Second invocation: nothing is executed again, the report is rebuilt identically.
    first_results = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    CALLS.clear()
    again = run_ablation(path, out_dir=out, registries=registries, progress=False)
    assert CALLS == [] and again.count("skipped") == 27
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")} == first_results
    rebuilt = (out / "results.md").read_text()
    assert rebuilt.split("###", 1)[1] == md.split("###", 1)[1]  # same tables; status now "skipped"
    assert rebuilt.count("| skipped |") == 27

    # Changing the base config changes every fingerprint: everything runs again.
    changed = dict(TABLE1, base={"runner": "toy_fid", "config": {"strategy": "both"}})
    run_ablation(
        _write(tmp_path / "table1.yaml", changed),
        out_dir=out,
        registries=registries,
        progress=False,
    )
    assert len(CALLS) == 27


def test_figure4_right_plot(tmp_path: Path, registries) -> None:
    out = tmp_path / "out"
    res = run_ablation(
        _write(tmp_path / "s.yaml", FIGURE4_RIGHT),
        out_dir=out,
        registries=registries,
        progress=False,
    )
    assert res.count("done") == 12
    [png] = [p for p in res.report_files if p.suffix == ".png"]
    assert png.name == "plot-fid-vs-num_samples-by-strategy.png"
    with Image.open(png) as im:
        assert im.size[0] > 300


def test_failure_stops_then_resumes_only_unfinished(tmp_path: Path, registries) -> None:
    data = dict(TABLE1, matrix={"model": ["350m", "7b"], "k": [0, 1]}, run_name="", report={})
    path = _write(tmp_path / "f.yaml", data)
    out = tmp_path / "out"
    BROKEN.add(("7b", 0))
    with pytest.raises(
        AblationRunError, match=r"run model=7b__k=0 failed: RuntimeError: out of memory"
    ):
        run_ablation(path, out_dir=out, registries=registries, progress=False)
    assert len(CALLS) == 3  # two done, one failed, the last not started
    assert (out / "runs" / "model=7b__k=0" / "error.json").is_file()
    assert not (out / "runs" / "model=7b__k=0" / "result.json").exists()
    assert "| model=7b__k=0 | failed |" in (out / "results.md").read_text()

    BROKEN.clear()
    CALLS.clear()
    res = run_ablation(path, out_dir=out, registries=registries, progress=False)
    assert CALLS == ["7b/0/3.0/cfg/1", "7b/1/3.0/cfg/1"]
    assert res.count("skipped") == 2 and res.count("done") == 2
    assert not (out / "runs" / "model=7b__k=0" / "error.json").exists()


def test_keep_going_dry_run_and_only(tmp_path: Path, registries) -> None:
    data = dict(
        TABLE1,
        matrix={"model": ["350m", "7b"], "k": [0, 1]},
        run_name="${matrix.model}-${matrix.k}",
        report={},
    )
    path = _write(tmp_path / "k.yaml", data)
    plan = run_ablation(
        path, out_dir=tmp_path / "dry", registries=registries, dry_run=True, progress=False
    )
    assert CALLS == [] and plan.count("pending") == 4 and (tmp_path / "dry" / "plan.json").is_file()

    BROKEN.add(("350m", 1))
    res = run_ablation(
        path, out_dir=tmp_path / "kg", registries=registries, keep_going=True, progress=False
    )
    assert res.count("failed") == 1 and res.count("done") == 3

    CALLS.clear()
    only = run_ablation(
        path, out_dir=tmp_path / "only", registries=registries, only=["7b-1"], progress=False
    )
    assert CALLS == ["7b/1/3.0/cfg/1"] and only.count("pending") == 3
    with pytest.raises(ConfigError, match="--only names unknown runs"):
        run_ablation(
            path, out_dir=tmp_path / "only", registries=registries, only=["nope"], progress=False
        )


def test_invalid_runs_fail_before_anything_runs(tmp_path: Path, registries) -> None:
    bad_key = dict(TABLE1, matrix={"k": [0, 1], "temperature": [0.5]}, run_name="")
    with pytest.raises(ConfigError, match="run .*temperature"):
        run_ablation(
            _write(tmp_path / "a.yaml", bad_key),
            out_dir=tmp_path / "a",
            registries=registries,
            progress=False,
        )
    bad_type = dict(TABLE1, matrix={"k": ["zero", "one"]}, run_name="")
    with pytest.raises(ConfigError, match="run k=zero: .*k"):
        run_ablation(
            _write(tmp_path / "b.yaml", bad_type),
            out_dir=tmp_path / "b",
            registries=registries,
            progress=False,
        )
    unknown = dict(TABLE1, base={"runner": "generate_and_score"})
    with pytest.raises(UnknownComponentError, match="unknown runner 'generate_and_score'.*toy_fid"):
        run_ablation(
            _write(tmp_path / "c.yaml", unknown),
            out_dir=tmp_path / "c",
            registries=registries,
            progress=False,
        )
    bad_plot = dict(
        TABLE1, matrix={"k": [0]}, run_name="", report={"plots": [{"x": "cfg", "y": "fid"}]}
    )
    with pytest.raises(ValueError, match="plot x 'cfg' is not a matrix axis"):
        run_ablation(
            _write(tmp_path / "d.yaml", bad_plot),
            out_dir=tmp_path / "d",
            registries=registries,
            progress=False,
        )
    assert CALLS == [] or CALLS == ["350m/0/3.0/cfg/1"]  # only the last case runs before reporting


@dataclass
class ScaleConfig:
    value: float = 0.0
    factor: float = 1.0


def scale(cfg: ScaleConfig, run_dir: Path) -> dict:
    return {"scaled": cfg.value * cfg.factor}


class ScalePlugin:
    @staticmethod
    @hookimpl
    def cm3leon_register_runners():
        return [RunnerSpec("scale", scale, "multiply an earlier result", schema=ScaleConfig)]


def test_chain_runs_steps_and_passes_results(tmp_path: Path) -> None:
    registries = registries_with(ToyPlugin, ScalePlugin)
    data = {
        "name": "chain",
        "base": {
            "runner": "chain",
            "config": {
                "steps": [
                    {"name": "gen", "runner": "toy_fid", "config": {"model": "7b"}},
                    {
                        "name": "score",
                        "runner": "scale",
                        "config": {"factor": 10.0},
                        "inputs": {"value": "gen.fid"},
                    },
                ]
            },
        },
        "matrix": {"k": {"key": "steps.0.config.k", "values": [0, 2]}},
        "report": {"plots": [{"x": "k", "y": "score.scaled"}]},
    }
    res = run_ablation(
        _write(tmp_path / "c.yaml", data),
        out_dir=tmp_path / "o",
        registries=registries,
        progress=False,
    )
    assert CALLS == ["7b/0/3.0/cfg/1", "7b/2/3.0/cfg/1"]
    k2 = next(o for o in res.outcomes if o.run.labels["k"] == 2).results
    assert k2["score"]["scaled"] == pytest.approx(10 * k2["gen"]["fid"])
    assert (tmp_path / "o" / "runs" / "k=2" / "gen" / "samples.txt").is_file()
    bad = dict(
        data,
        base={
            "runner": "chain",
            "config": {"steps": [{"name": "s", "runner": "scale", "inputs": {"value": "gen.fid"}}]},
        },
    )
    with pytest.raises(AblationRunError, match="input value <- 'gen.fid': no such result"):
        run_ablation(
            _write(tmp_path / "d.yaml", bad),
            out_dir=tmp_path / "d",
            registries=registries,
            progress=False,
        )


def test_chain_common_values_and_ablation_vars(tmp_path: Path) -> None:
    """``common`` is merged under every step (the step wins); ``${vars.x}`` fills the file."""
    registries = registries_with(ScalePlugin)
    data = {
        "name": "common",
        "vars": {"factor": 3.0, "value": 2.0},
        "base": {
            "runner": "chain",
            "config": {
                "common": {"factor": "${vars.factor}", "value": "${vars.value}"},
                "steps": [
                    {"name": "a", "runner": "scale", "config": {}},
                    {"name": "b", "runner": "scale", "config": {"factor": 10.0}},
                ],
            },
        },
        "matrix": {"v": {"key": "common.value", "values": [1.0, "${vars.value}"]}},
    }
    path = _write(tmp_path / "c.yaml", data)
    res = run_ablation(path, out_dir=tmp_path / "o", registries=registries, progress=False)
    by_v = {o.run.labels["v"]: o.results for o in res.outcomes}
    assert by_v[1.0] == {"a": {"scaled": 3.0}, "b": {"scaled": 10.0}}
    assert by_v[2.0] == {"a": {"scaled": 6.0}, "b": {"scaled": 20.0}}
    res = run_ablation(path, overrides=["vars.factor=5"], out_dir=tmp_path / "p",
                       registries=registries, progress=False)  # fmt: skip
    assert {o.run.labels["v"]: o.results["a"]["scaled"] for o in res.outcomes} == {
        1.0: 5.0,
        2.0: 10.0,
    }
