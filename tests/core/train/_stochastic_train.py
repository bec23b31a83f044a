"""Training with a stochastic augmentation switched on, recording sample ids and random draws.

Usage::

    python tests/core/train/_stochastic_train.py POINT BATCH CONFIG [key=value ...]

``POINT BATCH``: SIGKILL this process at that point of that batch's checkpoint save (as
``_kill_train.py``), or ``none 0`` to run through.  Every step:

* the packing collator (in the loader workers when ``data.num_workers > 0``) adds the
  ``sample_id`` of every example of the batch, so the ids reach the trainer from any worker;
* ``RandomTokenNoise`` (at ``AFTER_DATALOADER``) replaces ~15% of the input tokens with the
  token at a random position of the same row, drawn from torch's global RNG, and draws one number each
  from numpy's and Python's global RNGs -- the streams Composer checkpoints;
* one JSON line ``{"batch", "ids", "torch", "numpy", "python"}`` is appended to
  ``<run_dir>/probe/steps.jsonl``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from composer.core import Callback, State
from composer.loggers import Logger

from cm3leon.core.config import load_config
from cm3leon.core.packing import PackingCollator
from cm3leon.core.train import TrainConfig, train

_collate = PackingCollator.__call__


def _collate_with_ids(self: PackingCollator, samples: Any) -> dict[str, torch.Tensor]:
    out = _collate(self, samples)
    out["probe_sample_ids"] = torch.tensor(sorted(int(s["sample_id"]) for s in samples))
    return out


class RandomTokenNoise(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def after_dataloader(self, state: State, logger: Logger) -> None:
        batch = state.batch
        ids = batch.pop("probe_sample_ids").tolist()
        inputs = batch["input_ids"]  # (R, T)
        source = torch.randint(0, inputs.shape[1], inputs.shape)  # a random position of the same row
        hit = torch.rand(inputs.shape) < 0.15
        batch["input_ids"] = torch.where(hit, torch.gather(inputs, 1, source), inputs)
        row = {"batch": int(state.timestamp.batch), "ids": ids,
               "torch": [int(hit.sum()), int(source[hit].sum())],
               "numpy": float(np.random.random()), "python": random.random()}  # fmt: skip
        with open(self.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def main(point: str, batch: int, argv: list[str]) -> None:
    if point != "none":
        sys.path.insert(0, str(Path(__file__).parent))
        from _kill_train import _install

        _install(point, batch)
    cfg = load_config(TrainConfig, argv[0], argv[1:])
    probe = Path(cfg.run_dir) / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    PackingCollator.__call__ = _collate_with_ids  # type: ignore[method-assign]  # workers fork after this
    train(cfg, extra_callbacks=[RandomTokenNoise(probe / "steps.jsonl")])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
