"""Memory-bank search: a table of FAISS factories against exact inner-product search, same run.

For one bank of ``--n`` unit vectors of ``--dim`` (default 1M x 512, the width of ViT-B-32
CLIP embeddings) the script measures, in one process with ``faiss.omp_set_num_threads``
(``--threads``, default 2):

* **exact search** (``Flat``, i.e. ``IndexFlatIP``: what ``configs/retrieval/bank.yaml``
  uses), which gives the ground truth and the reference speed;
* **each row of the table** (:data:`ROWS`; ``{nlist}`` is ``--nlist``, default 4·sqrt(n)
  rounded down to a power of two, 4096 at 1M): built with the project's own wrappers
  (:func:`cm3leon.retrieval.index.make_index` / ``train_index`` / ``configure_search``),
  its search parameters **tuned on a validation query set** (the cheapest setting of the
  row's grid whose validation recall reaches the row's target), then measured on a
  **disjoint test query set**: recall@k against the exact top k, queries per second,
  speed-up over exact search, and bytes per vector (the serialised index, ids, centroids,
  codebooks and refinement vectors included, divided by n; ``code_bytes`` is FAISS's
  ``sa_code_size`` where the index has one).

Speed is measured under whatever else runs on the machine, so every row is timed
**paired with exact search**: ``--repeats`` rounds of (exact search of one batch, the row's
search of the test set), best of each, and the row's speed-up is the ratio of the two
best-of times; the absolute QPS are for the record only.  Queries are searched in batches
of ``--batch``.  Rows of the same ``nlist`` without a pre-transform share one coarse k-means
(trained once on the first such row's sample; its time is reported on that row).

**Data** (:func:`clip_like`): not uniformly random (which has no neighbourhood structure)
but a model of CLIP embeddings: a common direction (CLIP vectors of one modality sit in a
narrow cone), topics drawn from an anisotropic Gaussian with a power-law spectrum
(eigenvalue ``i`` proportional to ``i**-alpha``, in a random rotation), Zipf topic
popularity, and anisotropic within-topic spread; normalised.  Base, validation and test
vectors are independent draws from the same distribution (queries are not bank members).
The measured statistics (mean pairwise cosine, participation ratio of the spectrum,
mean cosine of the 1st and 10th neighbour) are in the JSON, so a reader can compare them
with their own embeddings.

**Goals** (issue 16 item 5), judged on the test set:

* ``fast``: some row reaches recall@10 >= 0.95 at >= 20x the QPS of exact search;
* ``compressed``: some row stores <= 64 bytes per vector (everything counted) with
  recall@10 >= 0.90;
* ``compressed_ram``: the production reading of "re-ranking allowed": some row holds <= 64
  bytes per vector **in RAM** with recall@10 >= 0.90, re-ranking its shortlist exactly
  against the float vectors kept **on disk** (``index.rerank.source: disk`` of a bank:
  ``vectors.npy`` memory-mapped, :mod:`cm3leon.retrieval.rerank`).  Those rows (``Row.disk``,
  the 4th ``--rows`` field) report RAM bytes per vector (the serialised index, no direct
  map), disk bytes per vector (``vectors.npy``; the index file is on disk too), the
  distinct vectors read per query (one query at a time) and ``bytes_per_vector`` with both
  counted.  Their timings read ``vectors.npy`` from the page cache (the file was just
  written); a cold disk adds up to ``shortlist`` random reads per query.

**What a code of that size could reach at best** (``compressed_bound``, :func:`code_bound`):
recall@10 of an ideal code of 512, 1024 and 2048 bits per vector on this data model
(rate-distortion bound of the within-topic Gaussian, the topic given for ``log2(topics)``
bits), from the test queries' exact scores plus the score error such a code leaves.  On the
default model at 1M (neighbours packed tight: 1st and 10th neighbour cosines 0.908 and
0.893) it is 0.76 at 512 bits = 64 bytes (0.87 at 1024, 0.96 at 2048), so no index of 64
bytes per vector can meet the ``compressed`` goal on this data.

Usage::

    uv run python benchmarks/retrieval.py --n 100000             # quick (minutes)
    nohup uv run python benchmarks/retrieval.py --n 1000000 --output runs/bench/retrieval_1m.json \\
        > /tmp/retr_bench.log 2>&1 &                                # the real run (long on 2 cores)
    uv run python benchmarks/retrieval.py --n 100000 --rows 'IVF{nlist},Flat|nprobe=8;nprobe=32|0.95'

Progress goes to stderr; the JSON report (and a Markdown table under ``"table"``) to stdout
and ``--output``.
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
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.core.io import atomic_write_json
from cm3leon.retrieval.index import add_vectors, configure_search, make_index, train_index
from cm3leon.retrieval.rerank import open_vectors, row_blocks, search_reranked, write_vectors


@dataclass(frozen=True)
class Row:
    """One index of the table.

    Attributes:
        factory: FAISS index-factory string; ``{nlist}`` is replaced by the run's nlist.
        grid: FAISS ``ParameterSpace`` settings, cheapest first (tuning takes the first
            whose validation recall reaches ``target``; the last if none does).
        target: validation recall@k the tuning aims for.
        disk: ``""``, or the dtype (``float16``/``float32``) of the vectors kept on disk for
            exact re-ranking (a bank's ``index.rerank.source: disk``); the grid's settings
            then carry ``shortlist=N`` beside the FAISS parameters.
    """

    factory: str
    grid: tuple[str, ...]
    target: float
    disk: str = ""


_NPROBES = (4, 8, 16, 32, 64, 128, 256)

ROWS: tuple[Row, ...] = (
    # today's ANN default (configs/retrieval/bank.yaml comment): exact vectors in inverted lists
    Row("IVF{nlist}_HNSW32,Flat", tuple(f"nprobe={p}" for p in _NPROBES), 0.95),
    # the speed row: 4-bit PQ fast-scan codes of the vectors scanned, then exact re-ranking of
    # k_factor_rf * k candidates from the stored float vectors (fast, not compressed)
    Row("IVF{nlist}_HNSW32,PQ64x4fs,RFlat",
        tuple(f"nprobe={p},k_factor_rf={kf}" for p in _NPROBES for kf in (8, 16, 32, 64, 128)), 0.95),
    # compressed rows. IVF: PQ of the IVF residual, exact ADC; its 8-byte ids, the bank's 8-byte
    # direct map (reconstruct() serves the near-duplicate rule) and the centroids come on top of
    # the code (see bytes_per_vector), so 64-byte codes do not fit in 64 bytes per vector
    Row("IVF{nlist}_HNSW32,PQ64", tuple(f"nprobe={p}" for p in _NPROBES), 0.90),
    # within 64 bytes/vector at 1M: 40-byte codes (32 sub-quantizers of 10 bits) + 16 + centroids
    Row("IVF{nlist}_HNSW32,PQ32x10", tuple(f"nprobe={p}" for p in _NPROBES), 0.90),
    # flat codes (no ids, no direct map: a row's code is its position; reconstruct() needs
    # nothing more), scanned exhaustively (nothing to tune): 480 dimensions (PCA + random
    # rotation, or a learnt OPQ rotation) in 60 bytes of 8-bit PQ
    Row("PCAR480,PQ60", ("",), 0.90),
    Row("OPQ60_480,PQ60", ("",), 0.90),
    # the compressed index in RAM (<= 64 B/vector: no direct map, the vectors are on disk),
    # a shortlist re-ranked exactly against float16 vectors memory-mapped from disk
    Row("IVF{nlist}_HNSW32,PQ64x4fs",
        tuple(f"nprobe={p},shortlist={s}" for p in (64, 128, 256) for s in (100, 200, 400, 800, 1600)), 0.90,
        "float16"),
    Row("OPQ60_480,PQ60", tuple(f"shortlist={s}" for s in (50, 100, 200, 400, 800, 1600)), 0.90, "float16"),
)


class DiskReranked:
    """An index whose shortlist is re-ranked against memory-mapped vectors, as a bank with
    ``index.rerank.source: disk`` searches (:func:`cm3leon.retrieval.rerank.search_reranked`);
    counts the vectors read."""

    def __init__(self, index: Any, vectors: np.ndarray) -> None:
        self.index, self.vectors, self.shortlist = index, vectors, 100
        self.queries = self.reads = 0

    def configure(self, params: str) -> None:
        rest = [p for p in params.split(",") if p.strip() and not p.strip().startswith("shortlist=")]
        self.shortlist = next((int(p.split("=")[1]) for p in params.split(",") if p.strip().startswith("shortlist=")),
                              self.shortlist)
        configure_search(self.index, ",".join(rest), direct_map=False)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows, read = search_reranked(self.index, self.vectors, queries, k, self.shortlist)
        self.queries += len(queries)
        self.reads += read
        return scores, rows


def _configure(index: Any, params: str) -> None:
    if isinstance(index, DiskReranked):
        index.configure(params)
    else:
        configure_search(index, params)


def _parse_rows(text: str) -> tuple[Row, ...]:
    """``FACTORY|P1;P2;...|TARGET[|DTYPE]`` entries separated by ``@@`` (``DTYPE``: re-rank
    against vectors on disk in that dtype; the settings then carry ``shortlist=N``)."""
    rows = []
    for entry in text.split("@@"):
        parts = entry.strip().split("|")
        if len(parts) not in (3, 4):
            raise SystemExit(f"--rows entry {entry!r}: expected FACTORY|PARAMS;PARAMS|TARGET[|float16]")
        rows.append(Row(parts[0], tuple(p for p in parts[1].split(";")), float(parts[2]), *parts[3:]))
    return tuple(rows)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="bank size (vectors)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--nlist", type=int, default=0, help="IVF lists (0: 4*sqrt(n) rounded down to a power of 2)")
    p.add_argument("--train-per-list", type=int, default=40,
                   help="training sample = this x nlist vectors (FAISS warns below 39)")
    p.add_argument("--rows", default="", help="replace the table: FACTORY|P1;P2|TARGET entries joined by @@")
    p.add_argument("--queries", type=int, default=1000, help="test queries (reported)")
    p.add_argument("--val-queries", type=int, default=500, help="validation queries (tuning), disjoint")
    p.add_argument("--batch", type=int, default=250, help="queries per search call")
    p.add_argument("--ref-batches", type=int, default=1, help="batches of exact search per paired timing")
    p.add_argument("--repeats", type=int, default=3, help="paired timing rounds (best of each)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="faiss.omp_set_num_threads while adding and searching")
    p.add_argument("--train-threads", type=int, default=1,
                   help="OpenMP threads while training (FAISS's PQ training runs thousands of tiny parallel "
                        "regions, which stall on a loaded machine)")
    p.add_argument("--topics", type=int, default=10_000, help="mixture components of the data model")
    p.add_argument("--alpha", type=float, default=0.9, help="power-law exponent of the spectrum")
    p.add_argument("--cone", type=float, default=1.15, help="weight of the common direction")
    p.add_argument("--spread", type=float, default=0.6, help="within-topic spread relative to the topics")
    p.add_argument("--zipf", type=float, default=0.5, help="topic popularity exponent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="also write the JSON here (atomically)")
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(f"[retrieval-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ClipLike:
    """The data model: ``x = normalise(cone * mean + topic + spread * basis @ z)``.

    Attributes:
        basis: ``(D, D)`` random rotation scaled by sqrt of the power-law spectrum
            (spectrum sums to 1), shared by topics and within-topic spread.
        mean: ``(D,)`` the common direction (unit).
        topics: ``(T, D)`` topic centres.
        popularity: ``(T,)`` topic probabilities (Zipf).
        cone / spread: weights of the common direction and of the within-topic spread.
    """

    basis: np.ndarray
    mean: np.ndarray
    topics: np.ndarray
    popularity: np.ndarray
    cone: float
    spread: float


def clip_like(dim: int, topics: int, alpha: float, cone: float, spread: float, zipf: float,
              rng: np.random.Generator) -> ClipLike:
    """Draw the parameters of the data model (see :class:`ClipLike`)."""
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    spectrum = np.arange(1, dim + 1, dtype=np.float64) ** -alpha
    basis = (rotation * np.sqrt(spectrum / spectrum.sum())).astype(np.float32)  # columns scaled
    mean = rng.standard_normal(dim)
    centres = rng.standard_normal((topics, dim), dtype=np.float32) @ basis.T
    popularity = 1.0 / np.arange(1, topics + 1) ** zipf
    return ClipLike(basis, (mean / np.linalg.norm(mean)).astype(np.float32), centres,
                    popularity / popularity.sum(), cone, spread)


def draw(model: ClipLike, n: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors ``(n, D)`` float32 from ``model``."""
    dim = model.basis.shape[0]
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = model.topics[rng.choice(len(model.topics), size=m, p=model.popularity)]
        x += model.spread * (rng.standard_normal((m, dim), dtype=np.float32) @ model.basis.T)
        x += model.cone * model.mean
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def data_stats(base: np.ndarray, truth_scores: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Statistics to compare with real embeddings: mean pairwise cosine, participation
    ratio ``(sum l)^2 / sum l^2`` of the covariance spectrum, mean query-neighbour cosines."""
    sample = base[rng.choice(len(base), size=min(len(base), 4000), replace=False)]
    gram = sample[:2000] @ sample[:2000].T
    eig = np.clip(np.linalg.eigvalsh(np.cov(sample.T.astype(np.float64))), 0, None)
    return {
        "mean_pairwise_cosine": round(float(gram[np.triu_indices(len(gram), 1)].mean()), 4),
        "participation_ratio": round(float(eig.sum() ** 2 / (eig**2).sum()), 1),
        "mean_cosine_1st_neighbour": round(float(truth_scores[:, 0].mean()), 4),
        "mean_cosine_10th_neighbour": round(float(truth_scores[:, 9].mean()), 4),
        "median_lid_mle_k100": round(lid_mle(truth_scores), 1),
    }


def lid_mle(scores: np.ndarray) -> float:
    """Median local intrinsic dimensionality (maximum-likelihood estimate over each query's
    neighbours, Euclidean distances of unit vectors from their cosines ``(Q, K)``).

    Published medians for real feature sets (SIFT, GloVe, GIST, deep features) lie around
    15-25 at K = 100 (Aumueller and Ceccarello, "The role of local dimensionality
    measurement in benchmarking nearest neighbor search", 2021)."""
    dist = np.sqrt(np.clip(2.0 - 2.0 * scores.astype(np.float64), 1e-12, None))
    lid = -1.0 / np.mean(np.log(dist[:, :-1] / dist[:, -1:]), axis=1)
    return float(np.median(lid))


def code_bound(model: ClipLike, queries: np.ndarray, scores: np.ndarray, k: int, bits: int,
               rng: np.random.Generator) -> dict[str, float]:
    """recall@k that the best possible code of ``bits`` bits per vector could reach on this
    data model (rate-distortion bound; an estimate of what no index of that size can beat).

    Model: the code knows each vector's topic for free but for ``log2(topics)`` bits; the
    within-topic part is Gaussian with covariance ``(spread * s)^2 * basis basis^T``
    (``s = 1 / sqrt(cone^2 + 1 + spread^2)``, the typical normalisation). The optimal code
    is the Gaussian test channel ``x = x_hat + e`` (``e`` independent of ``x_hat``), with the
    distortion of each eigen-direction set by reverse water-filling weighted by the queries'
    energy in it (what the score error ``<q, e>`` depends on). Each candidate's score
    (``scores (Q, K)``, exact, best first) gets its own error of std ``sqrt(sum_i (q.u_i)^2 D_i)``;
    recall@k counts the exact top k among the k best noisy scores.
    """
    lam = np.sum(model.basis.astype(np.float64) ** 2, axis=0)  # the spectrum (column norms^2)
    u = model.basis / np.sqrt(lam)  # eigen-directions (columns)
    var = (model.spread**2 / (model.cone**2 + 1 + model.spread**2)) * lam
    energy = (queries @ u) ** 2  # (Q, D)
    weight = energy.mean(axis=0)
    budget = bits - math.log2(len(model.topics))
    lo, hi = 1e-16, 1.0
    for _ in range(200):  # bisection on the water level
        level = math.sqrt(lo * hi)
        dist = np.minimum(var, level / weight)
        lo, hi = (level, hi) if 0.5 * np.sum(np.log2(var / dist)) > budget else (lo, level)
    std = np.sqrt(energy @ dist)  # (Q,)
    noisy = scores + std[:, None] * rng.standard_normal(scores.shape)
    top = np.argsort(-noisy, axis=1)[:, :k]
    return {"bits": bits, f"recall@{k}": round(float(np.mean(top < k)), 4),
            "score_error_std": round(float(std.mean()), 5), "mse": round(float(dist.sum()), 5)}


# ----------------------------------------------------------------------------- measuring


def search(index: Any, queries: np.ndarray, k: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Batched search: scores and rows ``(Q, k)``."""
    out = [index.search(queries[s : s + batch], k) for s in range(0, len(queries), batch)]
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top k found (both ``(Q, k)`` row ids)."""
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found.tolist(), truth.tolist(), strict=True)]))


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_qps(exact: Any, index: Any, ref: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    """Best-of-``repeats`` QPS of exact search (on ``ref``) and of ``index`` (on ``queries``),
    timed alternately so that both see the same load."""
    best_exact = best_ann = math.inf
    for _ in range(args.repeats):
        best_exact = min(best_exact, _seconds(lambda: search(exact, ref, args.k, args.batch)))
        best_ann = min(best_ann, _seconds(lambda: search(index, queries, args.k, args.batch)))
    exact_qps, ann_qps = len(ref) / best_exact, len(queries) / best_ann
    return {"qps": round(ann_qps, 1), "exact_qps": round(exact_qps, 1), "speedup": round(ann_qps / exact_qps, 2)}


def index_bytes(index: Any) -> int:
    """Bytes of the serialised index (what a bank stores and loads)."""
    import faiss

    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as tmp:
        path = os.path.join(tmp, "index.faiss")
        faiss.write_index(index, path)
        return os.path.getsize(path)


def tune(index: Any, row: Row, val: np.ndarray, val_truth: np.ndarray, args: argparse.Namespace) -> tuple[str, list]:
    """The cheapest setting of ``row.grid`` whose validation recall reaches ``row.target``
    (the best one if none does), and the validation curve."""
    curve, best = [], (-1.0, row.grid[-1])
    for params in row.grid:
        _configure(index, params)
        recall = recall_at(search(index, val, args.k, args.batch)[1], val_truth)
        curve.append({"search_params": params, "val_recall": round(recall, 4)})
        best = max(best, (recall, params))
        if recall >= row.target:
            return params, curve
    return best[1], curve


# ----------------------------------------------------------------------------- rows


def _share_coarse(index: Any, factory: str, nlist: int, coarse: dict[int, np.ndarray]) -> bool:
    """Fill the IVF quantizer of ``index`` with the shared centroids of ``nlist`` lists
    (rows without a pre-transform only). Returns whether it did."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or nlist not in coarse or factory.split(",")[0].startswith(("OPQ", "PCA", "RR", "L2norm")):
        return False
    ivf.quantizer.add(coarse[nlist])
    return True


def _remember_coarse(index: Any, factory: str, nlist: int, coarse: dict[int, np.ndarray]) -> None:
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and nlist not in coarse and not factory.split(",")[0].startswith(("OPQ", "PCA", "RR", "L2norm")):
        coarse[nlist] = ivf.quantizer.reconstruct_n(0, ivf.nlist)


def _code_bytes(index: Any) -> int | None:
    try:
        return int(index.sa_code_size())
    except RuntimeError:  # not every index has a standalone code (IndexRefine, HNSW)
        return None


def run_row(row: Row, ctx: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Build, tune and measure one row."""
    import faiss

    n, nlist = len(ctx["base"]), ctx["nlist"]
    factory = row.factory.replace("{nlist}", str(nlist))
    index = make_index(args.dim, factory)
    shared = _share_coarse(index, factory, nlist, ctx["coarse"])
    sample = ctx["sample"]
    _log(f"{factory}: training on {len(sample)} vectors" + (" (coarse k-means shared)" if shared else ""))
    faiss.omp_set_num_threads(args.train_threads)
    train_s = _seconds(lambda: train_index(index, sample))
    faiss.omp_set_num_threads(args.threads)
    _remember_coarse(index, factory, nlist, ctx["coarse"])
    _log(f"{factory}: adding {n} vectors")
    add_s = _seconds(lambda: add_vectors(index, ctx["base"]))
    searcher = DiskReranked(index, disk_vectors(ctx, row.disk)) if row.disk else index
    params, curve = tune(searcher, row, ctx["val"], ctx["val_truth"], args)
    _configure(searcher, params)  # as `retrieval build` leaves the index it saves
    recall = recall_at(search(searcher, ctx["test"], args.k, args.batch)[1], ctx["test_truth"])
    read = _reads_per_query(searcher, ctx, args)
    timing = paired_qps(ctx["exact"], searcher, ctx["ref"], ctx["test"], args)
    nbytes = index_bytes(index)
    disk = (ctx["disk_files"][row.disk].stat().st_size / n) if row.disk else 0.0
    result = {
        "factory": factory, "search_params": params, "target_val_recall": row.target,
        f"recall@{args.k}": round(recall, 4), **timing,
        "bytes_per_vector": round(nbytes / n + disk, 1), "ram_bytes_per_vector": round(nbytes / n, 1),
        "disk_bytes_per_vector": round(disk, 1), "rerank_dtype": row.disk or None, "vectors_read_per_query": read,
        "code_bytes": _code_bytes(index), "index_bytes": nbytes,
        "train_s": round(train_s, 1), "add_s": round(add_s, 1), "coarse_shared": shared,
        "train_size": len(sample), "tuning": curve,
    }
    _log(f"{factory} [{params}]{' + disk ' + row.disk if row.disk else ''}: recall@{args.k} {recall:.4f}, "
         f"{timing['qps']} q/s, {timing['speedup']}x exact, RAM {nbytes / n:.1f} B/vector, disk {disk:.1f} B/vector")
    return result


def disk_vectors(ctx: dict[str, Any], dtype: str) -> np.ndarray:
    """The base vectors in ``dtype`` as a ``.npy`` in a temporary directory (removed at exit),
    written and memory-mapped by the bank's own functions; once per dtype."""
    import atexit
    import shutil

    if dtype not in ctx["disk_files"]:
        tmp = Path(tempfile.mkdtemp(prefix="retrieval-bench-vectors-"))
        atexit.register(shutil.rmtree, tmp, True)
        base = ctx["base"]
        path = write_vectors(tmp / "vectors.npy", row_blocks(base), rows=len(base), dim=base.shape[1], dtype=dtype)
        ctx["disk_files"][dtype] = path
    base = ctx["base"]
    return open_vectors(ctx["disk_files"][dtype], rows=len(base), dim=base.shape[1], dtype=dtype)


def _reads_per_query(searcher: Any, ctx: dict[str, Any], args: argparse.Namespace) -> float | None:
    """Mean distinct disk vectors read per test query (batches of one query: what one query
    costs alone); ``None`` for rows without disk vectors."""
    if not isinstance(searcher, DiskReranked):
        return None
    searcher.queries = searcher.reads = 0
    for q in ctx["test"][:100]:
        searcher.search(q[None], args.k)
    return round(searcher.reads / searcher.queries, 1)


def _label(row: dict[str, Any], *, code: bool = False) -> str:
    """A row's name: its factory (in backticks with ``code``), plus ``+ disk DTYPE`` when it
    re-ranks against vectors on disk."""
    name = f"`{row['factory']}`" if code else row["factory"]
    return f"{name} + disk {row['rerank_dtype']}" if row.get("rerank_dtype") else name


def goals(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """The two goals of issue 16 item 5, judged on the test set."""
    key = f"recall@{k}"
    fast = [r for r in rows if r[key] >= 0.95 and r["speedup"] >= 20]
    small = [r for r in rows if r["bytes_per_vector"] <= 64 and r[key] >= 0.90]
    in_ram = [r for r in rows if r.get("ram_bytes_per_vector", r["bytes_per_vector"]) <= 64 and r[key] >= 0.90]
    return {
        "fast": {"rule": f"{key} >= 0.95 at >= 20x the QPS of exact search",
                 "passed": bool(fast), "by": [r["factory"] for r in fast]},
        "compressed": {"rule": f"<= 64 bytes per vector (all counted) with {key} >= 0.90",
                       "passed": bool(small), "by": [r["factory"] for r in small]},
        "compressed_ram": {"rule": f"<= 64 bytes per vector in RAM with {key} >= 0.90, re-ranking against "
                                   "vectors on disk (disk bytes and vectors read per query reported, not free)",
                           "passed": bool(in_ram),
                           "by": [_label(r) for r in in_ram]},
    }


def markdown(report: dict[str, Any]) -> str:
    """The table as Markdown (what the READMEs show)."""
    k = report["k"]
    lines = [f"| factory | search params (tuned) | recall@{k} | QPS | x exact | bytes/vector (all) "
             "| RAM B/vector | disk B/vector | vectors read/query | code bytes | train s | add s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
             f"| Flat (exact) | | 1.0 | {report['exact']['qps']} | 1.0 | {report['exact']['bytes_per_vector']} "
             f"| {report['exact']['bytes_per_vector']} | 0 | - | {4 * report['dim']} | | {report['exact']['add_s']} |"]
    for r in report["rows"]:
        params = f"`{r['search_params']}`" if r["search_params"] else "-"  # '-': nothing to tune (flat codes)
        name = _label(r, code=True)
        read = r.get("vectors_read_per_query")
        lines.append(f"| {name} | {params} | {r[f'recall@{k}']} | {r['qps']} | {r['speedup']} "
                     f"| {r['bytes_per_vector']} | {r.get('ram_bytes_per_vector', r['bytes_per_vector'])} "
                     f"| {r.get('disk_bytes_per_vector', 0)} | {read if read is not None else '-'} "
                     f"| {r['code_bytes'] if r['code_bytes'] is not None else '-'} | {r['train_s']} | {r['add_s']} |")
    return "\n".join(lines)


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Data, exact index, ground truth of validation and test queries, training sample."""
    rng = np.random.default_rng(args.seed)
    model = clip_like(args.dim, args.topics, args.alpha, args.cone, args.spread, args.zipf, rng)
    _log(f"drawing {args.n} base + {args.val_queries} validation + {args.queries} test vectors of {args.dim}-d")
    base = draw(model, args.n, rng)
    val, test = draw(model, args.val_queries, rng), draw(model, args.queries, rng)
    nlist = args.nlist or 2 ** int(math.log2(4 * math.sqrt(args.n)))
    train_size = min(args.n, args.train_per_list * nlist)
    sample = base[np.sort(rng.choice(args.n, train_size, replace=False))]
    _log("exact search (IndexFlatIP): ground truth")
    exact = make_index(args.dim, "Flat")
    add_s = _seconds(lambda: add_vectors(exact, base))
    val_truth = search(exact, val, args.k, args.batch)[1]
    start = time.perf_counter()
    test_scores, test_truth = search(exact, test, max(args.k, 100), args.batch)  # 100: for the LID
    exact_qps = len(test) / (time.perf_counter() - start)
    test_truth = test_truth[:, : args.k]
    return {
        "base": base, "val": val, "test": test, "val_truth": val_truth, "test_truth": test_truth,
        "ref": test[: args.batch * args.ref_batches], "exact": exact, "nlist": nlist, "sample": sample,
        "coarse": {}, "disk_files": {}, "stats": data_stats(base, test_scores, rng),
        "bound": [code_bound(model, test, test_scores, args.k, bits, rng) for bits in (512, 1024, 2048)],
        "exact_row": {"qps": round(exact_qps, 1), "add_s": round(add_s, 1),
                      "bytes_per_vector": round(index_bytes(exact) / args.n, 1)},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import faiss

    args = _args(argv)
    faiss.omp_set_num_threads(args.threads)
    rows_spec = _parse_rows(args.rows) if args.rows else ROWS
    ctx = prepare(args)
    rows: list[dict[str, Any]] = []
    for row in rows_spec:
        rows.append(run_row(row, ctx, args))
        report = _report(args, ctx, rows, complete=len(rows) == len(rows_spec))
        if args.output:  # after every row: a long run leaves its finished rows ("complete": false)
            atomic_write_json(args.output, report)
    print(json.dumps(report, indent=2))
    print(report["table"], file=sys.stderr)
    return report


def _report(args: argparse.Namespace, ctx: dict[str, Any], rows: list[dict[str, Any]], *, complete: bool) -> dict[str, Any]:
    import faiss

    report = {
        "complete": complete,
        "benchmark": "retrieval", "n": args.n, "dim": args.dim, "k": args.k, "nlist": ctx["nlist"],
        "queries": {"test": args.queries, "validation": args.val_queries, "batch": args.batch,
                    "exact_reference": len(ctx["ref"]), "repeats": args.repeats},
        "data": {"kind": "clip-like", "topics": args.topics, "alpha": args.alpha, "cone": args.cone,
                 "spread": args.spread, "zipf": args.zipf, "seed": args.seed, **ctx["stats"]},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "faiss": faiss.__version__,
                    "omp_threads": faiss.omp_get_max_threads(), "loadavg_end": os.getloadavg()},
        "exact": ctx["exact_row"],
        "compressed_bound": ctx["bound"],
        "rows": rows,
        "goals": goals(rows, args.k),
    }
    report["table"] = markdown(report)
    return report


if __name__ == "__main__":
    main()
