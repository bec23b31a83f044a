"""Built-in ablation runners (registered through ``cm3leon_register_runners``).

A runner is ``run(cfg, run_dir) -> dict`` plus the dataclass ``cfg`` is validated against
(see :class:`cm3leon.core.registry.RunnerSpec`).  Each returns small summary results (the
ablation table's columns) and writes its full protocol output into ``run_dir``.

=================  ========================================================================
runner             one run
=================  ========================================================================
``fid_gaussian``   FID of two sampled Gaussians vs the exact distance (estimator bias)
``fid``            FID between image folders / ``.npz`` stats
``text_to_image``  CLIP re-ranking of pre-generated candidates, FID + CLIP score
``captioning``     CIDEr-D of a COCO results file
``vqa``            official VQA accuracy of a results file
=================  ========================================================================

Generation-driven runners (generate, then score) belong to the packages that generate; they
register the same way and may call :mod:`cm3leon.eval.protocols` for the scoring half.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import MISSING

from cm3leon.core.io import atomic_write_json

__all__ = [
    "CaptioningRunConfig",
    "FidGaussianConfig",
    "FidRunConfig",
    "TextToImageRunConfig",
    "VQARunConfig",
    "run_captioning",
    "run_fid",
    "run_fid_gaussian",
    "run_text_to_image",
    "run_vqa",
]


@dataclass
class FidGaussianConfig:
    """Two Gaussians ``N(0, Σ)`` and ``N(shift·1, scale²Σ)`` with a random fixed ``Σ``."""

    dim: int = 64
    num_samples: int = 1000
    shift: float = 0.5
    scale: float = 1.0
    seed: int = 0
    method: str = "eigh"


def run_fid_gaussian(cfg: FidGaussianConfig, run_dir: Path) -> dict[str, Any]:
    """Sample FID vs the exact ``D·shift² + (1 − scale)²·tr Σ``: the small-sample bias."""
    from cm3leon.eval.frechet import GaussianStats, frechet_distance

    if cfg.dim < 1 or cfg.num_samples < 2:
        raise ValueError(f"need dim >= 1 and num_samples >= 2, got {cfg.dim}, {cfg.num_samples}")
    rng = np.random.default_rng(cfg.seed)
    a = rng.standard_normal((cfg.dim, cfg.dim))
    sigma = a @ a.T / cfg.dim + 0.1 * np.eye(cfg.dim)  # (D, D), well conditioned
    chol = np.linalg.cholesky(sigma)
    x = rng.standard_normal((cfg.num_samples, cfg.dim)) @ chol.T  # (N, D)
    y = cfg.shift + cfg.scale * (rng.standard_normal((cfg.num_samples, cfg.dim)) @ chol.T)
    exact = cfg.dim * cfg.shift**2 + (1.0 - cfg.scale) ** 2 * float(np.trace(sigma))
    sample = frechet_distance(
        GaussianStats.from_features(x, name="set A"),
        GaussianStats.from_features(y, name="set B"),
        method=cfg.method,  # type: ignore[arg-type]
    )
    return {"fid": sample, "fid_exact": exact, "bias": sample - exact}


@dataclass
class FidRunConfig:
    real: str = MISSING
    fake: str = MISSING
    features: str = "inception"
    features_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    method: str = "eigh"


def run_fid(cfg: FidRunConfig, run_dir: Path) -> dict[str, Any]:
    from cm3leon.eval.protocols import fid_between

    res = fid_between(
        cfg.real, cfg.fake, features=cfg.features, features_options=cfg.features_options,
        batch_size=cfg.batch_size, method=cfg.method,
    )  # fmt: skip
    atomic_write_json(run_dir / "fid.json", res)
    return {"fid": res["metrics"]["fid"], "num_real": res["num_real"], "num_fake": res["num_fake"]}


@dataclass
class TextToImageRunConfig:
    manifest: str = MISSING
    reference: str = MISSING
    encoder: str = "clip-image"
    encoder_options: dict[str, Any] = field(default_factory=dict)
    num_candidates: int | None = None
    features: str = "clip"
    features_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    grid_prompts: int = 8


def run_text_to_image(cfg: TextToImageRunConfig, run_dir: Path) -> dict[str, Any]:
    from cm3leon.eval.protocols import text_to_image_protocol

    res = text_to_image_protocol(
        cfg.manifest, cfg.reference, encoder=cfg.encoder, encoder_options=cfg.encoder_options,
        num_candidates=cfg.num_candidates, features=cfg.features,
        features_options=cfg.features_options, batch_size=cfg.batch_size,
        grid_path=run_dir / "samples.png", grid_prompts=cfg.grid_prompts,
    )  # fmt: skip
    atomic_write_json(run_dir / "text_to_image.json", res)
    return {
        **res["metrics"],
        "num_prompts": res["num_prompts"],
        "num_candidates": res["num_candidates"],
    }


@dataclass
class CaptioningRunConfig:
    predictions: str = MISSING
    references: str = MISSING
    tokenizer: str = "ptb"
    partial: bool = False


def run_captioning(cfg: CaptioningRunConfig, run_dir: Path) -> dict[str, Any]:
    from cm3leon.eval.protocols import score_caption_files

    res = score_caption_files(
        cfg.predictions, cfg.references, tokenizer=cfg.tokenizer, partial=cfg.partial
    )
    atomic_write_json(run_dir / "captioning.json", res)
    return {**res["metrics"], "num_images": res["num_images"]}


@dataclass
class VQARunConfig:
    predictions: str = MISSING
    annotations: str = MISSING
    partial: bool = False


def run_vqa(cfg: VQARunConfig, run_dir: Path) -> dict[str, Any]:
    from cm3leon.eval.protocols import score_vqa_files

    res = score_vqa_files(cfg.predictions, cfg.annotations, partial=cfg.partial)
    atomic_write_json(run_dir / "vqa.json", res)
    return {
        **res["metrics"],
        "per_answer_type": res["per_answer_type"],
        "num_questions": res["num_questions"],
    }
