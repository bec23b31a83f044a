"""A tiny pretraining run on CPU through the real command: the loss falls clearly."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import mean

import pytest

from cm3leon.core.train.logs import read_metrics, series
from tests.core.train._helpers import (
    VOCAB,
    run,
    tiny_config,
    train_cmd,
    write_config,
    write_token_dataset,
)


@pytest.mark.slow
@pytest.mark.integration
def test_tiny_pretraining_loss_falls(tmp_path: Path) -> None:
    ra = write_token_dataset(tmp_path / "ra", 512, retrieved=2, seed=1)
    plain = write_token_dataset(tmp_path / "plain", 256, seed=2)
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, {"ra": {"local": str(ra), "proportion": 0.75},
                                "plain": {"local": str(plain), "proportion": 0.25}},
                      max_duration="150ba", **{"model.options": {"max_seq_len": 256}, "data.seq_len": 256,
                                               "data.global_batch_size": 16, "optim.lr": 3e-3,
                                               "scheduler.warmup": "10ba", "checkpoint.save_interval": "50ba",
                                               "logging.plot": True})
    log = tmp_path / "train.log"
    assert run(train_cmd(write_config(tmp_path / "tiny.yaml", cfg)), log).returncode == 0, log.read_text()[-3000:]
    rows = read_metrics(run_dir / "metrics.jsonl")
    _, loss = series(rows, "loss/train/total")
    _, image = series(rows, "metrics/train/loss_image")
    assert len(loss) == 150
    assert mean(loss[:5]) == pytest.approx(math.log(VOCAB.size), rel=0.1)  # starts at chance
    assert mean(loss[-10:]) < 0.5 * mean(loss[:5])
    assert mean(image[-10:]) < 0.5 * mean(image[:5])
    assert (run_dir / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
