"""Every shipped ablation expands and every run config validates against its runner's schema
(steps of a chain too), without running anything; overriding a path variable moves every run."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cm3leon.core.config import load_config
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.registry import resolve_object
from cm3leon.eval.ablation.execute import run_ablation
from cm3leon.eval.ablation.spec import expand_runs, load_ablation

ROOT = Path(__file__).resolve().parents[3]
ABLATIONS = sorted((ROOT / "configs" / "ablations").glob("*.yaml"))


def _validate_steps(config: dict) -> int:
    registries = get_registries()
    for step in config["steps"]:
        spec = registries.runners.get(step["runner"])
        merged = OmegaConf.merge(
            OmegaConf.create(config.get("common", {})), OmegaConf.create(step["config"])
        )
        load_config(resolve_object(spec.schema), data=OmegaConf.to_container(merged))
    return len(config["steps"])


@pytest.mark.parametrize("path", ABLATIONS, ids=[p.name for p in ABLATIONS])
def test_shipped_ablation_validates(path: Path, tmp_path: Path) -> None:
    res = run_ablation(path, out_dir=tmp_path, dry_run=True, progress=False)
    assert res.outcomes and {o.status for o in res.outcomes} == {"pending"}
    assert (tmp_path / "plan.json").is_file()
    if res.config.base.runner == "chain":
        assert all(_validate_steps(o.run.config) == 4 for o in res.outcomes)


def test_demo_paths_are_overridable() -> None:
    path = ROOT / "configs" / "ablations" / "model_size.yaml"
    runs = expand_runs(load_ablation(path, ["vars.demo=/data/d", "vars.tiny=/data/t"]), source=path)
    tiny = next(r for r in runs if r.labels["model"] == "tiny")
    assert tiny.config["steps"][0]["config"]["model"]["export"] == "/data/t/pretrain/export"
    assert (
        tiny.config["common"]["model"]["image_tokenizer"]
        == "vqgan:/data/t/tokenizers/image/tokenizer"
    )
    assert tiny.config["steps"][3]["config"]["data"]["root"] == "/data/d/world/instruct_pix2pix"
    path = ROOT / "configs" / "ablations" / "t2i_retrieval_k.yaml"
    run = expand_runs(load_ablation(path, ["vars.demo=/x"]), source=path)[0]
    assert (
        run.config["model"]["export"] == "/x/pretrain/export"
        and run.config["retrieval"]["bank"] == "/x/retrieval/bank"
    )
