"""Composer trainer overhead and fp32 vs bf16: tokens/s and CPU-MFU of ``cm3leon train`` vs a plain loop.

Both loops train the same model (same registered builder, same seed, so the same initial
weights) on the same data (the same token shards, through the same
``CM3StreamingDataset`` -> CM3 transform -> packing dataloader), with the same loss
(:meth:`CM3LeonComposerModel.loss`), AdamW, constant LR and gradient clipping at 1.0:

* **composer**: :func:`cm3leon.core.train.train` as configured for real runs -- per-
  modality train metrics, the NaN guard (gradient check + all-reduce), ``SpeedMonitor``,
  the JSONL logger, the checkpoint saver (no save inside the timed window);
* **plain**: ``for batch in loader: loss.backward(); clip; opt.step()``.

Their per-step losses are compared too (they should be identical: same computation), so
the ratio measures Composer's bookkeeping, nothing else.  Runs are interleaved (plain,
composer, plain, ...) so background load hits both alike; medians are reported.  A
step's time is measured BATCH_END to BATCH_END (data loading included in both), after
``--warmup`` steps.  CPU-MFU = model FLOPs/s (``flops_per_batch``: 6N + attention) over
the GEMM peak measured in the same process (best of 10 1024x1024 ``matmul`` and
``F.linear`` calls, on the same clock, measured before and after every repeat; the best
is used), in fp32 and in bf16.

Precision: each repeat also runs the Composer trainer with ``precision: amp_bf16`` (CPU
bf16 autocast in the Composer model, :mod:`cm3leon.core.precision`), so fp32 and bf16 are
measured side by side: ``bf16_speedup`` (CPU time), each run's MFU against the peak of its
own precision (``mfu``) and against both (``mfu_vs_fp32_peak``, ``mfu_vs_bf16_peak``).
Where the CPU has no AMX / AVX512-BF16 (``cpu_bf16_flags`` empty) bf16 is emulated and
usually slower; ``auto_resolves_to`` says what ``precision: auto`` would pick here.

The machine this runs on is shared, so wall-clock rates swing with other people's jobs.
Each step is therefore also timed in **CPU time of this process** (``time.process_time``),
with one intra-op thread by default (no OpenMP spin-waiting inflating it): the work a
loop does per token does not depend on who else runs.  ``overhead_ratio`` uses CPU time;
``overhead_ratio_wall`` is reported alongside.

Usage::

    uv run python benchmarks/train.py                    # JSON on stdout
    uv run python benchmarks/train.py --steps 40 --repeats 3 --output runs/bench/train.json
    uv run python benchmarks/train.py --precisions fp32              # the overhead ratio only

``overhead_ratio`` = plain tokens per CPU-second / composer tokens per CPU-second (goal <= 1.10).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/train.py` puts benchmarks/ first on sys.path, where a sibling script
# named like a package (benchmarks/tokenizers.py) would shadow the installed one.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import reproducibility

from cm3leon.core.config import load_config
from cm3leon.core.io import atomic_write_json
from cm3leon.core.shards import TokenShardWriter
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.builders import build_composer_model, build_optimizer
from cm3leon.core.train.data import build_dataspec
from cm3leon.core.train.logs import read_metrics
from cm3leon.core.vocab import Vocabulary


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cm3leon_small")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=16, help="examples per step")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--precisions", default="fp32,amp_bf16",
                   help="comma-separated; the plain loop runs in fp32, Composer in each")
    p.add_argument("--output", default=None)
    return p.parse_args(argv)


def _write_data(out: Path, vocab: Vocabulary, n: int, seed: int = 0) -> Path:
    """Retrieval-augmented examples: 2 retrieved + 1 query caption-image pairs (~250 tokens)."""
    rng = np.random.default_rng(seed)

    def pair() -> np.ndarray:
        caption = vocab.text_to_global(rng.integers(0, vocab.text_size, 16))
        image = vocab.image_to_global(rng.integers(0, vocab.image_size, 64))
        return np.concatenate([caption, [vocab.break_id], image, [vocab.break_id]])

    with TokenShardWriter(out, vocab) as writer:
        for i in range(n):
            writer.write(np.concatenate([[vocab.eos_id], pair(), pair(), pair()]), id=f"ex{i}")
    return out


def _matmul_peaks(size: int = 1024, repeats: int = 10, dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """Best GEMM FLOP/s of this process in ``dtype``, in wall time and in CPU time.

    Both of torch's CPU GEMM entry points are timed, ``matmul`` and ``F.linear`` (what
    the model's projections call), and the faster counts: without native bf16 they differ
    several-fold (``F.linear`` goes through oneDNN's bf16 path, ``matmul`` does not).
    """
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best_wall = best_cpu = float("inf")
    for op in (torch.matmul, torch.nn.functional.linear):
        op(a, b)
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            op(a, b)
            best_wall, best_cpu = min(best_wall, time.perf_counter() - w), min(best_cpu, time.process_time() - c)
    flops = 2.0 * size**3
    return flops / best_wall, flops / best_cpu


def _config(args: argparse.Namespace, data: Path, work: Path, tag: str, precision: str = "fp32") -> TrainConfig:
    return load_config(TrainConfig, data={
        "run_name": "bench", "run_dir": str(work / tag), "seed": 0,
        "model": {"name": args.preset, "options": {"max_seq_len": args.seq_len}},
        "data": {"streams": {"bench": {"remote": str(data), "local": str(work / f"cache-{tag}")}},
                 "seq_len": args.seq_len, "global_batch_size": args.batch, "shuffle": False},
        "optim": {"lr": 1e-3}, "scheduler": {"name": "constant", "warmup": "0ba"},
        "max_duration": f"{args.steps}ba", "device": "cpu", "precision": precision,
        "checkpoint": {"save_interval": "100000ba", "autoresume": False},
        "callbacks": [{"name": "speed_monitor", "options": {"window_size": 5}}],
        "logging": {"progress_bar": False, "console_interval": "100000ba", "plot": False, "log_level": "WARNING"},
    })


class _StepClock(Callback):
    """Wall and CPU time at every step end, with the step's real tokens and FLOPs."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.tokens: list[int] = []
        self.flops: list[float] = []

    def record(self, batch: dict, flops: float) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.tokens.append(int((batch["input_ids"] != Vocabulary.pad_id).sum()))
        self.flops.append(flops)

    def batch_end(self, state: State, logger: Logger) -> None:
        self.record(state.batch, float(state.model.flops_per_batch(state.batch)))

    def summary(self, warmup: int) -> dict[str, float]:
        wall = self.wall[-1] - self.wall[warmup - 1]
        cpu = self.cpu[-1] - self.cpu[warmup - 1]
        tokens, flops = sum(self.tokens[warmup:]), sum(self.flops[warmup:])
        return {"tokens_per_s": tokens / wall, "tokens_per_cpu_s": tokens / cpu,
                "flops_per_s": flops / wall, "flops_per_cpu_s": flops / cpu, "wall_s": wall, "cpu_s": cpu}


def _add_mfu(result: dict[str, float], peaks: dict[str, tuple[float, float]], precision: str) -> dict[str, float]:
    """MFU against the peak of the run's own precision (``mfu``) and against both peaks."""
    own = peaks["bf16" if precision == "amp_bf16" else "fp32"]
    out = {**result, "mfu": result["flops_per_s"] / own[0], "mfu_cpu_time": result["flops_per_cpu_s"] / own[1]}
    for name, peak in peaks.items():
        out[f"mfu_vs_{name}_peak"] = result["flops_per_s"] / peak[0]
        out[f"mfu_cpu_time_vs_{name}_peak"] = result["flops_per_cpu_s"] / peak[1]
    return out


def _composer(args: argparse.Namespace, data: Path, work: Path, tag: str,
              precision: str = "fp32") -> tuple[dict, list[float]]:
    clock = _StepClock()
    cfg = _config(args, data, work, tag, precision)
    train(cfg, extra_callbacks=[clock])
    losses = [r["loss/train/total"] for r in read_metrics(Path(cfg.run_dir) / "metrics.jsonl") if "loss/train/total" in r]
    return clock.summary(args.warmup), losses


def _plain(args: argparse.Namespace, data: Path, work: Path, tag: str,
           precision: str = "fp32") -> tuple[dict, list[float]]:
    cfg = _config(args, data, work, tag, precision)
    spec, vocab = build_dataspec(cfg.data, streams=cfg.data.streams, global_batch_size=cfg.data.global_batch_size,
                                 num_rows=None, cache_root=work, seed=cfg.seed, shuffle=False, where="data")
    reproducibility.seed_all(cfg.seed)
    model = build_composer_model(cfg, vocab)
    optimizer = build_optimizer(cfg, model)
    model.train()
    clock, losses = _StepClock(), []
    for step, batch in enumerate(spec.dataloader):
        if step == args.steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(model(batch), batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        clock.record(batch, model.flops_per_batch(batch))
    return clock.summary(args.warmup), losses


def _measure_peaks() -> dict[str, tuple[float, float]]:
    return {"fp32": _matmul_peaks(), "bf16": _matmul_peaks(repeats=3, dtype=torch.bfloat16)}


def _variants(precisions: list[str]) -> list[tuple[str, Any, str]]:
    """``(name, loop, precision)``: the plain loop in fp32, Composer in every precision."""
    unknown = sorted(set(precisions) - {"fp32", "amp_bf16"})
    if unknown or not precisions:
        raise SystemExit(f"--precisions: give fp32 and/or amp_bf16, got {precisions}")
    out: list[tuple[str, Any, str]] = [("plain", _plain, "fp32")] if "fp32" in precisions else []
    return out + [("composer" if p == "fp32" else f"composer_{p}", _composer, p) for p in precisions]


def _run_all(args: argparse.Namespace, variants: list, data: Path, work: Path) -> tuple[dict, dict, list]:
    """Interleaved repeats of every variant; the matmul peaks before and after each repeat."""
    peaks = [_measure_peaks()]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
    losses: dict[str, list[float]] = {}
    for r in range(args.repeats):
        for name, fn, precision in variants:
            print(f"repeat {r + 1}/{args.repeats}: {name} ...", file=sys.stderr, flush=True)
            result, losses[name] = fn(args, data, work, f"{name}{r}", precision)
            runs[name].append(result)
            print(f"  {json.dumps(result)}", file=sys.stderr, flush=True)
        peaks.append(_measure_peaks())
    return runs, losses, peaks


def _max_diff(a: list[float], b: list[float]) -> float | None:
    diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
    return diff if math.isfinite(diff) else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from cm3leon.core.precision import cpu_bf16_flags, resolve_precision

    args = _args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # before the peak is measured: same threads for all
    variants = _variants([p.strip() for p in args.precisions.split(",") if p.strip()])
    vocab = Vocabulary(text_size=2048, image_size=1024)
    with tempfile.TemporaryDirectory(prefix="cm3leon-bench-train-") as tmp:
        work = Path(tmp)
        data = _write_data(work / "data", vocab, n=args.batch * (args.steps + 2))
        runs, losses, measured = _run_all(args, variants, data, work)
    # the best matmul rate seen in the run is the least disturbed estimate of the peak
    peaks = {k: (max(p[k][0] for p in measured), max(p[k][1] for p in measured)) for k in ("fp32", "bf16")}
    runs = {name: [_add_mfu(x, peaks, p) for x in runs[name]] for name, _, p in variants}
    med = {name: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for name, rs in runs.items()}
    out: dict[str, Any] = {
        "benchmark": "train", "preset": args.preset, "seq_len": args.seq_len, "examples_per_step": args.batch,
        "steps": args.steps, "timed_steps": args.steps - args.warmup, "repeats": args.repeats,
        "threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__,
        "cpu_bf16_flags": list(cpu_bf16_flags()), "auto_resolves_to": resolve_precision("auto", "cpu").precision,
        "cpu_peak_flops_wall": peaks["fp32"][0], "cpu_peak_flops_cpu_time": peaks["fp32"][1],
        "cpu_peak_bf16_flops_wall": peaks["bf16"][0], "cpu_peak_bf16_flops_cpu_time": peaks["bf16"][1],
        "bf16_matmul_peak_ratio": peaks["bf16"][1] / peaks["fp32"][1],
        **med, "runs": runs,
    }
    if "plain" in med:
        out |= {
            "overhead_ratio": med["plain"]["tokens_per_cpu_s"] / med["composer"]["tokens_per_cpu_s"],
            "overhead_ratio_wall": med["plain"]["tokens_per_s"] / med["composer"]["tokens_per_s"],
            "goal_overhead_ratio": 1.10,
            "max_abs_loss_difference": _max_diff(losses["plain"], losses["composer"]),
            "losses_identical": losses["plain"] == losses["composer"],
        }
    if "composer" in med and "composer_amp_bf16" in med:
        bf16 = med["composer_amp_bf16"]
        out |= {
            "bf16_speedup": bf16["tokens_per_cpu_s"] / med["composer"]["tokens_per_cpu_s"],
            "bf16_speedup_wall": bf16["tokens_per_s"] / med["composer"]["tokens_per_s"],
            "bf16_max_abs_loss_difference": _max_diff(losses["composer"], losses["composer_amp_bf16"]),
        }
    text = json.dumps(out, indent=2)
    print(text)
    if args.output:
        atomic_write_json(args.output, out)
    return out


if __name__ == "__main__":
    main()
