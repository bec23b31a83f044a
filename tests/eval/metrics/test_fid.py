"""FrechetDistance metric: moments accumulated exactly, reduced across ranks by summation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cm3leon.eval.metrics.fid import FrechetDistance
from cm3leon.eval.metrics.frechet import FrechetError, GaussianStats, frechet_distance
from tests.eval._helpers import two_rank_compute


@pytest.fixture
def feats() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    real = torch.randn(90, 6, generator=g) @ torch.randn(6, 6, generator=g)
    fake = torch.randn(70, 6, generator=g) * 1.5 + 0.4
    return real, fake


def _expected(real: torch.Tensor, fake: torch.Tensor) -> float:
    return frechet_distance(
        GaussianStats.from_features(real.double().numpy()),
        GaussianStats.from_features(fake.double().numpy()),
    )


def test_batched_updates_equal_one_shot(feats) -> None:
    real, fake = feats
    metric = FrechetDistance(num_features=6)
    for chunk in real.split(25):
        metric.update(chunk, real=True)
    for chunk in fake.split(30):
        metric.update(chunk, real=False)
    value = metric.compute()
    assert value.dtype == torch.float64
    assert float(value) == pytest.approx(_expected(real, fake), rel=1e-9)


def test_two_ranks_equal_one_rank(feats) -> None:
    real, fake = feats

    def feed(lo: slice, hi: slice):
        def run(m: FrechetDistance) -> None:
            m.update(real[lo], real=True)
            m.update(fake[hi], real=False)

        return run

    merged = two_rank_compute(
        lambda **kw: FrechetDistance(num_features=6, **kw),
        feed(slice(0, 31), slice(0, 50)),
        feed(slice(31, None), slice(50, None)),
    )
    assert float(merged) == pytest.approx(_expected(real, fake), rel=1e-9)


def test_extractor_module_and_reference_stats(feats) -> None:
    real, fake = feats
    proj = torch.nn.Linear(6, 3)
    metric = FrechetDistance(proj, num_features=3)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.no_grad():
        expected = _expected(proj(real), proj(fake))
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)

    reference = GaussianStats.from_features(proj(real).detach().double().numpy())
    fixed = FrechetDistance(proj, reference=reference)
    fixed.update(fake, real=False)
    assert float(fixed.compute()) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="fixed reference stats"):
        fixed.update(real, real=True)


def test_reset_can_keep_real_statistics(feats) -> None:
    real, fake = feats
    metric = FrechetDistance(num_features=6, reset_real_features=False)
    metric.update(real, real=True)
    metric.update(fake[:10], real=False)
    metric.reset()
    metric.update(fake, real=False)
    assert float(metric.compute()) == pytest.approx(_expected(real, fake), rel=1e-9)
    metric = FrechetDistance(num_features=6)
    metric.update(real, real=True)
    metric.reset()
    assert int(metric.real_count) == 0


def test_errors(feats) -> None:
    real, _ = feats
    metric = FrechetDistance(num_features=6)
    with pytest.raises(FrechetError, match=r"\(B, 6\), got \(90, 5\)"):
        metric.update(real[:, :5], real=True)
    with pytest.raises(FrechetError, match="NaN"):
        metric.update(torch.full((2, 6), float("nan")), real=True)
    metric.update(real, real=True)
    metric.update(real[:1], real=False)
    with pytest.raises(FrechetError, match="generated set: .*at least 2 samples.*got 1"):
        metric.compute()
    with pytest.raises(ValueError, match="needs num_features"):
        FrechetDistance(lambda x: x)
    with pytest.raises(FrechetError, match="reference stats have dimension 2"):
        FrechetDistance(num_features=3, reference=GaussianStats(np.zeros(2), np.eye(2)))


def test_registered_as_metric() -> None:
    from cm3leon.core.plugin_manager import get_registries

    metric = get_registries().metrics.build("fid", num_features=4)
    assert isinstance(metric, FrechetDistance) and metric.num_features == 4
