"""Ablation files: axes, Cartesian expansion, run names by OmegaConf interpolation, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cm3leon.core.config import ConfigError
from cm3leon.eval.ablation.spec import (
    AblationConfig,
    BaseRunConfig,
    expand_runs,
    load_ablation,
    parse_axes,
)


def _cfg(matrix, run_name="", config=None, exclude=()) -> AblationConfig:
    return AblationConfig(
        name="toy",
        base=BaseRunConfig(
            runner="r", config=config or {"model": {"size": "350m"}, "k": 0, "cfg": 1.0}
        ),
        matrix=matrix,
        run_name=run_name,
        exclude=list(exclude),
    )


def test_axis_forms() -> None:
    axes = parse_axes(
        {
            "k": [0, 1, 2],
            "size": {"key": "model.size", "values": ["350m", "760m"]},
            "strategy": {
                "values": {
                    "cfg": {"decoding.name": "cfg"},
                    "cdk": {"decoding.name": "cd_k", "decoding.k": 8},
                }
            },
            "scale": {"key": "cfg", "values": {"low": 1.0, "high": 6.0}},
        }
    )
    assert [a.name for a in axes] == ["k", "size", "strategy", "scale"]
    assert axes[0].overrides == ({"k": 0}, {"k": 1}, {"k": 2})
    assert axes[1].overrides == ({"model.size": "350m"}, {"model.size": "760m"})
    assert axes[2].labels == ("cfg", "cdk") and axes[2].overrides[1] == {
        "decoding.name": "cd_k",
        "decoding.k": 8,
    }
    assert axes[3].labels == ("low", "high") and axes[3].overrides == ({"cfg": 1.0}, {"cfg": 6.0})


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ({"model.size": [1]}, "must be an identifier"),
        ({"k": {"vals": [1]}}, "must be a list of values or a mapping with 'values'"),
        ({"k": []}, "non-empty list"),
        ({"k": [[1, 2]]}, "is not a scalar"),
        ({"k": [1, "1"]}, "repeats a value"),
        ({"s": {"values": {"a": 3}}}, "must be a mapping of dotted keys"),
    ],
)
def test_axis_errors(matrix, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_axes(matrix)


def test_expansion_order_overrides_and_names() -> None:
    runs = expand_runs(
        _cfg(
            {"size": {"key": "model.size", "values": ["350m", "7b"]}, "k": [0, 2]},
            run_name="${name}-${matrix.size}-k${matrix.k}",
        )
    )
    assert [r.name for r in runs] == ["toy-350m-k0", "toy-350m-k2", "toy-7b-k0", "toy-7b-k2"]
    assert runs[3].labels == {"size": "7b", "k": 2}
    assert runs[3].config == {"model": {"size": "7b"}, "k": 2, "cfg": 1.0}
    assert runs[0].config["model"]["size"] == "350m"


def test_default_names_exclude_and_collisions() -> None:
    runs = expand_runs(_cfg({"k": [0, 1], "cfg": [1.0, 3.0]}, exclude=[{"k": 1, "cfg": 3.0}]))
    assert [r.name for r in runs] == ["k=0__cfg=1.0", "k=0__cfg=3.0", "k=1__cfg=1.0"]
    with pytest.raises(ConfigError, match="run name 'k0' is produced by both"):
        expand_runs(_cfg({"k": [0, 1], "cfg": [1.0, 3.0]}, run_name="k${matrix.k}"))
    with pytest.raises(ConfigError, match="may only contain"):
        expand_runs(_cfg({"k": [0]}, run_name="k ${matrix.k}/x"))
    with pytest.raises(ConfigError, match="key 'cfg' is set by more than one axis"):
        expand_runs(_cfg({"cfg": [1.0], "other": {"key": "cfg", "values": [2.0]}}))
    with pytest.raises(ConfigError, match="exclude entry .* unknown axes"):
        expand_runs(_cfg({"k": [0]}, exclude=[{"q": 1}]))
    with pytest.raises(KeyError, match="axis 'k' has no value 5"):
        expand_runs(_cfg({"k": [0]}, exclude=[{"k": 5}]))


def test_load_file_with_template_overrides_and_relative_base(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        yaml.safe_dump({"k": 0, "model": {"size": "350m"}, "tag": "${model.size}-x"})
    )
    (tmp_path / "abl.yaml").write_text(
        "# cm3leon ablate abl.yaml\n"
        + yaml.safe_dump(
            {
                "name": "rel",
                "base": {"runner": "r", "config": "base.yaml", "overrides": ["model.size=1b"]},
                "matrix": {"k": [1, 2]},
                "run_name": "${name}-k${matrix.k}",
            }
        )
    )
    cfg = load_ablation(tmp_path / "abl.yaml", ["matrix.k=[3]"])
    runs = expand_runs(cfg, source=tmp_path / "abl.yaml")
    assert [r.name for r in runs] == ["rel-k3"]
    renamed = load_ablation(tmp_path / "abl.yaml", ["run_name=k${matrix.k}-${base.runner}"])
    assert [r.name for r in expand_runs(renamed, source=tmp_path / "abl.yaml")] == ["k1-r", "k2-r"]
    assert runs[0].config == {"k": 3, "model": {"size": "1b"}, "tag": "1b-x"}
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump({"name": "bad", "base": {"runner": "r"}, "matrx": {}})
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml.*matrx"):
        load_ablation(tmp_path / "bad.yaml")
