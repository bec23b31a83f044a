"""In-process training runs: metrics, curves, the NaN policy and bad input (all before step 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.config import ConfigError, load_config
from cm3leon.core.shards import ShardIntegrityError
from cm3leon.core.train import NonFiniteLossError, TrainConfig, train
from cm3leon.core.train.composer_checkpoints import load_checkpoint_state
from cm3leon.core.train.config import validate_train_config
from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import REPO, tiny_config, write_config, write_token_dataset

SHIPPED = sorted((REPO / "configs" / "pretrain").glob("*.yaml")) + sorted((REPO / "configs" / "sft").glob("*.yaml"))


def test_metrics_file_has_one_line_per_batch_and_a_curve(trained_run) -> None:
    cfg, result = trained_run
    rows = [r for r in read_metrics(result.metrics) if "loss/train/total" in r]
    assert [r["batch"] for r in rows] == list(range(8))
    for key in ("loss/train/total", "metrics/train/loss_text", "metrics/train/loss_image",
                "metrics/train/perplexity_image", "metrics/train/loss_all"):
        assert all(isinstance(r[key], float) for r in rows), key
    assert rows[-1]["loss/train/total"] == pytest.approx(result.last_loss)
    png = Path(cfg.run_dir) / "loss_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (Path(cfg.run_dir) / "config.yaml").is_file()
    assert (Path(cfg.run_dir) / "logs" / "rank0.log").is_file()


@pytest.fixture(scope="module")
def nan_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 examples, one of which has NaN loss weights: exactly one bad step per epoch."""
    return write_token_dataset(tmp_path_factory.mktemp("nan") / "data", 64, nan_weight_ids=[21])


def _model_and_moments(path: Path) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    state = load_checkpoint_state(path)["state"]
    optim = next(iter(state["optimizers"].values()))["state"]
    return state["model"], [s["exp_avg"] for s in optim.values()]


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_nonfinite_skip_drops_exactly_that_update(tmp_path: Path, nan_data: Path) -> None:
    cfg = load_config(TrainConfig, data=tiny_config(
        tmp_path / "run", {"d": {"local": str(nan_data)}}, **{"checkpoint.save_interval": "1ba",
                                                            "nonfinite.check_gradients": False,
                                                            "data.shuffle": False}))
    result = train(cfg)
    assert result.batches == 8
    rows = read_metrics(result.metrics)
    bad = [r["batch"] for r in rows if "loss/train/total" in r and r["loss/train/total"] is None]
    assert bad == [2]  # unshuffled: example 21 is in the third batch of 8
    j = bad[0]
    assert rows[-1].get("nonfinite/skipped_steps", rows[j].get("nonfinite/skipped_steps")) == 1
    folder = Path(cfg.run_dir) / "checkpoints"
    before, after, nxt = (_model_and_moments(folder / f"ep0-ba{k}-rank0.pt") for k in (j, j + 1, j + 2))
    # the skipped step changes neither weights nor AdamW moments; the step before it did
    # update the moments (its LR may still be 0 in warm-up, so compare moments, not weights)
    assert _equal(before[0].values(), after[0].values()) and _equal(before[1], after[1])
    earlier = _model_and_moments(folder / f"ep0-ba{j - 1}-rank0.pt")
    assert not _equal(earlier[1], before[1])
    assert not _equal(after[0].values(), nxt[0].values())  # the next step trains again
    assert all(torch.isfinite(t).all() for t in nxt[0].values())


def test_nonfinite_stop_raises_naming_the_step(tmp_path: Path, nan_data: Path) -> None:
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "run", {"d": {"local": str(nan_data)}},
                                                   **{"nonfinite.policy": "stop"}))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss or gradient at step \d+ \(nonfinite.policy=stop\)"):
        train(cfg)


def test_unknown_config_key_names_its_dotted_path(tmp_path: Path, token_data: Path) -> None:
    cfg = tiny_config(tmp_path / "run", {"ra": {"local": str(token_data)}})
    cfg["data"]["sequence_len"] = 128
    path = write_config(tmp_path / "bad.yaml", cfg)
    with pytest.raises(ConfigError, match=r"bad\.yaml.*data\.sequence_len"):
        load_config(TrainConfig, path)
    result = CliRunner().invoke(cli, ["train", str(write_config(tmp_path / "ok.yaml", cfg | {"data": {
        **cfg["data"], "sequence_len": None}})), "optim.learning_rate=1"])
    assert result.exit_code == 1 and "data.sequence_len" in result.output
    ok = tiny_config(tmp_path / "run", {"ra": {"local": str(token_data)}})
    result = CliRunner().invoke(cli, ["train", str(write_config(tmp_path / "ok2.yaml", ok)), "optim.learning_rate=1"])
    assert result.exit_code == 1 and "optim.learning_rate" in result.output
    assert not (tmp_path / "run").exists()


def test_bad_values_are_reported_together(tmp_path: Path, token_data: Path) -> None:
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "r", {"ra": {"local": str(token_data)}},
                                                   precision="amp_fp16", **{"nonfinite.policy": "ignore"}))
    with pytest.raises(ConfigError, match=r"nonfinite.policy: 'ignore'.*precision: 'amp_fp16' is a GPU setting"):
        validate_train_config(cfg)
    fsdp = load_config(TrainConfig, data=tiny_config(tmp_path / "r", {"ra": {"local": str(token_data)}},
                                                    device="gpu", **{"fsdp.enabled": True}))
    with pytest.raises(ConfigError, match=r"data.static_rows: FSDP needs the same rows on every rank"):
        validate_train_config(fsdp)


def test_unwritable_save_folder_fails_before_step_one(tmp_path: Path, token_data: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the checkpoint folder should be")
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "run", {"ra": {"local": str(token_data)}},
                                                   **{"checkpoint.save_folder": str(blocker / "ckpt")}))
    with pytest.raises(ConfigError, match=r"checkpoint.save_folder: .*not_a_dir/ckpt is not writable"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("where", ["local", "remote"])
def test_flipped_byte_in_a_shard_is_caught_before_training(tmp_path: Path, token_data: Path, where: str) -> None:
    """A local dataset, or a remote directory (standing in for a shared file system): the
    shard is named before step 1 (a remote one used to fail after a step, with a traceback)."""
    data = tmp_path / "data"
    shutil.copytree(token_data, data)
    shard = sorted(data.glob("shard.*.mds"))[-1]
    blob = bytearray(shard.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    shard.write_bytes(bytes(blob))
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "run", {"ra": {where: str(data)}}))
    with pytest.raises(ShardIntegrityError, match=rf"{shard}: SHA-256 mismatch"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_remote_stream_is_cached_locally_and_mixed(tmp_path: Path, token_data: Path) -> None:
    """`remote` may be a directory standing in for an object store; two streams mix by proportion."""
    plain = write_token_dataset(tmp_path / "plain", 32, seed=5)
    streams = {"ra": {"remote": str(token_data), "proportion": 0.5}, "plain": {"local": str(plain), "proportion": 0.5}}
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "run", streams, max_duration="2ba"))
    result = train(cfg)
    assert result.batches == 2
    cache = tmp_path / "run" / "cache" / "train" / "ra"
    assert (cache / "index.json").is_file() and list(cache.glob("shard.*.mds"))


def test_rerunning_a_finished_run_is_a_no_op(tmp_path: Path, token_data: Path) -> None:
    """The same config again (autoresume) finds the run complete instead of Composer's
    "max_duration <= elapsed" error, and leaves the checkpoint and the metrics alone."""
    cfg = lambda: load_config(TrainConfig, data=tiny_config(  # noqa: E731
        tmp_path / "run", {"ra": {"local": str(token_data)}}, max_duration="2ba"))
    first = train(cfg())
    ckpt = first.latest_checkpoint
    assert ckpt is not None
    before = (ckpt.read_bytes(), first.metrics.read_text())
    again = train(cfg())
    assert again.batches == first.batches == 2
    assert again.latest_checkpoint == ckpt
    assert again.last_loss == pytest.approx(first.last_loss)
    assert (ckpt.read_bytes(), first.metrics.read_text()) == before


@pytest.mark.parametrize("path", SHIPPED, ids=[p.relative_to(REPO).as_posix() for p in SHIPPED])
def test_shipped_train_configs_pass_value_checks(path: Path) -> None:
    validate_train_config(load_config(TrainConfig, path), source=str(path))


def test_train_command_help_lists_subcommands() -> None:
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for sub in ("run", "export", "plot", "check"):
        assert sub in result.output


def test_eval_streams_report_per_modality_metrics(tmp_path: Path, token_data: Path) -> None:
    held_out = write_token_dataset(tmp_path / "val", 16, seed=9)
    cfg = load_config(TrainConfig, data=tiny_config(
        tmp_path / "run", {"ra": {"local": str(token_data)}}, max_duration="2ba",
        eval={"streams": {"val": {"local": str(held_out)}}, "interval": "2ba", "global_batch_size": 8,
              "subset_num_batches": 1}))
    rows = read_metrics(train(cfg).metrics)
    evaluated = [r for r in rows if "metrics/eval/loss_all" in r]
    assert evaluated and all(r["metrics/eval/loss_image"] > 0 for r in evaluated)
    assert "metrics/eval/perplexity_text" in evaluated[-1]


@pytest.mark.parametrize("path", [p for p in SHIPPED if "fsdp" in p.read_text()],
                         ids=lambda p: p.relative_to(REPO).as_posix())
def test_gpu_configs_build_a_composer_fsdp_config(path: Path) -> None:
    from composer.utils.parallelism import FSDP2Config, FSDPConfig

    from cm3leon.core.train.builders import build_parallelism

    cfg = load_config(TrainConfig, path)
    assert cfg.precision == "amp_bf16" and cfg.fsdp.enabled and cfg.fsdp.version == 2
    fsdp2 = build_parallelism(cfg)["fsdp"]  # the path tests/core/train/test_fsdp.py runs on 2 ranks
    assert isinstance(fsdp2, FSDP2Config) and fsdp2.reshard_after_forward is True
    assert fsdp2.mixed_precision == "PURE" and fsdp2.state_dict_type == "sharded"
    assert fsdp2.activation_checkpointing == cfg.model.activation_checkpointing
    cfg.fsdp.version = 1
    fsdp = FSDPConfig(**build_parallelism(cfg)["fsdp"])  # every key is a Composer 0.32 FSDPConfig field
    assert fsdp.sharding_strategy == "FULL_SHARD" and fsdp.mixed_precision == "PURE"
    assert fsdp.activation_checkpointing == cfg.model.activation_checkpointing


def test_export_and_check_commands(trained_run, tmp_path: Path) -> None:
    _, result = trained_run
    out = tmp_path / "export"
    ran = CliRunner().invoke(cli, ["train", "export", str(result.latest_checkpoint), str(out)])
    assert ran.exit_code == 0, ran.output
    assert (out / "model.safetensors").is_file() and (out / "COMPLETE").is_file()
    ran = CliRunner().invoke(cli, ["train", "check", str(result.latest_checkpoint)])
    assert ran.exit_code == 0 and "safe to load" in ran.output
    png = tmp_path / "curve.png"
    ran = CliRunner().invoke(cli, ["train", "plot", str(result.run_dir), "-o", str(png)])
    assert ran.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_sft_starts_from_the_pretrained_export(trained_run, tmp_path: Path, token_data: Path) -> None:
    from cm3leon.core.train import export_checkpoint
    from cm3leon.core.train.builders import build_composer_model
    from tests.core.train._helpers import VOCAB

    _, result = trained_run
    export = export_checkpoint(result.latest_checkpoint, tmp_path / "export")
    trained = load_checkpoint_state(result.latest_checkpoint)["state"]["model"]
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "sft", {"m": {"local": str(token_data)}},
                                                   **{"model.init_from": str(export)}))
    model = build_composer_model(cfg, VOCAB)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, trained[name]), name
    wider = load_config(TrainConfig, data=tiny_config(tmp_path / "sft", {"m": {"local": str(token_data)}},
                                                     **{"model.init_from": str(export),
                                                        "model.options": {"max_seq_len": 64, "d_model": 64}}))
    with pytest.raises(ConfigError, match=r"model.init_from: .*different architecture.*d_model"):
        build_composer_model(wider, VOCAB)
