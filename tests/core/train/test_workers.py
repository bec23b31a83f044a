"""Loader workers (issue 17, item 6): 2 workers train on exactly the batches of 0 workers.

The CM3 transform, fitting and packing run in the workers; the losses of every step must be
bitwise equal to the in-process loader's, and a run resumed from a checkpoint with workers
continues on the same batches.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.config import ConfigError, load_config
from cm3leon.core.train.config import validate_train_config
from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import tiny_config


def _losses(metrics: Path) -> list[float]:
    return [row["loss/train/total"] for row in read_metrics(metrics) if "loss/train/total" in row]


def _run(tmp_path: Path, name: str, data: Path, **overrides):
    from cm3leon.core.train import TrainConfig, train

    cfg = tiny_config(tmp_path / name, {"ra": {"local": str(data)}}, max_duration="6ba",
                      **{"checkpoint.save_interval": "2ba", **overrides})  # fmt: skip
    return train(load_config(TrainConfig, data=cfg))


def test_two_workers_give_the_losses_of_zero_workers_also_after_a_resume(tmp_path: Path, token_data: Path) -> None:
    base = _losses(_run(tmp_path, "w0", token_data).metrics)
    workers = {"data.num_workers": 2, "data.persistent_workers": True, "data.prefetch_factor": 2}
    two = _run(tmp_path, "w2", token_data, **workers)
    assert len(base) == 6 and _losses(two.metrics) == base  # bitwise
    ckpt = two.latest_checkpoint.parent / "ep0-ba2-rank0.pt"
    resumed = _run(tmp_path, "w2_resumed", token_data, **workers, **{"checkpoint.load_path": str(ckpt)})
    assert _losses(resumed.metrics) == base[2:]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.persistent_workers": True}, "data.persistent_workers: needs data.num_workers > 0"),
        ({"data.prefetch_factor": 2}, "data.prefetch_factor: needs data.num_workers > 0"),
        ({"data.num_workers": -1}, "data.num_workers: must be >= 0"),
    ],
)
def test_worker_options_are_checked(tmp_path: Path, overrides: dict, message: str) -> None:
    from cm3leon.core.train import TrainConfig

    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "r", {"ra": {"local": "x"}}, **overrides))
    with pytest.raises(ConfigError, match=message):
        validate_train_config(cfg)
