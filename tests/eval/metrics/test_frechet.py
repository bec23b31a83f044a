"""Fréchet distance: float64 formula vs independent computations, stats I/O, input errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cm3leon.eval.metrics.frechet import (
    FrechetError,
    GaussianStats,
    RankDeficientWarning,
    frechet_distance,
    trace_sqrt_product,
)


def _features(
    rng: np.random.Generator, n: int, d: int, shift: float, mix: np.ndarray
) -> np.ndarray:
    return rng.standard_normal((n, d)) @ mix + shift


@pytest.fixture
def two_sets() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    d = 48
    a = _features(rng, 600, d, 0.0, rng.standard_normal((d, d)) / np.sqrt(d))
    b = _features(rng, 500, d, 0.3, rng.standard_normal((d, d)) / np.sqrt(d))
    return a, b


def _torchmetrics_fid(a: np.ndarray, b: np.ndarray) -> float:
    """torchmetrics' formula (eigenvalues of the non-symmetric product), on torch.cov."""
    from torchmetrics.image.fid import _compute_fid

    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return float(_compute_fid(ta.mean(0), torch.cov(ta.T), tb.mean(0), torch.cov(tb.T)))


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_matches_torchmetrics_formula(two_sets, method: str) -> None:
    a, b = two_sets
    ours = frechet_distance(
        GaussianStats.from_features(a), GaussianStats.from_features(b), method=method
    )
    reference = _torchmetrics_fid(a, b)
    assert ours == pytest.approx(reference, rel=1e-6)
    assert ours > 1.0  # the two sets differ: the comparison is not near 0/0


def test_matches_pytorch_fid_when_installed(two_sets) -> None:
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    a, b = two_sets
    ref = fid_score.calculate_frechet_distance(
        a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    )
    ours = frechet_distance(GaussianStats.from_features(a), GaussianStats.from_features(b))
    assert ours == pytest.approx(ref, rel=1e-6)


def test_diagonal_closed_form() -> None:
    # For diagonal covariances d² = Σ (μ1-μ2)² + Σ (s1 - s2)² with s the standard deviations.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 2.0, 0.1])
    a = GaussianStats(mu1, np.diag(s1**2))
    b = GaussianStats(mu2, np.diag(s2**2))
    expected = ((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    for method in ("eigh", "sqrtm"):
        assert frechet_distance(a, b, method=method) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-12)


def test_trace_sqrt_is_symmetric_in_its_arguments(two_sets) -> None:
    a, b = (np.cov(x, rowvar=False) for x in two_sets)
    assert trace_sqrt_product(a, b) == pytest.approx(trace_sqrt_product(b, a), rel=1e-10)


def test_moments_equal_numpy_cov(two_sets) -> None:
    a, _ = two_sets
    direct = GaussianStats.from_features(a)
    moments = GaussianStats.from_moments(a.sum(0), a.T @ a, a.shape[0])
    np.testing.assert_allclose(moments.mu, direct.mu, rtol=1e-12)
    np.testing.assert_allclose(moments.sigma, direct.sigma, rtol=1e-9, atol=1e-12)
    assert moments.num_samples == direct.num_samples == 600


def test_rank_deficient_warns_and_eigh_stays_exact() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((10, 32)), rng.standard_normal((12, 32)) + 0.5
    with pytest.warns(RankDeficientWarning, match="rank"):
        sa = GaussianStats.from_features(a, name="real")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        sb = GaussianStats.from_features(b)
    value = frechet_distance(sa, sb)
    assert np.isfinite(value)
    assert value == pytest.approx(_torchmetrics_fid(a, b), rel=1e-6)


def test_input_errors() -> None:
    with pytest.raises(FrechetError, match="at least 2 samples.*got 1"):
        GaussianStats.from_features(np.zeros((1, 4)), name="generated")
    with pytest.raises(FrechetError, match=r"\(N, D\)"):
        GaussianStats.from_features(np.zeros(5))
    with pytest.raises(FrechetError, match="NaN"):
        GaussianStats.from_features(np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]))
    a = GaussianStats(np.zeros(3), np.eye(3))
    b = GaussianStats(np.zeros(4), np.eye(4))
    with pytest.raises(FrechetError, match="dimensions differ: 3 vs 4"):
        frechet_distance(a, b)
    with pytest.raises(FrechetError, match="does not match"):
        GaussianStats(np.zeros(3), np.eye(2))
    with pytest.raises(FrechetError, match="unknown square-root method"):
        frechet_distance(a, a, method="cholesky")  # type: ignore[arg-type]


def test_stats_npz_round_trip_and_pytorch_fid_layout(tmp_path, two_sets) -> None:
    stats = GaussianStats.from_features(two_sets[0])
    path = stats.save(tmp_path / "ref.npz")
    loaded = GaussianStats.load(path)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.num_samples == 600
    # pytorch-fid writes only mu and sigma.
    np.savez(tmp_path / "pfid.npz", mu=stats.mu, sigma=stats.sigma)
    assert GaussianStats.load(tmp_path / "pfid.npz").num_samples is None
    np.savez(tmp_path / "bad.npz", mean=stats.mu)
    with pytest.raises(FrechetError, match=r"bad\.npz.*lacks \['mu', 'sigma'\]"):
        GaussianStats.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "pickled.npz", mu=np.array([{"x": 1}], dtype=object), sigma=stats.sigma)
    with pytest.raises(FrechetError, match="pickled.npz"):
        GaussianStats.load(tmp_path / "pickled.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        GaussianStats.load(tmp_path / "missing.npz")
