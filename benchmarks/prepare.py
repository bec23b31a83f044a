"""Wall and CPU time of ``cm3leon data prepare`` with 1 and N workers, against one process.

One corpus (webdataset tars of random-pixel PNGs written with ``webdataset.TarWriter``,
100 samples per tar) is prepared into document shards, in one Python process (imports
paid once), interleaved ``--repeats`` times so background load hits every mode alike:

* ``single`` -- the reference: ``prepare_dataset`` over the whole source (no ``--workers``);
* ``workers_K`` -- :func:`cm3leon.core.prepare_parallel.prepare_parallel` with K forked
  workers (parts, records, merge included); ``speedup`` = single wall / this wall;
* ``control`` -- the same busy loop in 1 and in 2 forked processes: how much CPU this
  command's session can get.  On an idle machine 2 loops take the wall of 1; on a shared
  one where the kernel groups processes per session (``sched_autogroup``) they take twice
  as long, and no number of workers can be faster than one there.

Usage::

    uv run python benchmarks/prepare.py                           # JSON on stdout
    uv run python benchmarks/prepare.py --samples 2000 --workers 2 4 --repeats 3
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/prepare.py` puts benchmarks/ first on sys.path, where a sibling script
# named like a package (benchmarks/tokenizers.py) would shadow the installed one.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import io
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
from PIL import Image


def write_corpus(folder: Path, samples: int, size: int, per_shard: int) -> None:
    """img2dataset-layout tars: ``<key>.png``, ``<key>.txt``."""
    import webdataset as wds

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for start in range(0, samples, per_shard):
        with wds.TarWriter(str(folder / f"{start // per_shard:05d}.tar")) as sink:
            for i in range(start, min(start + per_shard, samples)):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
                sink.write({"__key__": f"{i:06d}", "png": buf.getvalue(), "txt": f"caption {i}"})


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def _spin() -> None:
    x = 0
    for i in range(10_000_000):
        x += i


def _loops(k: int) -> None:
    procs = [multiprocessing.get_context("fork").Process(target=_spin) for _ in range(k)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128, help="image side (pixels)")
    parser.add_argument("--per-shard", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from cm3leon.core.corpora import webdataset_source
    from cm3leon.core.data_cli import prepare_dataset
    from cm3leon.core.prepare_parallel import PrepareJob, prepare_parallel

    root = Path(tempfile.mkdtemp(prefix="prepare-bench-"))
    try:
        wds = root / "wds"
        write_corpus(wds, args.samples, args.size, args.per_shard)
        meta = {"source": "webdataset", "path": str(wds)}
        modes: dict[str, Callable[[Path], object]] = {
            "single": lambda out: prepare_dataset(webdataset_source(str(wds)), out, meta=meta, progress=False)}
        for k in args.workers:
            modes[f"workers_{k}"] = lambda out, k=k: prepare_parallel(
                PrepareJob("webdataset", str(wds), {}, meta=meta), out, workers=k, progress=False)
        _timed(lambda: modes["single"](root / "warmup"))  # imports, page cache
        times: dict[str, list[tuple[float, float]]] = {m: [] for m in [*modes, "control_1", "control_2"]}
        loads = []
        for r in range(args.repeats):
            for name, fn in (modes.items() if r % 2 == 0 else reversed(modes.items())):
                out = root / f"out-{name}-{r}"
                loads.append(os.getloadavg()[0])
                times[name].append(_timed(lambda fn=fn, out=out: fn(out)))
                shutil.rmtree(out)
            for k in (1, 2):
                times[f"control_{k}"].append(_timed(lambda k=k: _loops(k)))
        med = {m: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for m, t in times.items()}
        rows = [{"mode": m, "wall_s": round(med[m][0], 2), "cpu_s": round(med[m][1], 2),
                 **({"speedup": round(med["single"][0] / med[m][0], 2)} if m.startswith("workers") else {})}
                for m in modes]  # fmt: skip
        result = {
            "samples": args.samples, "image_size": args.size, "tars": -(-args.samples // args.per_shard),
            "repeats": args.repeats, "rows": rows, "reference": "single",
            "control": {"one_loop_s": round(med["control_1"][0], 2), "two_loops_s": round(med["control_2"][0], 2),
                        "ratio": round(med["control_2"][0] / med["control_1"][0], 2)},
            "cpus": os.cpu_count(), "load1_median": round(statistics.median(loads), 1),
            "python": platform.python_version(),
        }  # fmt: skip
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
