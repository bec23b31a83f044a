"""Image generation with CFG: cm3leon's decoding engine vs Hugging Face ``generate``, same run.

A preset (default ``cm3leon_small``) with random weights generates ``--image-tokens``
image tokens (default 256, a 16x16 VQ grid) from a caption prompt under classifier-free
guidance (eq. 2, scale 3), two ways, with identical weights and settings:

* **ours**: :func:`cm3leon.decoding.engine.decode` -- the conditional and the
  unconditional (``<eos> <mask:0> <break>``) streams in one batch over the preallocated
  KV cache, logits computed for the image block only;
* **HF**: ``OPTForCausalLM.generate(guidance_scale=3, negative_prompt_ids=...)`` on the
  model converted by :func:`cm3leon.core.model.hf_opt.to_hf_opt`, whose CFG processor
  runs the unconditional stream as a second model call, plus a logits processor that
  allows only the image block (what an image span needs).

Two settings: batch 1 with greedy selection (the outputs must be identical -- checked)
and 8 candidates with temperature 1 + top-p 0.9 sampling (HF: ``top_k=0``).  Runs are
interleaved (ours, HF, ours bf16, ours, ...) and the median of ``--repeats`` is kept.

bf16 weights (``--dtypes fp32,bf16``, the default): the same weights cast to bf16 (what
``cm3leon generate --dtype bf16`` loads) decode in the same run; ``bf16_speedup`` is fp32
seconds over bf16 seconds and ``bf16_token_agreement`` the fraction of greedy tokens equal
to fp32's.  A CPU without AMX / AVX512-BF16 converts bf16 to fp32 inside the matmul, so
the halved bytes may or may not pay for the conversion there.

Memory bandwidth is measured in the same process with **every core** (torch threads =
``os.cpu_count()`` for the probe only): the best of a large-tensor read (``sum``, bytes
read) and copy (bytes read + written), before and after the runs, the higher kept.  The
decode's achieved bandwidth is the bytes it must move per step (weights it reads, the
image rows of the output projection, the KV cache it attends over) divided by its time, so
``bandwidth_fraction`` <= 1 unless the weights fit in cache.  (The earlier probe, a
single-threaded copy counted as 2 bytes per element, under-read the machine, and the
fraction came out above 1.)

Usage::

    uv run python benchmarks/generate.py                      # JSON on stdout
    uv run python benchmarks/generate.py --text-size 2048 --image-size 1024 --output runs/bench/generate.json
    uv run python benchmarks/generate.py --dtypes fp32                # without the bf16 runs
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/generate.py` puts benchmarks/ first on sys.path, where a sibling script
# named like a package (benchmarks/tokenizers.py) would shadow the installed one.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from cm3leon.core.io import atomic_write_json
from cm3leon.core.model import PRESETS, preset_config
from cm3leon.core.model.hf_opt import to_hf_opt
from cm3leon.core.model.transformer import CM3LeonTransformer
from cm3leon.core.vocab import Vocabulary
from cm3leon.decoding.engine import SpanSpec, decode
from cm3leon.decoding.pipeline import build_pipelines


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cm3leon_small", choices=sorted(PRESETS))
    p.add_argument("--text-size", type=int, default=56_320, help="text ids (default: the paper's vocabulary)")
    p.add_argument("--image-size", type=int, default=8_192, help="image codebook size")
    p.add_argument("--image-tokens", type=int, default=256, help="tokens per image (16x16)")
    p.add_argument("--prompt-tokens", type=int, default=24, help="caption tokens of the prompt")
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--scale", type=float, default=3.0, help="CFG scale (eq. 2)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--dtypes", default="fp32,bf16", help="fp32 and/or bf16 weights for our decode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="also write the JSON here (atomically)")
    return p.parse_args(argv)


def _model(args: argparse.Namespace, vocab: Vocabulary) -> CM3LeonTransformer:
    torch.manual_seed(args.seed)
    model = CM3LeonTransformer(preset_config(args.preset, vocab_size=vocab.size)).eval()
    with torch.no_grad():  # §2.3's zero output layers would make every block the identity
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return model


def measure_bandwidth(nbytes: int = 1 << 28, repeats: int = 5, threads: int | None = None) -> dict[str, float]:
    """Best bytes/s of a large-tensor read (``sum``) and copy (read + write) on ``threads`` threads.

    ``threads`` defaults to every core (``os.cpu_count()``): one thread cannot saturate
    the memory bus, and the decode it is compared with is bounded by the bus, not by one
    core's share of it.  The caller's thread count is restored.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        src = torch.ones(nbytes // 4, dtype=torch.float32)
        dst = torch.empty_like(src)
        dst.copy_(src), src.sum()  # touch every page first
        read = copy_ = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            src.sum()
            read = min(read, time.perf_counter() - start)
            start = time.perf_counter()
            dst.copy_(src)
            copy_ = min(copy_, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    out = {"read": nbytes / read, "copy": 2 * nbytes / copy_}
    return {**out, "best": max(out.values()), "threads": float(threads or os.cpu_count() or 1)}


def decode_bytes(model: CM3LeonTransformer, rows: int, prompt_len: int, steps: int, head_rows: int) -> int:
    """Bytes the cached decode moves: per step, every block weight, the head rows, the KV cache."""
    c = model.config
    elt = model.tok_emb.weight.element_size()
    block = sum(p.numel() for p in model.blocks.parameters()) * elt
    head = head_rows * c.d_model * elt
    kv = sum(2 * c.n_layers * rows * (prompt_len + t) * c.d_model * elt for t in range(1, steps + 1))
    return steps * (block + head) + kv


class ImageBlockOnly:
    """HF logits processor: only image ids may be chosen (the engine's image span)."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, float("-inf"))
        out[:, self.offset:] = scores[:, self.offset:]
        return out


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _setting_row(n: int, n_tok: int, times: dict[str, list[float]], decode_s: dict[str, list[float]],
                 moved: dict[str, int]) -> dict:
    """One setting's medians: ours vs HF (fp32), and our bf16 decode beside them."""
    med = {k: statistics.median(v) for k, v in times.items()}
    dec = {k: statistics.median(v) for k, v in decode_s.items() if v}
    row = {
        "images": n,
        "ours_seconds": med["ours"],
        "hf_seconds": med["hf"],
        "ours_tokens_per_s": n * n_tok / med["ours"],
        "hf_tokens_per_s": n * n_tok / med["hf"],
        "ours_seconds_per_image": med["ours"] / n,
        "hf_seconds_per_image": med["hf"] / n,
        "speedup": med["hf"] / med["ours"],
        "ours_decode_seconds": dec["ours"],
        "ours_decode_bytes": moved["ours"],
        "ours_decode_bandwidth_gb_s": moved["ours"] / dec["ours"] / 1e9,
    }
    if "bf16" in med:
        row |= {
            "bf16_seconds": med["bf16"],
            "bf16_tokens_per_s": n * n_tok / med["bf16"],
            "bf16_seconds_per_image": med["bf16"] / n,
            "bf16_speedup": med["ours"] / med["bf16"],
            "bf16_decode_seconds": dec["bf16"],
            "bf16_decode_bytes": moved["bf16"],
            "bf16_decode_bandwidth_gb_s": moved["bf16"] / dec["bf16"] / 1e9,
        }
    return row


def _add_fractions(results: dict[str, dict], bandwidth: float) -> None:
    for row in results.values():
        row["bandwidth_fraction"] = row["ours_decode_bandwidth_gb_s"] * 1e9 / bandwidth
        if "bf16_decode_bandwidth_gb_s" in row:
            row["bf16_bandwidth_fraction"] = row["bf16_decode_bandwidth_gb_s"] * 1e9 / bandwidth


def main(argv: list[str] | None = None) -> dict:
    from cm3leon.core.precision import cpu_bf16_flags

    args = _args(argv)
    torch.set_num_threads(args.threads)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtypes or set(dtypes) - {"fp32", "bf16"} or "fp32" not in dtypes:
        raise SystemExit(f"--dtypes: fp32 (the reference), optionally with bf16; got {args.dtypes!r}")
    vocab = Vocabulary(text_size=args.text_size, image_size=args.image_size)
    model = _model(args, vocab)
    models = {"ours": model} | ({"bf16": copy.deepcopy(model).to(torch.bfloat16)} if "bf16" in dtypes else {})
    hf = to_hf_opt(model)
    rng = np.random.default_rng(args.seed)
    cond = np.concatenate([[vocab.eos_id], vocab.text_offset + rng.integers(0, vocab.text_size, args.prompt_tokens),
                           [vocab.break_id]])  # fmt: skip
    uncond = np.array([vocab.eos_id, vocab.mask_id(0), vocab.break_id])
    n_tok, N = args.image_tokens, args.candidates
    span = SpanSpec.image(vocab, n_tok)
    greedy = build_pipelines([{"guidance": {"name": "cfg", "options": {"scale": args.scale}},
                               "selector": {"name": "greedy"}}], where="greedy")  # fmt: skip
    sample = build_pipelines([{"guidance": {"name": "cfg", "options": {"scale": args.scale}},
                               "processors": [{"name": "temperature", "options": {"temperature": 1.0}},
                                              {"name": "top_p", "options": {"p": 0.9}}]}], where="sample")  # fmt: skip
    from transformers import LogitsProcessorList

    only_image = LogitsProcessorList([ImageBlockOnly(vocab.image_offset)])
    hf_common = dict(guidance_scale=args.scale, max_new_tokens=n_tok, min_new_tokens=n_tok, pad_token_id=0,
                     logits_processor=only_image)  # fmt: skip

    def ours(m: torch.nn.Module, n: int, pipes: list) -> Callable[[], object]:
        gen = torch.Generator().manual_seed(args.seed)
        return lambda: decode(m, [[cond], [uncond]], span, pipes, stream_names=("cond", "uncond"),
                              num_candidates=n, generator=gen)  # fmt: skip

    def theirs(n: int, sample_: bool) -> Callable[[], object]:
        ids = torch.as_tensor(cond)[None].repeat(n, 1)
        neg = torch.as_tensor(uncond)[None].repeat(n, 1)
        extra = dict(do_sample=True, temperature=1.0, top_p=0.9, top_k=0) if sample_ else dict(do_sample=False)
        return lambda: hf.generate(ids, attention_mask=torch.ones_like(ids), negative_prompt_ids=neg,
                                   negative_prompt_attention_mask=torch.ones_like(neg), **hf_common, **extra)  # fmt: skip

    settings = {"batch1_greedy": (1, greedy, False), f"candidates{N}_top_p": (N, sample, True)}
    probes = [measure_bandwidth()]  # measured again at the end; the better one is kept
    results: dict[str, dict] = {}
    with torch.inference_mode():
        for name, (n, pipes, sample_) in settings.items():
            fns = {"ours": ours(model, n, pipes), "hf": theirs(n, sample_)}
            if "bf16" in models:
                fns["bf16"] = ours(models["bf16"], n, pipes)
            for fn in fns.values():
                fn()  # warm-up
            times: dict[str, list[float]] = {k: [] for k in fns}
            decode_s: dict[str, list[float]] = {k: [] for k in fns if k != "hf"}
            last: dict[str, object] = {}
            for _ in tqdm(range(args.repeats), desc=name, file=sys.stderr):
                for key, fn in fns.items():  # interleaved: ours, HF, ours bf16, ours, ...
                    dt, last[key] = _timed(fn)
                    times[key].append(dt)
                    if key != "hf":
                        decode_s[key].append(last[key].decode_seconds)  # after the prefill
            moved = {k: decode_bytes(models[k], 2 * n, len(cond), last[k].steps, vocab.image_size) for k in decode_s}
            row = _setting_row(n, n_tok, times, decode_s, moved)
            if name == "batch1_greedy":
                first = last["ours"].candidate(0, 0)
                row["identical_to_hf"] = first == last["hf"][0, len(cond):].tolist()
                if "bf16" in last:
                    row["bf16_token_agreement"] = float(np.mean(np.array(first) == np.array(last["bf16"].candidate(0, 0))))
            results[name] = row
    probes.append(measure_bandwidth())
    best = max(probes, key=lambda p: p["best"])  # the machine is shared: keep its better figure
    _add_fractions(results, best["best"])
    report = {
        "benchmark": "generate",
        "preset": args.preset,
        "vocab": {"size": vocab.size, "text": vocab.text_size, "image": vocab.image_size},
        "image_tokens": n_tok,
        "cfg_scale": args.scale,
        "threads": args.threads,
        "repeats": args.repeats,
        "dtypes": dtypes,
        "cpu_bf16_flags": list(cpu_bf16_flags()),
        "measured_bandwidth_gb_s": best["best"] / 1e9,
        "bandwidth_probe": {"read_gb_s": best["read"] / 1e9, "copy_gb_s": best["copy"] / 1e9,
                            "threads": int(best["threads"])},
        "weights_mb": {k: sum(p.numel() * p.element_size() for p in m.parameters()) / 1e6 for k, m in models.items()},
        "results": results,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.platform(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        atomic_write_json(args.output, report)
    return report


if __name__ == "__main__":
    main()
