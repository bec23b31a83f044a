"""The demo config: presets, shipped YAML files, stage plan and its validation (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.config import ConfigError, load_config
from cm3leon.eval.demo import DemoConfig, Layout, build_stages, demo_config, load_demo_config
from cm3leon.eval.demo.runner import validate_stage_configs

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["full", "quick", "long"])
def test_shipped_yaml_is_the_preset(name: str) -> None:
    shipped = load_config(DemoConfig, ROOT / "configs" / "demo" / f"{name}.yaml")
    assert shipped == load_demo_config(preset=name)
    assert load_demo_config(ROOT / "configs" / "demo" / f"{name}.yaml") == shipped
    assert demo_config(preset=name)["out"] == shipped.out


def test_quick_flag_is_the_quick_preset_and_presets_are_checked() -> None:
    assert load_demo_config(quick=True) == load_demo_config(preset="quick")
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_demo_config(preset="huge")
    with pytest.raises(ConfigError, match="two presets"):
        load_demo_config(quick=True, preset="long")


def test_long_preset_grows_the_full_one_and_turns_on_the_tail_and_plain() -> None:
    full, long = load_demo_config(), load_demo_config(preset="long")
    assert long.out == "runs/demo_long" and long.world.entity_docs > 0 and long.world.n > full.world.n
    assert long.image_tokenizer["image"]["max_steps"] > full.image_tokenizer["image"]["max_steps"]
    assert int(long.clip["train_clip"]["max_duration"][:-2]) > int(full.clip["train_clip"]["max_duration"][:-2])
    assert long.pretrain["max_duration"].endswith("tok")  # a token budget: equal compute with plain
    full_tokens = 2_573_557  # the full preset's pretraining tokens (runs/demo metrics.jsonl, measured)
    assert int(long.pretrain["max_duration"][:-3]) > 2 * full_tokens
    assert long.text_to_image.protocol["data"]["limit"] > full.text_to_image.protocol["data"]["limit"]
    assert long.plain.enabled and not full.plain.enabled and not load_demo_config(quick=True).plain.enabled


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


def test_long_plan_adds_plain_pretraining_of_the_same_documents(tmp_path: Path) -> None:
    stages = {s.name: s for s in build_stages(load_demo_config(preset="long"), Layout(tmp_path))}
    names = list(stages)
    assert names.index("pretrain") < names.index("plain_data") < names.index("plain_pretrain") < names.index("sft")
    assert names.index("tail_to_image") < names.index("plain_text_to_image") < names.index("plain_tail_to_image")
    argv = stages["plain_data"].steps[0].argv  # the documents the augmented shards are made of
    assert argv[:3] == ("data", "prepare", str(tmp_path / "world" / "pretrain" / "train.jsonl"))
    assert argv[argv.index("--kind") + 1] == "tokens" and stages["documents"].steps[0].argv[2] == argv[2]
    (_, (_, ra)), = stages["pretrain"].configs.items()
    (_, (_, plain)), = stages["plain_pretrain"].configs.items()
    assert plain["data"]["streams"]["data"]["local"] == str(tmp_path / "data" / "pretrain_plain")
    assert ra["data"]["streams"]["data"]["local"] == str(tmp_path / "data" / "pretrain_ra")
    assert plain["run_dir"] == str(tmp_path / "plain_pretrain") and plain["data"]["global_batch_size"] == 32
    same = ("model", "optim", "scheduler", "max_duration", "precision", "seed")
    assert {k: plain.get(k) for k in same} == {k: ra.get(k) for k in same}
    assert plain["data"]["seq_len"] == ra["data"]["seq_len"] and plain["data"]["cm3"] == ra["data"]["cm3"]
    (_, (_, ablation)), = stages["plain_text_to_image"].configs.items()
    (_, (_, head)), = stages["text_to_image"].configs.items()
    assert ablation["base"]["config"]["model"]["export"] == str(tmp_path / "plain_pretrain" / "export")
    assert ablation["matrix"] == {"k": {"key": "retrieval.k", "values": [0]},
                                  "strategy": {"values": {"top_p": {"decoding.strategy": "top_p"}}}}
    assert ablation["base"]["config"]["data"] == head["base"]["config"]["data"]  # the same prompts
    assert ablation["base"]["config"]["seed"] == head["base"]["config"]["seed"]
    validate_stage_configs(list(stages.values()))


def test_plain_needs_a_token_budget_and_known_strategies(tmp_path: Path) -> None:
    cfg = load_demo_config(None, ["plain.enabled=true"], quick=True)  # quick: 8ba
    with pytest.raises(ConfigError, match=r"pretrain\.max_duration must be a token count.*'8ba'"):
        build_stages(cfg, Layout(tmp_path))
    cfg = load_demo_config(None, ["plain.enabled=true", "pretrain.max_duration=4000tok",
                                  "plain.strategies=[top_q]"], quick=True)  # fmt: skip
    with pytest.raises(ConfigError, match=r"plain\.strategies.*top_q"):
        build_stages(cfg, Layout(tmp_path))


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


def test_cli_preset_long_dry_run_writes_the_plain_stages(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cm3leon.eval.demo.cli import demo_command

    result = CliRunner().invoke(demo_command, ["--preset", "long", "--dry-run", "--no-progress", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "max_duration: 7200000tok" in (tmp_path / "configs" / "plain_pretrain.yaml").read_text()
    assert "cm3leon data prepare" in (tmp_path / "commands.sh").read_text()
    bad = CliRunner().invoke(demo_command, ["--quick", "--preset", "long", "--dry-run", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "two presets" in bad.output
