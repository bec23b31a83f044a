"""Memory-bank search: an ANN index against exact inner-product search, same run.

For each bank size (default 100k and 1M synthetic 512-d unit vectors, the width of
ViT-B-32 CLIP embeddings) the script builds

* the exact index (``Flat``, inner product: what ``configs/retrieval/bank.yaml`` uses), and
* the configured ANN index (default ``IVF4096,Flat`` probed with ``nprobe=32``), trained on
  a seeded sample exactly as ``cm3leon retrieval build`` trains it
  (:func:`cm3leon.retrieval.index.make_index` / ``train_index`` / ``configure_search``),

and reports build time, queries per second (batched search of ``--queries`` queries) and
recall@10 of the ANN index measured against the exact top 10 of the same run.

The vectors are a mixture of Gaussians (``--clusters`` centres, normalised), a rough
stand-in for real embeddings, which cluster by topic; uniformly random unit vectors in
512-d have no neighbourhood structure and would understate what IVF achieves on real
banks (``--clusters 0`` measures that worst case).  Queries are fresh draws from the same
distribution.

Usage::

    uv run python benchmarks/retrieval.py                           # 100k and 1M, JSON on stdout
    uv run python benchmarks/retrieval.py --sizes 100000 --factory HNSW32 --search-params efSearch=128
    uv run python benchmarks/retrieval.py --output runs/bench/retrieval.json

The 1M case takes minutes on 2 cores (k-means of 4096 centroids, then assigning 1M
vectors).  Progress goes to stderr, the JSON result to stdout (and ``--output``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/retrieval.py` puts benchmarks/ first on sys.path, where a sibling script
# named like a package (benchmarks/tokenizers.py) would shadow the installed one.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np

from cm3leon.core.io import atomic_write_json
from cm3leon.retrieval.index import add_vectors, configure_search, make_index, train_index


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated bank sizes")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--factory", default="IVF4096,Flat", help="FAISS index-factory string of the ANN index")
    p.add_argument("--search-params", default="nprobe=32", help="FAISS ParameterSpace string")
    p.add_argument("--train-size", type=int, default=131072, help="training sample (as bank.index.train_size)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--clusters", type=int, default=2000,
                   help="mixture components of the synthetic data (0: uniformly random directions)")
    p.add_argument("--noise", type=float, default=2.0,
                   help="within-cluster std relative to the centres (2.0: a point has cosine ~0.45 with its centre)")
    p.add_argument("--threads", type=int, default=None, help="FAISS OpenMP threads (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="also write the JSON here (atomically)")
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(f"[retrieval-bench] {msg}", file=sys.stderr, flush=True)


def synthetic(n: int, dim: int, centres: np.ndarray, noise: float, rng: np.random.Generator,
              chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors ``(n, dim)`` float32 from the Gaussian mixture around ``centres``."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = noise * rng.standard_normal((m, dim), dtype=np.float32)
        if len(centres):  # no centres: uniformly random directions (the hardest case)
            x += centres[rng.integers(len(centres), size=m)]
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _timed_search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    _, rows = index.search(queries, k)
    return rows, time.perf_counter() - start


def run_size(n: int, args: argparse.Namespace, centres: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    _log(f"n={n}: generating {n} x {args.dim} vectors")
    base = synthetic(n, args.dim, centres, args.noise, rng)
    queries = synthetic(args.queries, args.dim, centres, args.noise, rng)

    _log(f"n={n}: exact Flat (inner product)")
    t0 = time.perf_counter()
    exact = make_index(args.dim, "Flat")
    add_vectors(exact, base)
    exact_build = time.perf_counter() - t0
    truth, exact_time = _timed_search(exact, queries, args.k)
    del exact

    _log(f"n={n}: {args.factory} ({args.search_params}), training on {min(n, args.train_size)} vectors")
    t0 = time.perf_counter()
    ann = make_index(args.dim, args.factory)
    sample = base if n <= args.train_size else base[np.sort(rng.choice(n, args.train_size, replace=False))]
    train_index(ann, sample)
    t1 = time.perf_counter()
    add_vectors(ann, base)
    t2 = time.perf_counter()
    configure_search(ann, args.search_params)
    found, ann_time = _timed_search(ann, queries, args.k)
    recall = float(np.mean([len(set(f) & set(t)) / args.k for f, t in zip(found.tolist(), truth.tolist(), strict=True)]))
    del ann, base
    exact_qps, ann_qps = args.queries / exact_time, args.queries / ann_time
    _log(f"n={n}: exact {exact_qps:.0f} q/s, ann {ann_qps:.0f} q/s, recall@{args.k} {recall:.3f}")
    return {
        "n": n,
        "exact": {"factory": "Flat", "build_s": round(exact_build, 3), "qps": round(exact_qps, 1)},
        "ann": {
            "factory": args.factory, "search_params": args.search_params,
            "train_s": round(t1 - t0, 3), "add_s": round(t2 - t1, 3), "build_s": round(t2 - t0, 3),
            "qps": round(ann_qps, 1), f"recall@{args.k}": round(recall, 4),
        },
        "qps_ratio_ann_over_exact": round(ann_qps / exact_qps, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import faiss

    args = _args(argv)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    results = [run_size(n, args, centres, rng) for n in sizes]
    report = {
        "benchmark": "retrieval",
        "dim": args.dim,
        "queries": args.queries,
        "k": args.k,
        "data": {"kind": "gaussian-mixture", "clusters": args.clusters, "noise": args.noise, "seed": args.seed},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "faiss": faiss.__version__, "omp_threads": faiss.omp_get_max_threads()},
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.output:
        atomic_write_json(args.output, report)
    return report


if __name__ == "__main__":
    main()
