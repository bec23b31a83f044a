"""A process that reads a streamed dataset the way the trainer does (for the stale-shared-memory test).

Usage::

    python tests/core/train/_stream_loader.py REMOTE LOCAL N [--hold READY_FILE]

Builds the trainer's dataloader (:func:`cm3leon.core.train.data.build_dataspec`) over one
stream (``remote`` directory standing in for an object store, ``local`` cache), reads ``N``
batches and prints their sample ids.  With ``--hold`` it then writes ``READY_FILE`` and
sleeps, so the test can SIGKILL it while its shared memory and file locks exist.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from cm3leon.core.config import ConfigError
from cm3leon.core.train.config import DataSection, StreamSection
from cm3leon.core.train.data import build_dataspec


def main(remote: str, local: str, n: int, ready: str | None) -> None:
    data = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataSection), {
        "streams": {"ra": {"remote": remote, "local": local}}, "seq_len": 64, "global_batch_size": 4,
        "shuffle": False, "num_workers": 0}))
    assert isinstance(data, DataSection)
    spec, _ = build_dataspec(data, streams={"ra": StreamSection(remote=remote, local=local)},
                             global_batch_size=4, num_rows=None, cache_root=Path(local).parent,
                             seed=0, shuffle=False, where="data")
    batches = iter(spec.dataloader)
    for _ in range(n):
        next(batches)
    print(f"read {n} batches", flush=True)
    if ready:
        Path(ready).write_text("ready")
        time.sleep(600)


if __name__ == "__main__":
    args = sys.argv[1:]
    hold = args[args.index("--hold") + 1] if "--hold" in args else None
    try:
        main(args[0], args[1], int(args[2]), hold)
    except ConfigError as err:  # as `cm3leon train` reports it: the message, exit status 1
        sys.exit(str(err))
