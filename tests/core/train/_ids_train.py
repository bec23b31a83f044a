"""``python -m cm3leon.core.train`` that records, per step and rank, the sample ids it trained on.

Usage (as a ``composer`` launcher script)::

    composer -n N tests/core/train/_ids_train.py CONFIG [key=value ...]

Each rank appends ``{"batch": step, "ids": [...]}`` to ``<run_dir>/probe/ids-rank{r}.jsonl``:
the ``sample_id`` of every example its dataloader fetched for that step (``num_workers: 0``,
so the fetches of one step happen in this process between two ``AFTER_DATALOADER`` events).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from cm3leon.core.config import load_config
from cm3leon.core.shard_datasets import CM3StreamingDataset
from cm3leon.core.train import TrainConfig, train

_FETCHED: list[int] = []
_get_item = CM3StreamingDataset.get_item


def _recording_get_item(self: CM3StreamingDataset, sample_id: int, *args: Any, **kwargs: Any) -> Any:
    _FETCHED.append(int(sample_id))
    return _get_item(self, sample_id, *args, **kwargs)


class RecordIds(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def after_dataloader(self, state: State, logger: Logger) -> None:
        with open(self.out / f"ids-rank{dist.get_global_rank()}.jsonl", "a") as fh:
            fh.write(json.dumps({"batch": int(state.timestamp.batch), "ids": sorted(_FETCHED)}) + "\n")
        _FETCHED.clear()


def main() -> None:
    cfg = load_config(TrainConfig, sys.argv[1], sys.argv[2:])
    probe = Path(cfg.run_dir) / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    CM3StreamingDataset.get_item = _recording_get_item  # type: ignore[method-assign]
    train(cfg, extra_callbacks=[RecordIds(probe)])


if __name__ == "__main__":
    main()
