"""FID refuses fewer samples than feature dimensions + 1 (reliability row 30).

With N <= D samples the covariance has rank <= N - 1 < D, and the FID is strongly biased
(Chong & Forsyth 2020): a "FID" of 100 generated images against Inception's 2048-d
features is not comparable with anything.  The file-level protocol (``cm3leon eval fid``,
the ``fid`` runner) raises :class:`RankDeficientError` naming the set and both numbers unless
``allow_rank_deficient``; the low-level metric warns by default and raises when asked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cm3leon.eval.metrics.frechet import (
    GaussianStats,
    RankDeficientError,
    RankDeficientWarning,
    frechet_distance,
)
from cm3leon.eval.protocols.fid import FidRunConfig, fid_between, run_fid


class Projected(torch.nn.Module):
    """(B, 3, H, W) -> a fixed random projection of the pixels to ``num_features`` dims."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.proj = torch.randn(3 * 8 * 8, num_features, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
        return x.flatten(1) @ self.proj  # (B, D)


def folder(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path / f"{i:03d}.png")
    return path


def test_fewer_rows_than_2048_inception_dims_is_refused_by_name(tmp_path: Path) -> None:
    real, fake = folder(tmp_path / "real", 24, 0), folder(tmp_path / "fake", 3, 1)
    with pytest.warns(RankDeficientWarning), pytest.raises(RankDeficientError) as err:
        fid_between(real, fake, features=Projected(2048), batch_size=8)
    assert f"real images ({real}): 24 samples for 2048-dimensional features" in str(err.value)
    assert "rank <= 23 < 2048" in str(err.value) and "allow_rank_deficient=True" in str(err.value)


def test_allowed_it_is_computed_and_flagged(tmp_path: Path) -> None:
    real, fake = folder(tmp_path / "real", 6, 0), folder(tmp_path / "fake", 9, 1)
    with pytest.warns(RankDeficientWarning, match="6 samples for 8-dimensional"):
        res = fid_between(real, fake, features=Projected(8), allow_rank_deficient=True)
    assert res["rank_deficient"] is True and np.isfinite(res["metrics"]["fid"])
    small = GaussianStats(np.zeros(8), np.eye(8), num_samples=6).save(tmp_path / "small.npz")
    large = GaussianStats(np.ones(8), np.eye(8), num_samples=500).save(tmp_path / "large.npz")
    with pytest.raises(RankDeficientError, match=r"generated images .*6 samples"):
        run_fid(FidRunConfig(real=str(large), fake=str(small)), tmp_path)  # stats files and the runner too
    assert run_fid(FidRunConfig(real=str(large), fake=str(large)), tmp_path)["fid"] == pytest.approx(0.0, abs=1e-9)
    enough = fid_between(folder(tmp_path / "nine", 9, 2), fake, features=Projected(8))  # N = D + 1: full rank
    assert enough["rank_deficient"] is False


def test_stats_refuse_when_asked_and_warn_by_default() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(RankDeficientError, match=r"^generated: 32 samples for 32-dimensional"):
        GaussianStats.from_features(rng.standard_normal((32, 32)), name="generated", allow_rank_deficient=False)
    x = rng.standard_normal((33, 32))
    stats = GaussianStats.from_features(x, allow_rank_deficient=False)
    assert not stats.rank_deficient
    with pytest.raises(RankDeficientError, match="moments: 5 samples for 32"):
        GaussianStats.from_moments(x[:5].sum(0), x[:5].T @ x[:5], 5, name="moments", allow_rank_deficient=False)
    with pytest.warns(RankDeficientWarning):
        few = GaussianStats.from_features(x[:5])
    assert few.rank_deficient and np.isfinite(frechet_distance(few, stats))
    assert not GaussianStats(np.zeros(3), np.eye(3)).rank_deficient  # N unknown (pytorch-fid .npz)


def test_the_command_refuses_by_name_and_has_a_flag_to_compute_anyway(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cm3leon.eval.cli import eval_group

    small = GaussianStats(np.zeros(8), np.eye(8), num_samples=6).save(tmp_path / "small.npz")
    large = GaussianStats(np.ones(8), np.eye(8), num_samples=500).save(tmp_path / "large.npz")
    res = CliRunner().invoke(eval_group, ["fid", str(large), str(small)])
    assert res.exit_code != 0 and "6 samples for 8-dimensional" in res.output
    assert "--allow-rank-deficient" in res.output
    res = CliRunner().invoke(eval_group, ["fid", str(large), str(small), "--allow-rank-deficient",
                                          "--out", str(tmp_path / "fid.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert '"rank_deficient": true' in (tmp_path / "fid.json").read_text()
