"""FSDP that runs (issue 17 item 2): the shipped pretraining configs' ``fsdp`` section on 2
gloo ranks -- train, sharded checkpoints, a real SIGKILL of every rank, autoresume -- equal
to the uninterrupted run, bitwise.

The config is ``configs/pretrain/7b.yaml`` loaded with OmegaConf and scaled down in model
size only (2 layers of width 32 instead of 32 of 4096, 64-token rows); its ``fsdp`` section
(FULL_SHARD, PURE mixed precision, sharded state dict), activation checkpointing, checkpoint
rotation (``num_to_keep: 3``) and callbacks are kept.  What must change for 2 CPU processes is said
where it is changed: the device (cpu), fp32, the data (a small token dataset), the step
counts, and the number of loader workers.  350m and 760m build the same Composer FSDP
config but without activation checkpointing (checked below).

Composer's FSDP1 cannot shard without CUDA (it pins ``torch.cuda.current_device()``);
Composer's FSDP2 (``fully_shard``) can, and is what ``fsdp.version: 2`` -- the default --
runs everywhere (:mod:`cm3leon.core.train.fsdp`).  Rank 1 builds the model on the meta
device and receives rank 0's initial weights by broadcast.

Bitwise, not a tolerance: with one thread per process the CPU kernels and gloo's
reduce-scatter/all-gather of 2 ranks are deterministic, and the sharded checkpoint
restores each rank's parameter and AdamW shards, the schedule and the loader position.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cm3leon.core.config import ConfigError, load_config
from cm3leon.core.model import meta_model, preset_config
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.builders import build_parallelism
from cm3leon.core.train.callbacks import ResumeMismatchError
from cm3leon.core.train.composer_checkpoints import check_checkpoint, read_run_info
from cm3leon.core.train.config import config_fingerprint, validate_train_config
from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import REPO, VOCAB, launch_ranks, tiny_config, write_token_dataset

PROBE = str(Path(__file__).with_name("_probe_train.py"))
STEPS, KILL_AT = 8, 5  # checkpoints every 2 steps: the kill loses step 5, the restart redoes it from ba4
SHIPPED = "7b"  # the config the 2-rank run uses (activation checkpointing on; see the first test)
SMALL = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64, "max_seq_len": 64}


def shipped_scaled_down(name: str, run_dir: Path, data: Path) -> dict:
    """``configs/pretrain/{name}.yaml`` with a tiny model, CPU settings, small data and few steps."""
    cfg = OmegaConf.load(REPO / "configs" / "pretrain" / f"{name}.yaml")
    shipped_fsdp = OmegaConf.to_container(cfg.fsdp)
    cfg.merge_with({
        "run_dir": str(run_dir),
        "model": {"options": SMALL},  # the preset (cm3leon_7b, ...) with smaller dimensions
        "data": {"streams": {"ra": {"local": str(data)}}, "seq_len": 64, "global_batch_size": 8,
                 "num_workers": 0, "persistent_workers": False, "prefetch_factor": None},  # 8 per rank: too many for 2 cores
        "scheduler": {"warmup": "2ba"},
        "max_duration": f"{STEPS}ba",
        "device": "cpu", "precision": "fp32",  # bf16 autocast is not bitwise-reproducible on every CPU
        "device_train_microbatch_size": 2,  # 4 rows per rank: 2 microbatches (gradient accumulation)
        "checkpoint": {"save_interval": "2ba"},
        "logging": {"plot": False},
    })
    out = OmegaConf.to_container(cfg)
    assert out["fsdp"] == shipped_fsdp and out["fsdp"]["enabled"]  # the shipped section, untouched
    return out


def _write(cfg: dict, path: Path) -> Path:
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    return path


def test_shipped_sections_build_the_fsdp2_config_proven_here() -> None:
    """350m and 760m give Composer the FSDP config that the 2-rank test runs for 7b, except
    activation checkpointing, which follows ``model.activation_checkpointing`` (on for 7b
    only): the run covers the harder of the two."""
    built = {}
    for name in ("350m", "760m", "7b"):
        cfg = load_config(TrainConfig, data=shipped_scaled_down(name, Path("/tmp/unused"), Path("/tmp/unused")))
        validate_train_config(cfg)  # FSDP on the CPU is accepted (fsdp.version 2)
        built[name] = vars(build_parallelism(cfg)["fsdp"])
        assert built[name].pop("activation_checkpointing") is cfg.model.activation_checkpointing is (name == "7b")
    assert built["350m"] == built["760m"] == built["7b"]


def test_fsdp_version_is_not_in_the_resume_fingerprint() -> None:
    """Checkpoints written before ``fsdp.version`` existed (their fingerprint lacks it) resume."""
    cfg = load_config(TrainConfig, data=shipped_scaled_down("350m", Path("/tmp/unused"), Path("/tmp/unused")))
    fingerprint = config_fingerprint(cfg)
    assert "fsdp.enabled" in fingerprint and "fsdp.version" not in fingerprint


@pytest.mark.parametrize(("override", "message"), [
    ({"fsdp.version": 1}, r"fsdp.version: 1 \(Composer's FSDP1\) needs GPUs"),
    ({"fsdp.version": 3}, r"fsdp.version: 1 .* or 2 .*, got 3"),
    ({"fsdp.sharding_strategy": "HYBRID_SHARD"}, r"fsdp.sharding_strategy: 'HYBRID_SHARD' has no FSDP2"),
    ({"fsdp.cpu_offload": True}, r"fsdp.cpu_offload: not available with fsdp.version=2"),
])
def test_fsdp_settings_without_a_cpu_meaning_are_named(override: dict, message: str) -> None:
    data = shipped_scaled_down("350m", Path("/tmp/unused"), Path("/tmp/unused"))
    key, value = next(iter(override.items()))
    data["fsdp"][key.split(".")[1]] = value
    with pytest.raises(ConfigError, match=message):
        validate_train_config(load_config(TrainConfig, data=data))


def test_sharded_resume_checks_run_info_first_and_loads_an_allowed_new_key(tmp_path: Path, token_data: Path) -> None:
    """A sharded checkpoint's RunInfo is read before the Trainer (a changed config is named,
    not a DCP traceback), and an allowed change of the config's key set resumes: DCP loads
    into the checkpoint's keys (before: ``RuntimeError: Missing key in checkpoint state_dict:
    state.callbacks.RunInfo.fingerprint....``).  FSDP2 on one in-process rank."""
    run_dir = tmp_path / "run"
    base = tiny_config(run_dir, {"ra": {"local": str(token_data)}}, max_duration="2ba",
                       **{"fsdp.enabled": True, "data.static_rows": True, "checkpoint.save_interval": "2ba"},
                       callbacks=[{"name": "speed_monitor", "options": {"window_size": 2}}, {"name": "lr_monitor"}])
    train(load_config(TrainConfig, data=base))
    saved = read_run_info(run_dir / "checkpoints" / "ep0-ba2")
    assert (run_dir / "checkpoints" / "ep0-ba2" / ".metadata").is_file()
    assert saved["vocab"] == VOCAB.to_dict() and saved["fingerprint"]["optim.lr"] == 3e-3
    assert saved["fingerprint"]["optim.betas"] == [0.9, 0.95] and saved["run_name"] == "test"
    assert saved["fingerprint"]["callbacks"][0] == {"name": "speed_monitor", "options": {"window_size": 2}}

    changed = {**base, "max_duration": "3ba",
               "data": {**base["data"], "cm3": {"options": {"whole_text_prob": 0.25}}}}
    with pytest.raises(ResumeMismatchError, match=r"data\.cm3\.options\.whole_text_prob: '<unset>' -> 0\.25"):
        train(load_config(TrainConfig, data=changed))
    changed["checkpoint"] = {**base["checkpoint"], "allow_changes": ["data.cm3.options.*"]}
    assert train(load_config(TrainConfig, data=changed)).batches == 3
    resumed = read_run_info(run_dir / "checkpoints" / "ep0-ba3")  # the new run's RunInfo is saved
    assert resumed["fingerprint"]["data.cm3.options.whole_text_prob"] == 0.25


# ------------------------------------------------------------------ 2 gloo ranks
def _run(config: Path, log: Path, **env: str) -> int:
    proc = launch_ranks(2, PROBE, config, log, port_offset=3, **env)
    try:
        return proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["batch"]: r["loss/train/total"] for r in read_metrics(run_dir / "metrics.jsonl")
            if "loss/train/total" in r}


def _hashes(run_dir: Path, rank: int) -> dict[int, str]:
    rows = (run_dir / "probe" / f"steps-rank{rank}.jsonl").read_text().splitlines()
    return {r["batch"]: r["sha256"] for r in map(json.loads, rows)}


def _shards(run_dir: Path, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "probe" / f"params-rank{rank}.pt", weights_only=True)


def _assert_sharded(checkpoint: Path) -> None:
    """One ``.distcp`` per rank beside ``.metadata``; the guard passes it."""
    assert checkpoint.is_dir(), checkpoint
    assert sorted(p.name for p in checkpoint.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    check_checkpoint(checkpoint)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.world_size(2)
def test_fsdp_sharded_checkpoint_sigkill_of_every_rank_then_autoresume_is_exact(tmp_path: Path) -> None:
    data = write_token_dataset(tmp_path / "data", 64, retrieved=1)
    timings = {}

    reference = tmp_path / "reference"
    started = time.monotonic()
    code = _run(_write(shipped_scaled_down(SHIPPED, reference, data), tmp_path / "reference.yaml"),
                tmp_path / "reference.log")
    timings["uninterrupted"] = time.monotonic() - started
    assert code == 0, (tmp_path / "reference.log").read_text()[-4000:]

    # Each rank holds only its shard of every parameter, and the shards tile the model.
    s0, s1 = _shards(reference, 0), _shards(reference, 1)
    full = meta_model(preset_config(f"cm3leon_{SHIPPED}", **SMALL, vocab_size=VOCAB.size))
    assert sum(t.numel() for t in [*s0.values(), *s1.values()]) == sum(p.numel() for p in full.parameters())
    emb = "model.tok_emb.weight"
    assert s0[emb].shape[0] + s1[emb].shape[0] == VOCAB.size and s0[emb].shape[0] < VOCAB.size

    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    config = _write(shipped_scaled_down(SHIPPED, run_dir, data), tmp_path / "run.yaml")
    started = time.monotonic()
    code = _run(config, log, CM3LEON_PROBE_KILL=f"{KILL_AT}:0,1")  # both ranks SIGKILLed after step 5
    timings["killed"] = time.monotonic() - started
    assert code != 0 and (run_dir / "probe" / "killed-rank0").exists() and (run_dir / "probe" / "killed-rank1").exists()
    latest = run_dir / "checkpoints" / "latest-rank0.pt"
    assert latest.resolve().name == "ep0-ba4", latest.resolve()
    _assert_sharded(latest.resolve())

    started = time.monotonic()
    assert _run(config, log) == 0, log.read_text()[-4000:]  # the same command: autoresume
    timings["resumed"] = time.monotonic() - started
    print("wall seconds:", {k: round(v) for k, v in timings.items()})
    assert "Autoresuming training from checkpoint" in (run_dir / "logs" / "rank0.log").read_text()

    assert sorted(_losses(reference)) == list(range(STEPS))
    assert _losses(run_dir) == _losses(reference)  # bitwise, every step
    for rank in (0, 1):
        assert _hashes(run_dir, rank) == _hashes(reference, rank), f"rank {rank}: parameter shards differ"
        ours, theirs = _shards(run_dir, rank), _shards(reference, rank)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), f"rank {rank}"
    _assert_sharded(run_dir / "checkpoints" / f"ep0-ba{STEPS}")

