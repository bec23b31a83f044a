"""Training throughput of the CM3Leon transformer against Hugging Face OPT, same run.

Forward + backward tokens/s of a preset (default ``cm3leon_small``) and of the
``OPTForCausalLM`` converted from it (:func:`cm3leon.core.model.hf_opt.to_hf_opt`,
identical weights), on the same batch, with the same loss (next-token cross-entropy
computed from the logits outside both models).  Both run in train mode with
``scaled_dot_product_attention``.  Measurements are interleaved (ours, HF, ours, ...)
so background load hits both alike; the median of ``--repeats`` is reported.

Packed rows (the same batch as ``--docs-per-row`` documents per row, ``doc_ids``), which HF
OPT cannot express, run under both attention kernels of
:mod:`cm3leon.core.model.attention`: ``packed_dense`` (SDPA with a dense ``(B, 1, T, T)``
mask) and ``packed_flex`` (compiled FlexAttention with a block mask from the doc ids).
``unpacked`` is the same batch as one causal document per row (SDPA ``is_causal``).  The
goal is ``packed_flex >= 0.95 unpacked`` tokens/s.  Two modes:

* ``train`` -- forward + backward (the table above).  FlexAttention has no CPU backward
  in torch (2.14), so on the CPU ``packed_flex`` is ``null`` here, with the reason.
* ``forward`` -- forward only under ``torch.no_grad()`` (scoring, eval); FlexAttention
  runs on the CPU too.

FlexAttention's first compile is timed separately (``flex_compile_seconds``) and not in
the tokens/s; the packed logits of both kernels are compared before timing
(``max_abs_logit_diff_flex_vs_dense``).

Usage::

    uv run python benchmarks/model.py                       # JSON on stdout
    uv run python benchmarks/model.py --output runs/bench/model.json --repeats 7
    uv run python benchmarks/model.py --device cuda --preset cm3leon_350m --seq-len 4096 \
        --batch-size 2 --dtype bfloat16

Progress goes to stderr; the JSON result to stdout and, with ``--output``, atomically to
a file.  ``ratio`` = ours / HF tokens/s (train); ``ratios`` = each kernel over unpacked.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/model.py` puts benchmarks/ first on sys.path, where a sibling script
# named like a package (benchmarks/tokenizers.py) would shadow the installed one.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cm3leon.core.io import atomic_write_json
from cm3leon.core.model import PRESETS, preset_config
from cm3leon.core.model.attention import flex_unavailable_reason
from cm3leon.core.model.transformer import CM3LeonTransformer
from cm3leon.core.vocab import Vocabulary


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cm3leon_small", choices=sorted(PRESETS))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--docs-per-row", type=int, default=4, help="documents per row in the packed runs")
    p.add_argument("--text-size", type=int, default=2048, help="text ids of the vocabulary (CPU demo scale)")
    p.add_argument("--image-size", type=int, default=1024, help="image codebook size (CPU demo scale)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-hf", action="store_true", help="skip the HF OPT reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="also write the JSON here (atomically)")
    return p.parse_args(argv)


def _step(model: torch.nn.Module, ids: torch.Tensor, kwargs: dict, hf: bool,
          train: bool = True) -> Callable[[], None]:
    """One forward + backward of next-token cross-entropy (forward only with ``train=False``)."""

    def run() -> None:
        model.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(train):
            out = model(ids, **kwargs)
            logits = out.logits if hf else out  # (B, T, V)
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        if train:
            loss.backward()
        if ids.is_cuda:
            torch.cuda.synchronize()

    return run


def _time(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _models(args: argparse.Namespace, vocab: Vocabulary) -> dict[str, torch.nn.Module]:
    """Ours under both kernels (same weights) and, unless ``--no-hf``, the converted HF OPT."""
    config = preset_config(args.preset, vocab_size=vocab.size, max_seq_len=max(args.seq_len, 1))
    dense = CM3LeonTransformer(config.replace(attention="sdpa"))
    with torch.no_grad():  # §2.3 zero-inits output layers; use generic weights for timing
        for p in dense.parameters():
            p.normal_(0.0, 0.02)
    flex = CM3LeonTransformer(config.replace(attention="flex"))
    flex.load_state_dict(dense.state_dict())
    models = {"dense": dense, "flex": flex}
    if not args.no_hf:
        from cm3leon.core.model.hf_opt import to_hf_opt

        models["hf_opt"] = to_hf_opt(dense)
    dtype = getattr(torch, args.dtype)
    return {k: m.to(device=args.device, dtype=dtype).train() for k, m in models.items()}


def _runs(models: dict, ids: torch.Tensor, doc_ids: torch.Tensor, train: bool) -> dict:
    runs = {
        "unpacked": _step(models["dense"], ids, {}, hf=False, train=train),
        "packed_dense": _step(models["dense"], ids, {"doc_ids": doc_ids}, hf=False, train=train),
        "packed_flex": _step(models["flex"], ids, {"doc_ids": doc_ids}, hf=False, train=train),
    }
    if "hf_opt" in models:
        runs["hf_opt"] = _step(models["hf_opt"], ids, {}, hf=True, train=train)
    return runs


def _measure(runs: dict[str, Callable[[], None]], args: argparse.Namespace, desc: str) -> dict:
    """Interleaved timings: ``{name: [seconds per step]}``."""
    for fn in tqdm(list(runs.values()) * args.warmup, desc=f"{desc} warmup", file=sys.stderr):
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in tqdm(range(args.repeats), desc=desc, file=sys.stderr):
        for name, fn in runs.items():
            times[name].append(_time(fn))
    return times


def _mode(runs: dict, args: argparse.Namespace, tokens: int, desc: str, skipped: dict) -> dict:
    times = _measure({k: v for k, v in runs.items() if k not in skipped}, args, desc)
    tps = {name: tokens / statistics.median(ts) for name, ts in times.items()}
    unpacked = tps["unpacked"]
    return {
        "tokens_per_s": {k: (round(tps[k], 1) if k in tps else None) for k in runs},
        "ratios_vs_unpacked": {k: (round(tps[k] / unpacked, 3) if k in tps else None) for k in runs},
        "seconds_per_step": {k: [round(t, 4) for t in ts] for k, ts in times.items()},
        "skipped": skipped,
    }


def _check_and_compile(models: dict, ids: torch.Tensor, doc_ids: torch.Tensor) -> dict:
    """Same functions before timing anything; the flex compile timed on its own."""
    with torch.no_grad():
        start = time.perf_counter()
        flex = models["flex"](ids, doc_ids=doc_ids)
        compile_s = time.perf_counter() - start
        dense = models["dense"](ids, doc_ids=doc_ids)
        out = {
            "flex_compile_seconds": round(compile_s, 2),
            "max_abs_logit_diff_flex_vs_dense": (flex - dense).abs().max().item(),
        }
        if "hf_opt" in models:
            theirs = models["hf_opt"](ids).logits
            out["max_abs_logit_diff_vs_hf"] = (models["dense"](ids) - theirs).abs().max().item()
    return out


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vocab = Vocabulary(text_size=args.text_size, image_size=args.image_size)
    models = _models(args, vocab)
    B, T = args.batch_size, args.seq_len
    ids = torch.randint(0, vocab.size, (B, T)).to(args.device)
    doc_ids = (torch.arange(T) * args.docs_per_row // T).expand(B, T).to(args.device)
    checks = _check_and_compile(models, ids, doc_ids)
    no_backward = flex_unavailable_reason(ids.device, requires_grad=True)
    modes = {
        "train": _mode(_runs(models, ids, doc_ids, train=True), args, B * T, "fwd+bwd",
                       {"packed_flex": no_backward} if no_backward else {}),
        "forward": _mode(_runs(models, ids, doc_ids, train=False), args, B * T, "fwd", {}),
    }
    train_tps = modes["train"]["tokens_per_s"]
    result = {
        "benchmark": "model_fwd_bwd",
        "preset": args.preset,
        "config": models["dense"].config.to_dict(),
        "parameters": models["dense"].num_parameters(),
        "batch_size": B,
        "seq_len": T,
        "docs_per_row": args.docs_per_row,
        "tokens_per_step": B * T,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "device": str(ids.device),
        "dtype": args.dtype,
        **checks,
        "tokens_per_s": train_tps,
        "ratio": round(train_tps["unpacked"] / train_tps["hf_opt"], 3) if "hf_opt" in models else None,
        "modes": modes,
        "reference": "transformers.OPTForCausalLM converted with to_hf_opt (same weights, same batch)",
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    print(json.dumps(result, indent=2))
    if args.output:
        atomic_write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
