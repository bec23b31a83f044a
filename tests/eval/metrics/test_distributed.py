"""Real two-process gloo job: every metric reduces/gathers to the single-process value."""

from __future__ import annotations

import os
import socket

import pytest
import torch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CANDS = ["a red cube", "two blue balls", "a green cone on a table", "a cube", "red ball"]
REFS = [
    ["a red cube", "red box"],
    ["blue balls", "two balls"],
    ["a green cone"],
    ["a small cube", "cube"],
    ["a red ball"],
]
ANSWERS = [["yes"] * 10, ["2"] * 4 + ["3"] * 6, ["red"] * 10, ["no"] * 9 + ["yes"], ["blue"] * 10]
PREDS = ["yes", "two", "blue", "no", "Blue."]


def _metrics():
    from cm3leon.eval.metrics.cider import CiderD
    from cm3leon.eval.metrics.fid import FrechetDistance
    from cm3leon.eval.metrics.vqa import VQAAccuracy

    return FrechetDistance(num_features=3), CiderD(tokenizer="whitespace"), VQAAccuracy()


def _feed(metrics, idx) -> None:
    fid, cider, vqa = metrics
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(40, 3, generator=g), torch.randn(40, 3, generator=g) * 2 + 1
    fid.update(real[idx * 4 : idx * 4 + 4] if isinstance(idx, int) else real, real=True)
    fid.update(fake[idx * 4 : idx * 4 + 4] if isinstance(idx, int) else fake, real=False)
    rows = [idx] if isinstance(idx, int) else list(range(len(CANDS)))
    cider.update([CANDS[i] for i in rows], [REFS[i] for i in rows], ids=rows)
    vqa.update([PREDS[i] for i in rows], [ANSWERS[i] for i in rows], ids=rows)


def _values(metrics) -> list[float]:
    fid, cider, vqa = metrics
    return [float(fid.compute()), float(cider.compute()), float(vqa.compute()["accuracy"])]


def _worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    metrics = _metrics()
    # Uneven split: rank 0 gets samples 0, 2, 4 (FID slices 0-3, 8-11, 16-19), rank 1 gets 1, 3.
    # FID uses only 20 of the 40 rows here; the single-process reference below does the same.
    for i in range(rank, len(CANDS), world):
        _feed(metrics, i)
    queue.put((rank, _values(metrics)))
    dist.destroy_process_group()


def test_two_process_gather_equals_single_process() -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    single = _metrics()
    for i in range(len(CANDS)):
        _feed(single, i)
    expected = _values(single)
    for rank in (0, 1):
        assert results[rank] == pytest.approx(expected, rel=1e-9)
