"""VQ image tokenizer throughput: images/s for encode and decode, vs ``transformers`` in the same run.

For each preset (default ``small_32`` and ``paper``) and batch size (default 1 and 32),
with random weights and random pixels at the preset's resolution:

* **ours encode**: :meth:`VQModel.encode` (encoder -> ``quant_conv`` -> nearest code);
* **ours decode**: :meth:`VQModel.decode` (codes -> ``post_quant_conv`` -> decoder);
* **reference encode**: ``transformers``' ``ChameleonVQVAE.encode`` on the same input size,
  (a) with Chameleon's released architecture (``ChameleonVQVAEConfig()`` defaults, the
  encoder every Chameleon user runs) and (b) configured with the preset's own
  architecture when ``transformers`` can express it (it hard-codes 32 GroupNorm groups,
  so the ``small_*`` presets have no same-architecture reference); for (b) its weights are
  mapped into ours and the codes are checked identical.

``transformers`` ships no decoder, so decode has no reference; ``decode_vs_encode`` puts
it next to our own encode.  Runs of ours and the reference are interleaved and the
median of ``--repeats`` is kept (one timed run when a single call exceeds
``--slow-seconds``).  Ratios are ours / reference (> 1: ours faster).

Usage::

    OMP_WAIT_POLICY=PASSIVE uv run python benchmarks/tokenizers.py              # JSON on stdout
    uv run python benchmarks/tokenizers.py --presets small_32 --batches 1 8 --output runs/bench/tok.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cm3leon.core.io import atomic_write_json
from cm3leon.tokenizers.chameleon import load_encoder_half, map_transformers_state_dict
from cm3leon.tokenizers.vqgan import VQModel
from cm3leon.tokenizers.vqgan_config import VQGANConfig, preset_names, vqgan_preset


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["small_32", "paper"], choices=preset_names())
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--slow-seconds", type=float, default=20.0, help="one timed run when a call takes longer")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--output", default=None, help="also write the JSON here (atomically)")
    return p.parse_args(argv)


def _hf_encoder(cfg: VQGANConfig | None, seed: int) -> Any:
    from transformers import ChameleonVQVAEConfig
    from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

    torch.manual_seed(seed)
    if cfg is None:
        return ChameleonVQVAE(ChameleonVQVAEConfig()).eval()
    hf_cfg = ChameleonVQVAEConfig(
        embed_dim=cfg.codebook_dim, num_embeddings=cfg.codebook_size, latent_channels=cfg.z_channels,
        resolution=cfg.resolution, base_channels=cfg.base_channels, channel_multiplier=list(cfg.channel_mult),
        num_res_blocks=cfg.num_res_blocks, attn_resolutions=list(cfg.attn_resolutions) or None,
    )
    return ChameleonVQVAE(hf_cfg).eval()


def _same_arch_possible(cfg: VQGANConfig) -> bool:
    return cfg.num_groups == 32 and cfg.mid_attention and not cfg.l2_normalized_codes


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _measure(fns: dict[str, Callable[[], Any]], repeats: int, slow: float) -> dict[str, float]:
    """Median seconds per call of each function, runs interleaved after one warm-up each."""
    warm = {name: _time(fn) for name, fn in fns.items()}
    n = 1 if max(warm.values()) > slow else repeats
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            times[name].append(_time(fn))
    return {name: statistics.median(t) for name, t in times.items()}


@torch.inference_mode()
def bench_preset(preset: str, batches: list[int], repeats: int, slow: float) -> list[dict[str, Any]]:
    cfg = vqgan_preset(preset)
    torch.manual_seed(0)
    ours = VQModel(cfg).eval()
    chameleon_ref = _hf_encoder(None, seed=1)
    same_ref = _hf_encoder(cfg, seed=2) if _same_arch_possible(cfg) else None
    twin = None
    if same_ref is not None:  # our model with the reference's weights: codes must agree
        twin = VQModel(cfg).eval()
        load_encoder_half(twin, map_transformers_state_dict(same_ref.state_dict()), source="transformers")
    rows = []
    for batch in batches:
        x = torch.rand(batch, 3, cfg.resolution, cfg.resolution, generator=torch.Generator().manual_seed(batch)) * 2 - 1
        codes = ours.encode(x)
        fns: dict[str, Callable[[], Any]] = {
            "ours_encode": lambda x=x: ours.encode(x),
            "ours_decode": lambda c=codes: ours.decode(c),
            "reference_chameleon_encode": lambda x=x: chameleon_ref.encode(x),
        }
        if same_ref is not None:
            fns["reference_same_arch_encode"] = lambda x=x: same_ref.encode(x)
        seconds = _measure(fns, repeats, slow)
        ips = {name: batch / s for name, s in seconds.items()}
        row: dict[str, Any] = {
            "preset": preset, "image_size": cfg.resolution, "tokens": cfg.num_tokens, "batch": batch,
            "parameters": ours.num_parameters(),
            "encode_images_per_s": round(ips["ours_encode"], 3),
            "decode_images_per_s": round(ips["ours_decode"], 3),
            "decode_vs_encode": round(ips["ours_decode"] / ips["ours_encode"], 3),
            "reference_chameleon_encode_images_per_s": round(ips["reference_chameleon_encode"], 3),
            "encode_ratio_vs_chameleon_encoder": round(ips["ours_encode"] / ips["reference_chameleon_encode"], 3),
        }
        if same_ref is not None and twin is not None:
            row["reference_same_arch_encode_images_per_s"] = round(ips["reference_same_arch_encode"], 3)
            row["encode_ratio_vs_same_arch"] = round(ips["ours_encode"] / ips["reference_same_arch_encode"], 3)
            _, _, ref_codes = same_ref.encode(x)
            row["codes_identical_to_reference"] = bool(torch.equal(twin.encode(x).flatten(), ref_codes.flatten()))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def _unshadow_tokenizers_library() -> None:
    """This script is named like the ``tokenizers`` library that ``transformers`` imports;
    drop the script's own directory from ``sys.path`` so the library is found."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    _unshadow_tokenizers_library()
    args = _args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    results = []
    for preset in args.presets:
        results.extend(bench_preset(preset, args.batches, args.repeats, args.slow_seconds))
    report = {
        "benchmark": "tokenizers",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")},
        "repeats": args.repeats,
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        atomic_write_json(args.output, report)
    return report


if __name__ == "__main__":
    main()
