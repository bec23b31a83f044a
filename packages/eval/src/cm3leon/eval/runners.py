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
``chain``          several registered runners in sequence (e.g. generate, then score)
=================  ========================================================================

Generation-driven runners belong to the packages that generate (cm3leon-decoding registers
``generate``); ``chain`` composes them with the scoring runners here, so one matrix cell can
generate and score::

    base:
      runner: chain
      config:
        steps:
          - {name: gen, runner: generate, config: {...}}
          - {name: score, runner: text_to_image, config: {reference: ref.npz},
             inputs: {manifest: gen.manifest}}     # config key <- earlier step's result
    matrix:
      k: {key: steps.0.config.retrieval.k, values: [0, 1, 2]}
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
    "ChainConfig",
    "ChainStep",
    "FidGaussianConfig",
    "FidRunConfig",
    "TextToImageRunConfig",
    "VQARunConfig",
    "run_captioning",
    "run_chain",
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
    """Schema of the ``vqa`` runner.

    Attributes:
        predictions: VQA results file.
        annotations: official-layout annotations file.
        partial: score only the questions that have a prediction.
        vqa_version: ``vqaEval.py`` version, ``"2016"`` or ``"current"``
            (:mod:`cm3leon.eval.vqa`).
    """

    predictions: str = MISSING
    annotations: str = MISSING
    partial: bool = False
    vqa_version: str = "2016"


def run_vqa(cfg: VQARunConfig, run_dir: Path) -> dict[str, Any]:
    from cm3leon.core.config import ConfigError
    from cm3leon.eval.protocols import score_vqa_files
    from cm3leon.eval.vqa import check_vqa_version

    try:
        check_vqa_version(cfg.vqa_version)
    except ValueError as err:
        raise ConfigError(f"vqa_version: {err}") from None
    res = score_vqa_files(
        cfg.predictions, cfg.annotations, partial=cfg.partial, version=cfg.vqa_version
    )
    atomic_write_json(run_dir / "vqa.json", res)
    return {
        **res["metrics"],
        "per_answer_type": res["per_answer_type"],
        "num_questions": res["num_questions"],
    }


@dataclass
class ChainStep:
    """One step of a chain: a registered runner, its config, and inputs from earlier steps.

    ``inputs`` maps a dotted key of ``config`` to ``"<earlier step>.<result key>"``.
    """

    name: str = MISSING
    runner: str = MISSING
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass
class ChainConfig:
    """``steps`` run in order; ``common`` is merged under every step's config (the step's
    own keys win), so values shared by all steps — a model's tokenizers, the retrieval
    bank — are written once and one matrix axis can change them for every step."""

    steps: list[ChainStep] = field(default_factory=list)
    common: dict[str, Any] = field(default_factory=dict)


def run_chain(cfg: ChainConfig, run_dir: Path, *, registries: Any = None) -> dict[str, Any]:
    """Run ``cfg.steps`` in order, each in ``run_dir/<name>``; results are keyed by step name.

    Raises:
        ValueError: no steps, duplicate step names, or an input naming an unknown step or a
            result key the step did not return.
    """
    from omegaconf import OmegaConf

    from cm3leon.core.config import ConfigError, load_config
    from cm3leon.core.registry import resolve_object

    if not cfg.steps:
        raise ValueError("chain: no steps")
    names = [step.name for step in cfg.steps]
    if len(set(names)) != len(names):
        raise ValueError(f"chain: step names must be unique, got {names}")
    if registries is None:
        from cm3leon.eval.ablation.execute import active_registries

        registries = active_registries()
    results: dict[str, Any] = {}
    for step in cfg.steps:
        node = OmegaConf.merge(
            OmegaConf.create(dict(cfg.common)), OmegaConf.create(dict(step.config))
        )
        for key, source in step.inputs.items():
            done, _, result_key = source.partition(".")
            if done not in results or result_key not in results[done]:
                raise ValueError(
                    f"chain step {step.name!r}: input {key} <- {source!r}: no such result "
                    f"(finished steps: { {k: sorted(v) for k, v in results.items()} })"
                )
            OmegaConf.update(node, key, results[done][result_key], merge=True)
        spec = registries.runners.get(step.runner, where=f"steps.{step.name}.runner")
        data = OmegaConf.to_container(node, resolve=True)
        try:
            step_cfg = load_config(resolve_object(spec.schema), data=data) if spec.schema else data
        except ConfigError as err:
            raise ConfigError(
                str(err).replace("<config>", f"chain step {step.name!r}", 1)
            ) from None
        step_dir = Path(run_dir) / step.name
        step_dir.mkdir(parents=True, exist_ok=True)
        results[step.name] = spec.load()(step_cfg, step_dir)
    return results
