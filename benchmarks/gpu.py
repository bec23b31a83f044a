"""GPU check: training MFU, 7B-shape image decoding with CFG, and one FSDP step (issue 17 item 8).

Three parts, each a separate process under ``benchmarks/gpu.sh`` (one JSON file each,
merged at the end, so a part that fails or times out leaves the others' numbers):

* ``mfu`` -- training throughput of a preset (``cm3leon_350m``, ``cm3leon_760m``) at
  sequence length 4,096: packed rows (several documents per row, ``doc_ids``) through
  FlexAttention with a document block mask, bf16 autocast over fp32 master weights,
  AdamW, ``torch.compile`` on CUDA (falls back to eager, recorded, if compiling fails).
  A few warm-up steps (the compile), then timed steps.  MFU = achieved FLOP/s / the
  GPU's dense bf16 peak, with the FLOPs of :func:`cm3leon.core.train.composer_model.flops_per_token`
  (what Composer's ``SpeedMonitor`` reports in training: ``6 N`` + the full ``T x T``
  attention products) and, for comparison with llm-foundry's published MFU table, their
  convention (``6 N`` + half the attention products, causal).
* ``decode`` -- the 7B shape (Table 3, random weights, bf16) generating one 1,024-token
  image under classifier-free guidance (conditional + unconditional streams in one
  batch, KV cache, top-p 0.9) with the project's engine
  (:func:`cm3leon.decoding.engine.decode`); seconds per image and the fraction of the
  GPU's memory bandwidth the decode steps use.
* ``fsdp`` -- one-GPU FSDP2: the preset built on the meta device, ``fully_shard`` per
  block and at the root (world size 1, NCCL; gloo on the CPU), materialised shard by
  shard with the §2.3 init (:mod:`cm3leon.core.model.meta_init`), bf16 parameters with
  fp32 gradient reduction, a few optimizer steps.

Peaks come from ``torch.cuda.get_device_name()``: H100 SXM and H200 989 TFLOP/s dense
bf16 (3.35 / 4.8 TB/s), A100 312 TFLOP/s (2.0 TB/s); any other device needs
``--peak-tflops`` (MFU is ``null`` otherwise, with the reason).

Usage::

    bash benchmarks/gpu.sh                                    # GPU: every part, <= 8 min
    uv run python benchmarks/gpu.py --part mfu --preset cm3leon_760m
    uv run python benchmarks/gpu.py --smoke                   # CPU, tiny shapes, all parts

``--smoke`` (= ``--device cpu --tiny --part all``) runs the same code with tiny shapes
(``cm3leon_tiny`` dimensions, sequence 128, 16 image tokens); on the CPU FlexAttention
has no backward, so the ``mfu`` part falls back to dense-mask SDPA there and says so.
Progress goes to stderr, the JSON to stdout (and atomically to ``--output``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/gpu.py` puts benchmarks/ first on sys.path, where a sibling script
# named like a package (benchmarks/tokenizers.py) would shadow the installed one.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import math
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cm3leon.core.io import atomic_write_json
from cm3leon.core.model import PRESETS, preset_config
from cm3leon.core.model.transformer import CM3LeonTransformer
from cm3leon.core.vocab import Vocabulary

#: Dense bf16 peak FLOP/s and HBM bytes/s by device name (first matching rule wins).
DEVICE_PEAKS: tuple[tuple[str, tuple[str, ...], float, float], ...] = (
    ("H200", (), 989e12, 4.8e12),
    ("H100", ("PCIE", "NVL"), 989e12, 3.35e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", (), 312e12, 2.0e12),
)
#: Goals (issue 17): 760m MFU on H100; one 7B image on H200 (the paper: 11.8 s on A100).
MFU_GOAL = {"cm3leon_760m": 0.45}
DECODE_GOAL_SECONDS = 4.0
PAPER_A100_SECONDS = 11.8
#: Tiny stand-in shapes of --tiny (the CPU smoke test).
TINY = {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_ff": 256}
PARTS = ("mfu", "decode", "fsdp")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", default="all", choices=[*PARTS, "all"])
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="default: cm3leon_760m (mfu, fsdp), cm3leon_7b (decode)")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU smoke test)")
    p.add_argument("--smoke", action="store_true", help="= --device cpu --tiny")
    p.add_argument("--seq-len", type=int, default=None, help="default 4096 (tiny: 128)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per step (default: per preset)")
    p.add_argument("--mean-doc-len", type=int, default=None, help="mean packed document length")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 3; tiny: 1)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 5; tiny: 2)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile the model (auto: on CUDA only)")
    p.add_argument("--image-tokens", type=int, default=None, help="default 1024 (tiny: 16)")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--cfg-scale", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=None, help="timed decodes (default 3; tiny: 1)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (overrides detection)")
    p.add_argument("--peak-bandwidth-gbs", type=float, default=None, help="memory bandwidth peak, GB/s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="also write the JSON here (atomically)")
    p.add_argument("--combine", default=None, metavar="DIR",
                   help="merge the part files of benchmarks/gpu.sh in DIR and print them")
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.tiny = "cpu", True
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.seq_len = args.seq_len or (128 if args.tiny else 4096)
    args.image_tokens = args.image_tokens or (16 if args.tiny else 1024)
    args.mean_doc_len = args.mean_doc_len or max(args.seq_len // 4, 8)
    for key, full, tiny in (("warmup", 3, 1), ("steps", 5, 2), ("repeats", 3, 1)):
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)
    if args.tiny and args.device == "cpu":
        torch.set_num_threads(1)  # tiny kernels: threads only contend on a shared machine
    return args


def _log(msg: str) -> None:
    print(f"[gpu.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- device
def device_info(args: argparse.Namespace) -> dict[str, Any]:
    """The device, its bf16 peak and memory bandwidth (detected or given), and versions."""
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak, bandwidth, source = None, None, "unknown device: pass --peak-tflops"
    if device.type == "cuda":
        upper = name.upper()
        for key, excluded, flops, bw in DEVICE_PEAKS:
            if key in upper and not any(x in upper for x in excluded):
                peak, bandwidth, source = flops, bw, f"detected from the device name ({key})"
                break
    if args.peak_tflops is not None:
        peak, source = args.peak_tflops * 1e12, "--peak-tflops"
    if args.peak_bandwidth_gbs is not None:
        bandwidth = args.peak_bandwidth_gbs * 1e9
    return {
        "device": str(device), "device_name": name, "peak_tflops": peak and peak / 1e12,
        "peak_source": source, "peak_bandwidth_gb_s": bandwidth and bandwidth / 1e9,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "host": platform.node(), "tiny": args.tiny,
    }  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _max_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def _config(args: argparse.Namespace, preset: str, vocab: Vocabulary, **extra: Any) -> Any:
    shapes = dict(TINY) if args.tiny else {}
    return preset_config(preset, vocab_size=vocab.size, max_seq_len=args.seq_len, **shapes, **extra)


def _vocab(args: argparse.Namespace) -> Vocabulary:
    # The paper's vocabulary (56,320 text ids + 8,192 image codes); tiny: a small one.
    return Vocabulary(text_size=256, image_size=256) if args.tiny else Vocabulary(text_size=56_320, image_size=8_192)


def packed_batch(vocab: Vocabulary, batch: int, seq_len: int, mean_doc_len: int,
                 device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids and ``doc_ids`` of packed rows: documents of random length (exponential
    around ``mean_doc_len``, at least 16 tokens), each row cut at ``seq_len``."""
    rng = np.random.default_rng(seed)
    doc_ids = np.empty((batch, seq_len), dtype=np.int64)
    for b in range(batch):
        pos, doc = 0, 0
        while pos < seq_len:
            length = max(16, int(rng.exponential(mean_doc_len)))
            doc_ids[b, pos:pos + length] = doc
            pos, doc = pos + length, doc + 1
    ids = torch.as_tensor(rng.integers(0, vocab.size, (batch, seq_len)))
    return ids.to(device), torch.as_tensor(doc_ids).to(device)


def _random_weights_(model: torch.nn.Module, seed: int) -> None:
    # §2.3 zero-inits the output layers, which would make every block the identity.
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=gen)


def _loss(model: Callable[..., torch.Tensor], ids: torch.Tensor, doc_ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids, doc_ids=doc_ids)  # (B, T, V)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())


# ----------------------------------------------------------------------------- mfu
def _train_steps(model: Callable[..., torch.Tensor], opt: torch.optim.Optimizer, ids: torch.Tensor,
                 doc_ids: torch.Tensor, n: int, device: torch.device, *,
                 autocast: bool = True) -> tuple[list[float], list[float]]:
    """``n`` optimizer steps (under bf16 autocast unless the model casts itself, as FSDP2's
    mixed precision does): (seconds of each, loss of each)."""
    times, losses = [], []
    for _ in range(n):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = _loss(model, ids, doc_ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    return times, losses


def _flops(config: Any, seq_len: int) -> tuple[float, float]:
    """FLOPs per training token: the project's (Composer SpeedMonitor) and llm-foundry's."""
    from cm3leon.core.train.composer_model import flops_per_token

    ours = flops_per_token(config, seq_len)
    causal = ours - 6.0 * config.n_layers * config.d_model * seq_len  # half the T x T products
    return ours, causal


def run_mfu(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """Training MFU of one preset: packed rows, FlexAttention, bf16 autocast, AdamW."""
    from cm3leon.core.model.attention import resolve_attention

    preset = args.preset or "cm3leon_760m"
    device, vocab = torch.device(args.device), _vocab(args)
    kernel, reason = resolve_attention("auto", device, requires_grad=True)
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = CM3LeonTransformer(_config(args, preset, vocab, attention=kernel))
    _random_weights_(model, args.seed)
    model.train()
    batch = args.batch_size or {"cm3leon_350m": 8, "cm3leon_760m": 4}.get(preset, 2)
    ids, doc_ids = packed_batch(vocab, batch, args.seq_len, args.mean_doc_len, device, args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    compiled = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    runner, compile_error = (torch.compile(model) if compiled else model), None
    _log(f"mfu {preset}: {model.num_parameters() / 1e6:.0f}M params, B{batch} T{args.seq_len}, "
         f"{kernel} attention, compile={compiled}")  # fmt: skip
    try:
        warm, _ = _train_steps(runner, opt, ids, doc_ids, args.warmup, device)
    except Exception as err:  # a compile failure must not cost the measurement
        if not compiled:
            raise
        compile_error, runner, compiled = f"{type(err).__name__}: {err}"[:500], model, False
        _log(f"torch.compile failed, eager instead: {compile_error}")
        warm, _ = _train_steps(runner, opt, ids, doc_ids, args.warmup, device)
    times, losses = _train_steps(runner, opt, ids, doc_ids, args.steps, device)
    loss = losses[-1] if losses else float("nan")
    step = statistics.median(times)
    tokens_per_s = batch * args.seq_len / step
    ours, causal = _flops(model.config, args.seq_len)
    peak = info["peak_tflops"] and info["peak_tflops"] * 1e12
    mfu = tokens_per_s * ours / peak if peak else None
    return {
        "part": "mfu", "preset": preset, "parameters": model.num_parameters(),
        "shapes": "tiny stand-in" if args.tiny else "preset", "batch_size": batch,
        "seq_len": args.seq_len, "documents_per_row": round(float(doc_ids.max(1).values.float().mean()) + 1, 2),
        "precision": "bf16 autocast, fp32 master weights, AdamW", "attention_kernel": kernel,
        "attention_reason": reason, "compiled": compiled, "compile_error": compile_error,
        "warmup_seconds": [round(t, 3) for t in warm], "seconds_per_step": [round(t, 4) for t in times],
        "median_step_seconds": step, "tokens_per_s": tokens_per_s, "loss": loss,
        "flops_per_token": ours, "achieved_tflops": tokens_per_s * ours / 1e12,
        "mfu": mfu, "mfu_llm_foundry_convention": tokens_per_s * causal / peak if peak else None,
        "mfu_goal": MFU_GOAL.get(preset),
        "meets_goal": (mfu >= MFU_GOAL[preset]) if mfu is not None and preset in MFU_GOAL else None,
        "max_memory_gb": _max_memory_gb(device),
    }  # fmt: skip


# ----------------------------------------------------------------------------- decode
def _decode_model(args: argparse.Namespace, preset: str, vocab: Vocabulary, device: torch.device) -> Any:
    """bf16 random weights allocated directly on ``device`` (7B: 13.4 GB, no fp32 copy)."""
    with torch.device("meta"):
        model = CM3LeonTransformer(_config(args, preset, vocab))
    model = model.to(dtype=torch.bfloat16).to_empty(device=device)
    _random_weights_(model, args.seed)
    return model.eval()


def _decode_bytes(model: CM3LeonTransformer, rows: int, prompt_len: int, steps: int, head_rows: int) -> int:
    """Bytes a cached decode must move: per step every block weight, the image rows of the
    output projection and the KV cache attended over."""
    c, elt = model.config, model.tok_emb.weight.element_size()
    block = sum(p.numel() for p in model.blocks.parameters()) * elt
    kv = sum(2 * c.n_layers * rows * (prompt_len + t) * c.d_model * elt for t in range(1, steps + 1))
    return steps * (block + head_rows * c.d_model * elt) + kv


def run_decode(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """Seconds to generate one image (``--image-tokens``) with CFG and the KV cache."""
    from cm3leon.decoding.engine import SpanSpec, decode
    from cm3leon.decoding.pipeline import build_pipelines

    preset = args.preset or "cm3leon_7b"
    device, vocab = torch.device(args.device), _vocab(args)
    model = _decode_model(args, preset, vocab, device)
    rng = np.random.default_rng(args.seed)
    cond = np.concatenate([[vocab.eos_id], vocab.text_offset + rng.integers(0, vocab.text_size, args.prompt_tokens),
                           [vocab.break_id]])  # fmt: skip
    uncond = np.array([vocab.eos_id, vocab.mask_id(0), vocab.break_id])
    span = SpanSpec.image(vocab, args.image_tokens)
    pipes = build_pipelines([{"guidance": {"name": "cfg", "options": {"scale": args.cfg_scale}},
                              "processors": [{"name": "top_p", "options": {"p": 0.9}}]}], where="gpu.py")  # fmt: skip
    gen = torch.Generator(device=device).manual_seed(args.seed)
    _log(f"decode {preset}: {model.num_parameters() / 1e9:.2f}B params bf16, {args.image_tokens} image tokens, CFG")

    def once() -> tuple[float, Any]:
        _sync(device)
        start = time.perf_counter()
        res = decode(model, [[cond], [uncond]], span, pipes, stream_names=("cond", "uncond"), generator=gen)
        _sync(device)
        return time.perf_counter() - start, res

    with torch.inference_mode():
        warm, _ = once()
        runs = [once() for _ in range(args.repeats)]
    seconds = statistics.median(t for t, _ in runs)
    res = runs[-1][1]
    decode_s = statistics.median(r.decode_seconds for _, r in runs)
    moved = _decode_bytes(model, 2, len(cond), res.steps, vocab.image_size)
    bw = info["peak_bandwidth_gb_s"]
    return {
        "part": "decode", "preset": preset, "parameters": model.num_parameters(),
        "shapes": "tiny stand-in" if args.tiny else "preset", "dtype": "bfloat16",
        "image_tokens": args.image_tokens, "generated": int(res.lengths[0, 0]),
        "prompt_tokens": len(cond), "streams": ["cond", "uncond"], "cfg_scale": args.cfg_scale,
        "selection": "top_p 0.9", "kv_cache": True, "warmup_seconds": round(warm, 3),
        "seconds": [round(t, 4) for t, _ in runs], "seconds_per_image": seconds,
        "prefill_seconds": statistics.median(r.prefill_seconds for _, r in runs),
        "decode_seconds": decode_s, "ms_per_step": 1e3 * decode_s / max(res.steps, 1),
        "decode_bytes": moved, "achieved_bandwidth_gb_s": moved / decode_s / 1e9,
        "bandwidth_fraction": moved / decode_s / 1e9 / bw if bw else None,
        "goal_seconds_h200": DECODE_GOAL_SECONDS, "paper_a100_seconds": PAPER_A100_SECONDS,
        "meets_goal": seconds <= DECODE_GOAL_SECONDS if "H200" in info["device_name"].upper() else None,
        "max_memory_gb": _max_memory_gb(device),
    }  # fmt: skip


# ----------------------------------------------------------------------------- fsdp
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _init_single_rank(device: torch.device) -> str:
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=0, world_size=1)
    return backend


def _sharded_model(args: argparse.Namespace, preset: str, vocab: Vocabulary,
                   device: torch.device) -> tuple[CM3LeonTransformer, float]:
    """Meta build -> ``fully_shard`` (blocks, root; bf16 params, fp32 reduce) -> materialise."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from cm3leon.core.model.attention import resolve_attention
    from cm3leon.core.model.meta_init import materialize_, meta_model

    kernel, _ = resolve_attention("auto", device, requires_grad=True)
    torch.manual_seed(args.seed)
    model = meta_model(_config(args, preset, vocab, attention=kernel))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    start = time.perf_counter()
    materialize_(model, device)
    _sync(device)
    return model, time.perf_counter() - start


def run_fsdp(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """A few FSDP2 training steps on one device (world size 1)."""
    import torch.distributed as dist

    preset = args.preset or "cm3leon_760m"
    device, vocab = torch.device(args.device), _vocab(args)
    backend = _init_single_rank(device)
    try:
        model, materialize_s = _sharded_model(args, preset, vocab, device)
        _log(f"fsdp {preset}: sharded and materialised in {materialize_s:.1f} s ({backend})")
        batch = args.batch_size or 2
        ids, doc_ids = packed_batch(vocab, batch, args.seq_len, args.mean_doc_len, device, args.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        times, losses = _train_steps(model, opt, ids, doc_ids, max(args.warmup, 1) + 2, device,
                                     autocast=False)
        sharded = type(next(model.parameters())).__name__
    finally:
        dist.destroy_process_group()
    step = statistics.median(times[-2:])
    ours, _ = _flops(model.config, args.seq_len)
    peak = info["peak_tflops"] and info["peak_tflops"] * 1e12
    return {
        "part": "fsdp", "preset": preset, "parameters": model.num_parameters(),
        "shapes": "tiny stand-in" if args.tiny else "preset", "api": "torch.distributed.fsdp.fully_shard (FSDP2)",
        "world_size": 1, "backend": backend, "parameter_type": sharded,
        "mixed_precision": "param bf16, reduce fp32", "meta_init": True,
        "materialize_seconds": materialize_s, "batch_size": batch, "seq_len": args.seq_len,
        "seconds_per_step": [round(t, 4) for t in times], "losses": losses,
        "loss_finite": all(math.isfinite(v) for v in losses),
        "tokens_per_s": batch * args.seq_len / step,
        "mfu": batch * args.seq_len / step * ours / peak if peak else None,
        "max_memory_gb": _max_memory_gb(device),
    }  # fmt: skip


# ----------------------------------------------------------------------------- main
RUNNERS = {"mfu": run_mfu, "decode": run_decode, "fsdp": run_fsdp}


def combine(folder: str | Path) -> dict[str, Any]:
    """Merge ``benchmarks/gpu.sh``'s part files: ``<name>.json``, or the failure from
    ``<name>.rc`` (124 = timed out after ``<name>.limit`` s) and the log's last lines."""
    folder = Path(folder)
    names = (folder / "parts").read_text().split()
    result: dict[str, Any] = {"benchmark": "gpu", "parts": {}}
    for name in names:
        path, rc_file = folder / f"{name}.json", folder / f"{name}.rc"
        rc = int(rc_file.read_text().strip() or -1) if rc_file.is_file() else None
        if rc == 0 and path.is_file():
            part = json.loads(path.read_text())
            result.setdefault("host", part.pop("host_info", None))
            result["parts"][name] = part
            continue
        limit = (folder / f"{name}.limit").read_text().strip() if (folder / f"{name}.limit").is_file() else "?"
        why = f"timed out after {limit} s" if rc in (124, 137) else f"exit status {rc}"
        log = folder / f"{name}.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
        result["parts"][name] = {"error": why, "log_tail": tail}
    result["ok"] = all("error" not in p for p in result["parts"].values())
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    if args.combine:
        result = combine(args.combine)
    else:
        info = device_info(args)
        parts = PARTS if args.part == "all" else (args.part,)
        result = {"benchmark": "gpu", "host_info": info} if len(parts) == 1 else {"benchmark": "gpu", "host": info}
        for name in parts:
            out = RUNNERS[name](args, info)
            if len(parts) == 1:
                result.update(out)
            else:
                result.setdefault("parts", {})[name] = out
    print(json.dumps(result, indent=2))
    if args.output:
        atomic_write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
