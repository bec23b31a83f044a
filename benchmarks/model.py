"""Training throughput of the CM3Leon transformer against Hugging Face OPT, same run.

Forward + backward tokens/s of a preset (default ``cm3leon_small``) and of the
``OPTForCausalLM`` converted from it (:func:`cm3leon.core.model.hf_opt.to_hf_opt`,
identical weights), on the same batch, with the same loss (next-token cross-entropy
computed from the logits outside both models).  Both run in train mode with
``scaled_dot_product_attention``.  Measurements are interleaved (ours, HF, ours, ...)
so background load hits both alike; the median of ``--repeats`` is reported.  A
third row times our model on the same batch packed as several documents
(``doc_ids``: block-diagonal causal mask), which HF OPT cannot express.

Usage::

    uv run python benchmarks/model.py                       # JSON on stdout
    uv run python benchmarks/model.py --output runs/bench/model.json --repeats 7

Progress goes to stderr; the JSON result (``ratio`` = ours / HF tokens/s) to stdout
and, with ``--output``, atomically to a file.
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
from cm3leon.core.model.hf_opt import to_hf_opt
from cm3leon.core.model.transformer import CM3LeonTransformer
from cm3leon.core.vocab import Vocabulary


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cm3leon_small", choices=sorted(PRESETS))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--docs-per-row", type=int, default=4, help="documents per row in the packed run")
    p.add_argument("--text-size", type=int, default=2048, help="text ids of the vocabulary (CPU demo scale)")
    p.add_argument("--image-size", type=int, default=1024, help="image codebook size (CPU demo scale)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="also write the JSON here (atomically)")
    return p.parse_args(argv)


def _step(model: torch.nn.Module, ids: torch.Tensor, kwargs: dict, hf: bool) -> Callable[[], None]:
    """One forward + backward of next-token cross-entropy."""

    def run() -> None:
        model.zero_grad(set_to_none=True)
        out = model(ids, **kwargs)
        logits = out.logits if hf else out  # (B, T, V)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()

    return run


def _time(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vocab = Vocabulary(text_size=args.text_size, image_size=args.image_size)
    config = preset_config(args.preset, vocab_size=vocab.size, max_seq_len=max(args.seq_len, 1))
    ours = CM3LeonTransformer(config).train()
    with torch.no_grad():  # §2.3 zero-inits output layers; use generic weights for timing
        for p in ours.parameters():
            p.normal_(0.0, 0.02)
    theirs = to_hf_opt(ours).train()
    B, T = args.batch_size, args.seq_len
    ids = torch.randint(0, vocab.size, (B, T))
    doc_ids = (torch.arange(T) * args.docs_per_row // T).expand(B, T)

    with torch.no_grad():  # same function before timing anything
        ours.eval(), theirs.eval()
        diff = (ours(ids) - theirs(ids).logits).abs().max().item()
        ours.train(), theirs.train()
    runs = {
        "ours": _step(ours, ids, {}, hf=False),
        "hf_opt": _step(theirs, ids, {}, hf=True),
        "ours_packed": _step(ours, ids, {"doc_ids": doc_ids}, hf=False),
    }
    for fn in tqdm(list(runs.values()) * args.warmup, desc="warmup", file=sys.stderr):
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in tqdm(range(args.repeats), desc="fwd+bwd", file=sys.stderr):
        for name, fn in runs.items():
            times[name].append(_time(fn))
    tps = {name: B * T / statistics.median(ts) for name, ts in times.items()}
    result = {
        "benchmark": "model_fwd_bwd",
        "preset": args.preset,
        "config": config.to_dict(),
        "parameters": ours.num_parameters(),
        "batch_size": B,
        "seq_len": T,
        "tokens_per_step": B * T,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "max_abs_logit_diff_vs_hf": diff,
        "tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
        "seconds_per_step": {k: [round(t, 4) for t in ts] for k, ts in times.items()},
        "ratio": round(tps["ours"] / tps["hf_opt"], 3),
        "ratio_packed": round(tps["ours_packed"] / tps["hf_opt"], 3),
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
