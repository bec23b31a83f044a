"""The demo config: presets, shipped YAML files, stage plan and its validation (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.config import ConfigError, load_config
from cm3leon.eval.demo import DemoConfig, Layout, build_stages, demo_config, load_demo_config
from cm3leon.eval.demo.runner import validate_stage_configs

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name,quick", [("full", False), ("quick", True)])
def test_shipped_yaml_is_the_preset(name: str, quick: bool) -> None:
    shipped = load_config(DemoConfig, ROOT / "configs" / "demo" / f"{name}.yaml")
    assert shipped == load_demo_config(quick=quick)
    assert load_demo_config(ROOT / "configs" / "demo" / f"{name}.yaml") == shipped


def test_default_is_full_and_quick_is_smaller() -> None:
    full, quick = load_demo_config(), load_demo_config(quick=True)
    assert full == DemoConfig() and full.out == "runs/demo" and quick.out == "runs/demo_quick"
    assert quick.world.n < full.world.n
    assert quick.pretrain["max_duration"] != full.pretrain["max_duration"]
    assert demo_config(quick=True)["world"]["n"] == quick.world.n


def test_file_then_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("world: {n: 123}\npretrain: {max_duration: 7ba}\n")
    cfg = load_demo_config(path, ["pretrain.optim.lr=0.5", "out=elsewhere"], quick=True)
    assert cfg.world.n == 123 and cfg.out == "elsewhere"
    assert cfg.pretrain["max_duration"] == "7ba" and cfg.pretrain["optim"]["lr"] == 0.5
    assert cfg.clip == load_demo_config(quick=True).clip  # the rest stays the quick preset


def test_bad_keys_name_the_source(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("wrold: {n: 1}\n")
    with pytest.raises(ConfigError, match=r"d\.yaml.*wrold"):
        load_demo_config(path)
    with pytest.raises(ConfigError, match=r"world\.n"):
        load_demo_config(None, ["world.n=many"])


def test_plan_covers_the_paper_in_order(tmp_path: Path) -> None:
    stages = build_stages(load_demo_config(quick=True), Layout(tmp_path))
    assert [s.name for s in stages] == [
        "world", "documents", "text_tokenizer", "image_tokenizer", "clip", "bank", "augment",
        "pretrain", "mixture", "sft", "vq_ceiling", "text_to_image", "in_context", "captioning", "vqa",
        "editing",
    ]  # fmt: skip
    names = {s.name for s in stages}
    for i, stage in enumerate(stages):
        assert set(stage.depends) <= {s.name for s in stages[:i]}, stage.name
        for step in stage.steps:
            assert step.argv[0] in {"world", "data", "tokenizers", "retrieval", "train", "tasks", "ablate", "eval"}
        for path in [*stage.artefacts.values(), *stage.owns, *stage.configs]:
            assert tmp_path in path.parents, (stage.name, path)
    assert names >= {"pretrain", "sft"}


def test_every_stage_command_is_registered(tmp_path: Path) -> None:
    from cm3leon.core.plugin_manager import get_registries

    commands = get_registries().commands
    for stage in build_stages(load_demo_config(), Layout(tmp_path)):
        for step in stage.steps:
            assert step.argv[0] in commands, step.command_line


def test_stage_configs_validate_and_errors_name_the_stage(tmp_path: Path) -> None:
    validate_stage_configs(build_stages(load_demo_config(), Layout(tmp_path)))
    bad = load_demo_config(None, ["pretrain.optim.learning_rate=1"])
    with pytest.raises(ConfigError, match=r"demo stage 'pretrain'.*learning_rate"):
        validate_stage_configs(build_stages(bad, Layout(tmp_path)))


def test_disabled_evaluations_leave_the_plan(tmp_path: Path) -> None:
    cfg = load_demo_config(None, ["editing.enabled=false", "vq_ceiling.enabled=false"], quick=True)
    names = [s.name for s in build_stages(cfg, Layout(tmp_path))]
    assert "editing" not in names and "vq_ceiling" not in names and names[-1] == "vqa"


def test_dry_run_writes_configs_and_commands(tmp_path: Path) -> None:
    from cm3leon.eval.demo import run_demo

    cfg = load_demo_config(None, [f"out={tmp_path}"], quick=True)
    run_demo(cfg, dry_run=True, progress=False)
    script = (tmp_path / "commands.sh").read_text()
    assert "cm3leon world export" in script and "cm3leon ablate" in script
    pretrain = (tmp_path / "configs" / "pretrain.yaml").read_text()
    assert pretrain.startswith("# cm3leon train run ") and str(tmp_path / "data" / "pretrain_ra") in pretrain
    assert not (tmp_path / "world").exists()  # nothing ran
