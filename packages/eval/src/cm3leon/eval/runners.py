"""Ablation runners that are not evaluation protocols (registered through
``cm3leon_register_runners``).

A runner is ``run(cfg, run_dir) -> dict`` plus the dataclass ``cfg`` is validated against
(see :class:`cm3leon.core.registry.RunnerSpec`).  Each returns small summary results (the
ablation table's columns) and writes its full output into ``run_dir``.  The protocols'
runners (``text_to_image``, ``captioning``, ``vqa``, ``editing``, ``fid``) live in their
modules under :mod:`cm3leon.eval.protocols`.

=================  ========================================================================
runner             one run
=================  ========================================================================
``fid_gaussian``   FID of two sampled Gaussians vs the exact distance (estimator bias)
``chain``          several registered runners in sequence (e.g. generate, then score)
=================  ========================================================================

``chain`` composes registered runners, e.g. a generator with a protocol scoring its
output, so one matrix cell can generate and score::

    base:
      runner: chain
      config:
        steps:
          - {name: gen, runner: generate, config: {...}}
          - {name: score, runner: text_to_image, config: {data: {reference: ref.npz}},
             inputs: {predictions: gen.manifest}}   # config key <- earlier step's result
    matrix:
      k: {key: steps.0.config.retrieval.k, values: [0, 1, 2]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import MISSING

__all__ = ["ChainConfig", "ChainStep", "FidGaussianConfig", "run_chain", "run_fid_gaussian"]


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
    from cm3leon.eval.metrics.frechet import GaussianStats, frechet_distance

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
