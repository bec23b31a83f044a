"""FID between two image sets: folders, cm3leon document shards or ``.npz`` stats.

The file-only protocol behind ``cm3leon eval fid`` / ``cm3leon eval stats`` and the ``fid``
runner; the text-to-image protocol computes its FID with :func:`feature_stats` too.  The
metric itself is :class:`cm3leon.eval.metrics.fid.FrechetDistance`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING
from tqdm.auto import tqdm

from cm3leon.core.io import atomic_write_json
from cm3leon.eval.formats import iter_image_batches, iter_images
from cm3leon.eval.metrics.fid import FrechetDistance, build_feature_extractor
from cm3leon.eval.metrics.frechet import GaussianStats, frechet_distance
from cm3leon.eval.protocols.common import file_info

__all__ = ["FidRunConfig", "feature_stats", "fid_between", "run_fid"]


def feature_stats(
    source: str | Path, extractor: Any, *, batch_size: int = 32, desc: str = "features"
) -> GaussianStats:
    """Gaussian stats of an image folder or document shards (through ``extractor``), or
    of a ``.npz`` stats file."""
    source = Path(source)
    if source.is_file() and source.suffix == ".npz":
        return GaussianStats.load(source)
    metric = FrechetDistance(extractor, num_features=getattr(extractor, "num_features", None))
    for batch in tqdm(iter_image_batches(iter_images(source), batch_size), desc=desc, unit="batch"):
        metric.update(batch, real=False)
    return metric.stats(real=False, name=f"{desc} ({source})")


def fid_between(
    real: str | Path,
    fake: str | Path,
    *,
    features: str | Callable[[torch.Tensor], torch.Tensor] = "inception",
    features_options: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    method: str = "eigh",
    save_real_stats: str | Path | None = None,
    allow_rank_deficient: bool = False,
) -> dict[str, Any]:
    """FID between image folders, cm3leon document shards or ``.npz`` stats (any mix).

    A set with fewer samples than the feature dimension + 1 (2049 for Inception) has a
    singular covariance and a strongly biased FID: it raises
    :class:`~cm3leon.eval.metrics.frechet.RankDeficientError` naming the set and both
    numbers, unless ``allow_rank_deficient`` (then it warns, and the result says
    ``"rank_deficient": true``).  ``.npz`` stats without ``num_samples`` are not checked.
    """
    extractor = None
    if not all(Path(p).suffix == ".npz" for p in (real, fake)):
        extractor = build_feature_extractor(features, features_options)
    real_stats = feature_stats(real, extractor, batch_size=batch_size, desc="real images")
    fake_stats = feature_stats(fake, extractor, batch_size=batch_size, desc="generated images")
    for stats, name in ((real_stats, f"real images ({real})"), (fake_stats, f"generated images ({fake})")):
        stats.check_samples(name, allow_rank_deficient=allow_rank_deficient)
    if save_real_stats is not None:
        real_stats.save(save_real_stats)
    return {
        "protocol": "fid",
        "metrics": {"fid": frechet_distance(real_stats, fake_stats, method=method)},  # type: ignore[arg-type]
        "num_real": real_stats.num_samples,
        "num_fake": fake_stats.num_samples,
        "rank_deficient": real_stats.rank_deficient or fake_stats.rank_deficient,
        "features": features if isinstance(features, str) else type(features).__name__,
        "method": method,
        "inputs": {"real": file_info(real), "fake": file_info(fake)},
    }


@dataclass
class FidRunConfig:
    """Schema of the ``fid`` runner: :func:`fid_between`'s arguments."""

    real: str = MISSING
    fake: str = MISSING
    features: str = "inception"
    features_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    method: str = "eigh"
    allow_rank_deficient: bool = False


def run_fid(cfg: FidRunConfig, run_dir: str | Path) -> dict[str, Any]:
    """The ``fid`` runner: :func:`fid_between`, written to ``run_dir/fid.json``."""
    res = fid_between(
        cfg.real, cfg.fake, features=cfg.features, features_options=cfg.features_options,
        batch_size=cfg.batch_size, method=cfg.method, allow_rank_deficient=cfg.allow_rank_deficient,
    )  # fmt: skip
    atomic_write_json(Path(run_dir) / "fid.json", res)
    return {"fid": res["metrics"]["fid"], "num_real": res["num_real"], "num_fake": res["num_fake"]}
