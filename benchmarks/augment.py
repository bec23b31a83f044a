"""Retrieval augmentation throughput with 1 and 2 ranks, same run, and where the time goes.

On a generated corpus of ``--n`` caption-image documents (pixels only, as ``cm3leon data
prepare`` writes them; several MDS shard files) the script builds a bank with the shipped
small CLIP architecture (``cm3leon-clip-tiny``, random weights) and a random ``small_32``
VQ-GAN, then runs the real command twice, as a user would::

    python -m cm3leon.retrieval.augment CFG                    # 1 rank
    composer -n 2 -m cm3leon.retrieval.augment CFG             # 2 ranks (gloo)

``--repeats`` times each, interleaved (background load hits both alike; the best run of
each is kept, every run's rate is listed), and reports, from each run's own report (``manifest.json`` meta): examples, the
augmentation time (the slowest rank's part-writing seconds: start-up and merge excluded),
augmented examples/s, per-rank examples/s, the wall time of the command, and whether the
two outputs hold exactly the same examples.  ``speedup`` = 2-rank / 1-rank examples/s.

It also splits one process's time per batch into stages (``--profile`` queries, in
process, same settings): ``retrieve`` (CLIP query embedding + FAISS search + the §2.1
rules + fetching the retrieved documents), ``vq_encode`` (VQ codes of the query's and the
retrieved documents' images, through the per-rank code cache), ``serialise_write``
(Figure-9 token layout, checks, MDS write).  ``embed_and_vq_share`` is the part a GPU
(``augment.device``) takes over; ``projection`` turns the measured per-rank throughput
into the wall time for ``--corpus`` examples (default 340M, the paper's) on N ranks, CPU
only and with those stages on a GPU (see packages/retrieval/README.md for the assumptions).

The machine is shared (other processes load the cores), so the absolute numbers move;
compare the ratios of one run.

Usage::

    uv run python benchmarks/augment.py                   # JSON on stdout
    uv run python benchmarks/augment.py --n 600 --output runs/bench/augment.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/augment.py` puts benchmarks/ first on sys.path, where a sibling script
# named like a package (benchmarks/tokenizers.py) would shadow the installed one.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import yaml

from cm3leon.core.documents import Document
from cm3leon.core.io import atomic_write_json
from cm3leon.core.shards import DocumentShardWriter, iter_token_samples, read_manifest
from cm3leon.retrieval.config import AugmentConfig, BankConfig, DocumentsConfig

REPO = Path(__file__).resolve().parents[1]
COMPOSER = str(Path(sys.executable).with_name("composer"))
WORDS = ["red", "green", "blue", "yellow", "square", "circle", "triangle", "left", "right", "big", "small",
         "on", "the", "a", "photo", "of", "near", "two", "dark", "bright"]


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=400, help="documents (queries = bank) in the corpus")
    p.add_argument("--part-size", type=int, default=25, help="augment.part_size")
    p.add_argument("--batch-size", type=int, default=32, help="augment.batch_size")
    p.add_argument("--repeats", type=int, default=2, help="runs of each rank count, interleaved; best kept")
    p.add_argument("--profile", type=int, default=128, help="queries of the in-process stage split")
    p.add_argument("--corpus", type=float, default=340e6, help="examples of the projected corpus")
    p.add_argument("--ranks", type=int, nargs="*", default=[8, 64, 256], help="N of the projection")
    p.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temp dir)")
    p.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    return p.parse_args(argv)


def corpus(n: int, seed: int = 0) -> list[Document]:
    """``n`` caption + 32x32 image documents: a coloured rectangle on noise, caption of its words."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        img = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
        y, x = rng.integers(0, 20, size=2)
        img[y : y + 12, x : x + 12] = rng.integers(0, 256, 3, dtype=np.uint8)
        caption = " ".join(rng.choice(WORDS, size=int(rng.integers(5, 12))))
        docs.append(Document.of(caption, img, id=f"q{i:06d}"))
    return docs


def setup(root: Path, n: int) -> dict[str, Path]:
    """Documents (several shard files), CLIP encoder, VQ-GAN tokenizer, bank."""
    import torch

    from cm3leon.core.plugin_manager import get_registries
    from cm3leon.retrieval.build import build_bank
    from cm3leon.retrieval.encoder import build_clip_model, model_config, save_encoder

    paths = {"docs": root / "docs", "encoder": root / "clip", "vq": root / "vq", "bank": root / "bank"}
    with DocumentShardWriter(paths["docs"], size_limit=1 << 17) as w:
        for d in corpus(n):
            w.write(d)
    torch.manual_seed(0)
    arch = model_config("cm3leon-clip-tiny")
    save_encoder(build_clip_model(arch), arch, paths["encoder"])
    get_registries().tokenizers.build("vqgan", "small_32", seed=0).save(paths["vq"])
    build_bank(BankConfig(output=str(paths["bank"]), data=DocumentsConfig(shards=[str(paths["docs"])]),
                          encoder=str(paths["encoder"]), device="cpu"), progress=False)
    return paths


def augment_config(paths: dict[str, Path], out: Path, args: argparse.Namespace) -> AugmentConfig:
    return AugmentConfig(output=str(out), data=DocumentsConfig(shards=[str(paths["docs"])]), bank=str(paths["bank"]),
                         text_tokenizer="bytes", image_tokenizer=f"vqgan:{paths['vq']}", batch_size=args.batch_size,
                         part_size=args.part_size, device="cpu")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    return env


def run_ranks(cfg: AugmentConfig, ranks: int, root: Path) -> dict[str, Any]:
    """Run the command with ``ranks`` ranks; the numbers of its report."""
    path = root / f"augment{ranks}.yaml"
    path.write_text(yaml.safe_dump({"augment": asdict(cfg)}))
    module = ["-m", "cm3leon.retrieval.augment", str(path)]
    port = str(29500 + os.getpid() % 400)
    cmd = [sys.executable, *module] if ranks == 1 else [COMPOSER, "-n", str(ranks), "--master_port", port, *module]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    report = read_manifest(cfg.output)["meta"]["report"]
    seconds = max(r["seconds"] for r in report["ranks"])
    return {
        "ranks": ranks, "examples": report["examples"], "parts": report["parts"],
        "augment_s": round(seconds, 2), "examples_per_s": round(report["examples"] / seconds, 2),
        "per_rank_examples_per_s": [round(r["queries_done"] / r["seconds"], 2) for r in report["ranks"]],
        "wall_s": round(wall, 2),
    }  # fmt: skip


def stage_split(cfg: AugmentConfig, n: int) -> dict[str, Any]:
    """Seconds per stage for the first ``n`` queries, one process, batches of ``batch_size``."""
    from cm3leon.core.shards import TokenShardWriter
    from cm3leon.retrieval.augment import (
        CodeCache,
        build_retriever,
        document_tokenizer,
        retrieved_per_query,
    )
    from cm3leon.retrieval.data import iter_documents

    doc_tok, retriever = document_tokenizer(cfg), build_retriever(cfg)
    cache, k = CodeCache(doc_tok.image_tokenizer), retrieved_per_query(cfg)
    queries = [d for _, d in zip(range(n), iter_documents(cfg.data), strict=False)]
    times = dict.fromkeys(("retrieve", "vq_encode", "serialise_write"), 0.0)
    out = Path(f"{cfg.output}.profile")
    with TokenShardWriter(out, doc_tok.vocab, with_parts=True, overwrite=out.exists()) as writer:
        for i in range(0, len(queries), cfg.batch_size):
            batch = queries[i : i + cfg.batch_size]
            t0 = time.perf_counter()
            retrieved = retriever.retrieve(batch, k, training=cfg.training)
            t1 = time.perf_counter()
            flat = cache.attach([*batch, *(d for docs in retrieved for d in docs)])
            t2 = time.perf_counter()
            rest = iter(flat[len(batch) :])
            for query, docs in zip(flat[: len(batch)], retrieved, strict=True):
                ex = doc_tok.encode_example_with_targets(query, [next(rest) for _ in docs])
                writer.write(ex.ids, id=query.id, parts=ex.parts)
            t3 = time.perf_counter()
            times["retrieve"] += t1 - t0
            times["vq_encode"] += t2 - t1
            times["serialise_write"] += t3 - t2
    total = sum(times.values())
    return {"queries": len(queries), "seconds": {k: round(v, 3) for k, v in times.items()},
            "share": {k: round(v / total, 3) for k, v in times.items()}, "examples_per_s": round(len(queries) / total, 2)}


def embed_share(cfg: AugmentConfig, split: dict[str, Any], n: int) -> float:
    """Share of one process's time in CLIP query embedding + VQ encoding (what a GPU takes).

    ``retrieve`` also holds FAISS search, the rules and document fetching (CPU); its CLIP
    part is measured by running the searcher's query encoding (``Searcher.encode_queries``,
    with the training dropout, as ``retrieve`` does) on the same queries again.
    """
    from cm3leon.retrieval.augment import build_retriever
    from cm3leon.retrieval.data import iter_documents
    from cm3leon.retrieval.strategy import query_seed

    retriever = build_retriever(cfg)
    s = retriever.strategy
    queries = [d for _, d in zip(range(n), iter_documents(cfg.data), strict=False)]
    t0 = time.perf_counter()
    for i in range(0, len(queries), cfg.batch_size):
        batch = queries[i : i + cfg.batch_size]
        seeds = [query_seed(s.seed, q.id, "dropout") for q in batch]
        retriever.searcher.encode_queries(batch, dropout=s.query_dropout, seeds=seeds)
    clip = time.perf_counter() - t0
    total = sum(split["seconds"].values())
    return min(1.0, (clip + split["seconds"]["vq_encode"]) / total)


def projection(per_rank: float, gpu_share: float, corpus_size: float, ranks: list[int]) -> list[dict[str, Any]]:
    """Hours for ``corpus_size`` examples on N ranks: CPU only, and with the GPU stages free."""
    cpu_rest = per_rank / max(1e-9, 1.0 - gpu_share)  # examples/s when embedding + VQ cost nothing
    return [{"ranks": n, "cpu_only_hours": round(corpus_size / (n * per_rank) / 3600, 1),
             "gpu_stages_free_hours": round(corpus_size / (n * cpu_rest) / 3600, 1)} for n in ranks]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-augment-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        paths = setup(root, args.n)
        setup_s = time.perf_counter() - t0
        runs: dict[int, dict[str, Any]] = {}
        for _ in range(args.repeats):  # interleaved, so background load hits both alike; best of each
            for r in (1, 2):
                out = root / f"ra{r}"
                if out.exists():
                    shutil.rmtree(out)
                run = run_ranks(augment_config(paths, out, args), r, root)
                run["all_examples_per_s"] = [*runs.get(r, {}).get("all_examples_per_s", []), run["examples_per_s"]]
                if r not in runs or run["examples_per_s"] > runs[r]["examples_per_s"]:
                    runs[r] = run
                else:
                    runs[r]["all_examples_per_s"] = run["all_examples_per_s"]
        same = [(s.id, s.tokens.tolist()) for s in iter_token_samples(root / "ra1")] == \
               [(s.id, s.tokens.tolist()) for s in iter_token_samples(root / "ra2")]  # fmt: skip
        cfg = augment_config(paths, root / "profile", args)
        split = stage_split(cfg, args.profile)
        share = embed_share(cfg, split, args.profile)
    per_rank = runs[1]["examples_per_s"]
    result = {
        "benchmark": "augment", "n": args.n, "part_size": args.part_size, "batch_size": args.batch_size,
        "encoder": "cm3leon-clip-tiny (random)", "image_tokenizer": "vqgan small_32 (random)",
        "repeats": args.repeats, "setup_s": round(setup_s, 1), "one_rank": runs[1], "two_ranks": runs[2],
        "speedup": round(runs[2]["examples_per_s"] / runs[1]["examples_per_s"], 2), "same_examples": same,
        "stages_one_process": split, "embed_and_vq_share": round(share, 3),
        "projection": {"corpus": args.corpus, "per_rank_examples_per_s": per_rank,
                       "rows": projection(per_rank, share, args.corpus, args.ranks)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_1m": round(os.getloadavg()[0], 2)},
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.output:
        atomic_write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
