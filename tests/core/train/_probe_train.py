"""``python -m cm3leon.core.train`` plus a probe callback, for the multi-process tests.

Usage (as a ``composer`` launcher script)::

    composer -n 2 tests/core/train/_probe_train.py CONFIG [key=value ...]

Each rank writes, under ``<run_dir>/probe/``:

* ``pid-rank{r}`` at start;
* ``steps-rank{r}.jsonl``: after every step, ``{"batch": b, "sha256": ...}`` of this rank's
  parameters in name order (its own shards under FSDP2), appended (a restart adds rows);
* ``children-rank{r}-pid{p}.json`` after the first step of each start: the pids of this rank's child processes
  (dataloader workers), so a test can check none of them outlives the run;
* ``params-rank{r}.pt`` at the end of training: its parameters (local shards under FSDP2).

``CM3LEON_PROBE_KILL=BATCH:RANK[,RANK...]`` (environment) makes the listed ranks SIGKILL
themselves at the end of step ``BATCH`` (after its update, before a checkpoint of that
step), each after writing ``killed-rank{r}`` (the ``time.time()`` of the kill): a real
SIGKILL at the same point every time, no polling race.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from cm3leon.core.config import load_config
from cm3leon.core.train import TrainConfig, train

KILL_ENV = "CM3LEON_PROBE_KILL"


def _local(t: torch.Tensor) -> torch.Tensor:
    to_local = getattr(t, "to_local", None)  # FSDP2 DTensor: this rank's shard
    return (to_local() if callable(to_local) else t).detach().cpu()


class Probe(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.rank = dist.get_global_rank()
        batch, _, ranks = os.environ.get(KILL_ENV, "").partition(":")
        self.kill_at = int(batch) if batch else None
        self.kill_ranks = {int(r) for r in ranks.split(",") if r}

    def batch_end(self, state: State, logger: Logger) -> None:
        batch = int(state.timestamp.batch)
        digest = hashlib.sha256()
        for name, p in sorted(state.model.named_parameters()):
            digest.update(name.encode())
            digest.update(_local(p).contiguous().view(torch.uint8).numpy().tobytes())
        with open(self.out / f"steps-rank{self.rank}.jsonl", "a") as fh:
            fh.write(json.dumps({"batch": batch, "sha256": digest.hexdigest()}) + "\n")
        children = self.out / f"children-rank{self.rank}-pid{os.getpid()}.json"
        if not children.exists():
            pids = [c.pid for c in psutil.Process().children(recursive=True)]
            children.write_text(json.dumps(pids))
        if batch == self.kill_at and self.rank in self.kill_ranks:
            (self.out / f"killed-rank{self.rank}").write_text(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)

    def fit_end(self, state: State, logger: Logger) -> None:
        params = {k: _local(v).clone() for k, v in state.model.named_parameters()}
        torch.save(params, self.out / f"params-rank{self.rank}.pt")


def main() -> None:
    cfg = load_config(TrainConfig, sys.argv[1], sys.argv[2:])
    probe = Path(cfg.run_dir) / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / f"pid-rank{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
    train(cfg, extra_callbacks=[Probe(probe)])


if __name__ == "__main__":
    main()
