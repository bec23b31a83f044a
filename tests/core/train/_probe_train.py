"""``python -m cm3leon.core.train`` plus a probe callback, for the multi-process tests.

Usage (as a ``composer`` launcher script)::

    composer -n 2 tests/core/train/_probe_train.py CONFIG [key=value ...]

Each rank writes ``<run_dir>/probe/pid-rank{r}`` at start and, at the end of training,
``<run_dir>/probe/params-rank{r}.pt`` with its model parameters, so the test can check
that every replica holds the same weights.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from cm3leon.core.config import load_config
from cm3leon.core.train import TrainConfig, train


class DumpParams(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def fit_end(self, state: State, logger: Logger) -> None:
        params = {k: v.detach().cpu().clone() for k, v in state.model.named_parameters()}
        torch.save(params, self.out / f"params-rank{dist.get_global_rank()}.pt")


def main() -> None:
    cfg = load_config(TrainConfig, sys.argv[1], sys.argv[2:])
    probe = Path(cfg.run_dir) / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / f"pid-rank{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
    train(cfg, extra_callbacks=[DumpParams(probe)])


if __name__ == "__main__":
    main()
