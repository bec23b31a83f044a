"""``python _concurrent_streams.py DATA PROCESSES ROUNDS``: processes that build a StreamingDataset
at the same moment (a barrier per round), each on its own ``local``; prints the errors as JSON."""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import tempfile
from typing import Any


def _work(args: tuple[Any, str, int, int]) -> list[str]:
    from cm3leon.core.shard_datasets import CM3StreamingDataset

    barrier, data, worker, rounds = args
    errors = []
    for r in range(rounds):
        barrier.wait()
        try:
            ds = CM3StreamingDataset(remote=data, local=tempfile.mkdtemp(prefix=f"w{worker}r{r}-"), batch_size=2,
                                     check_hashes=False)  # fmt: skip
            del ds
        except Exception as err:  # noqa: BLE001 - every failure is reported
            errors.append(f"{type(err).__name__}: {err}"[:300])
    return errors


if __name__ == "__main__":
    data, processes, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(processes)
        with ctx.Pool(processes) as pool:
            results = pool.map(_work, [(barrier, data, i, rounds) for i in range(processes)])
    print(json.dumps([e for errors in results for e in errors]))
