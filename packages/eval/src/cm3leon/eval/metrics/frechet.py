"""The Fréchet distance between two Gaussians fitted to feature sets (FID's formula).

``d² = ||μ₁ − μ₂||² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})``, computed in float64.

Two ways to get ``tr (Σ₁ Σ₂)^{1/2}`` are provided:

``"eigh"`` (default)
    ``Σ₁Σ₂`` is not symmetric, but ``AB`` and ``BA`` have the same non-zero eigenvalues, so
    ``eig(Σ₁Σ₂) = eig(Σ₁^{1/2} (Σ₁^{1/2} Σ₂)) = eig(Σ₁^{1/2} Σ₂ Σ₁^{1/2})``, a symmetric
    positive semi-definite matrix.  Two symmetric eigendecompositions (LAPACK ``syevd``) give
    the trace exactly, with real arithmetic only, for any PSD inputs — including the
    rank-deficient covariances of small sample sets, where the Schur-based ``sqrtm`` of the
    non-symmetric product is ill-conditioned and returns complex or non-finite values.
    Round-off can only produce tiny negative eigenvalues, which are clipped to zero (the
    true ones are ≥ 0).
``"sqrtm"``
    The formula of pytorch-fid / the original TTUR code: ``scipy.linalg.sqrtm(Σ₁ Σ₂)``; if
    the result is not finite, ``ε·I`` is added to both covariances and the root recomputed;
    a complex result whose imaginary diagonal exceeds ``1e-3`` is an error, otherwise its
    real part is used.  Kept for bit-level comparisons with published numbers.

Both agree to ~1e-10 relative on full-rank covariances (tested).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "FrechetError",
    "GaussianStats",
    "RankDeficientError",
    "RankDeficientWarning",
    "SqrtMethod",
    "frechet_distance",
    "trace_sqrt_product",
]

SqrtMethod = Literal["eigh", "sqrtm"]


class FrechetError(ValueError):
    """Invalid input to a Fréchet distance (too few samples, mismatched dimensions, NaN)."""


class RankDeficientWarning(UserWarning):
    """Fewer samples than feature dimensions + 1: the covariance estimate is singular."""


class RankDeficientError(FrechetError):
    """Fewer samples than feature dimensions + 1 where that was not allowed (``allow_rank_deficient``)."""


@dataclass(frozen=True)
class GaussianStats:
    """Mean and (unbiased) covariance of a feature set.

    Attributes:
        mu: ``(D,)`` float64 mean.
        sigma: ``(D, D)`` float64 covariance (``N − 1`` normalisation, as ``np.cov``).
        num_samples: ``N``, or ``None`` when unknown (e.g. a pytorch-fid ``.npz``).
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_samples: int | None = None

    def __post_init__(self) -> None:
        mu = np.asarray(self.mu, dtype=np.float64)
        sigma = np.asarray(self.sigma, dtype=np.float64)
        if mu.ndim != 1:
            raise FrechetError(f"mean must be a vector (D,), got shape {mu.shape}")
        if sigma.shape != (mu.shape[0], mu.shape[0]):
            raise FrechetError(
                f"covariance shape {sigma.shape} does not match mean dimension {mu.shape[0]}"
            )
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise FrechetError("mean/covariance contain NaN or infinity")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @property
    def rank_deficient(self) -> bool:
        """Fitted to fewer than ``D + 1`` samples (a singular covariance); ``False`` when ``N`` is unknown."""
        return self.num_samples is not None and self.num_samples < self.dim + 1

    def check_samples(self, name: str, *, allow_rank_deficient: bool) -> None:
        """Raise :class:`RankDeficientError` (naming ``name``, ``N`` and ``D``) unless allowed; else warn."""
        if self.num_samples is not None:
            _check_count(self.num_samples, self.dim, name, allow_rank_deficient=allow_rank_deficient)

    @classmethod
    def from_features(cls, features: np.ndarray, *, name: str = "features",
                      allow_rank_deficient: bool = True) -> GaussianStats:
        """Fit to ``features`` ``(N, D)``; ``name`` labels errors and warnings.

        Fewer than ``D + 1`` rows warn (:class:`RankDeficientWarning`), or with
        ``allow_rank_deficient=False`` raise :class:`RankDeficientError`.
        """
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise FrechetError(f"{name}: expected a (N, D) feature matrix, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise FrechetError(f"{name}: features contain NaN or infinity")
        _check_count(x.shape[0], x.shape[1], name, allow_rank_deficient=allow_rank_deficient)
        return cls(x.mean(axis=0), np.cov(x, rowvar=False), x.shape[0])

    @classmethod
    def from_moments(
        cls, total: np.ndarray, outer: np.ndarray, count: int, *, name: str = "features",
        allow_rank_deficient: bool = True,
    ) -> GaussianStats:
        """Fit from running sums: ``total = Σx`` ``(D,)``, ``outer = Σxxᵀ`` ``(D, D)``, ``count = N``
        (sample-count rules as :meth:`from_features`)."""
        total = np.asarray(total, dtype=np.float64)
        outer = np.asarray(outer, dtype=np.float64)
        count = int(count)
        _check_count(count, total.shape[0], name, allow_rank_deficient=allow_rank_deficient)
        mu = total / count
        sigma = (outer - count * np.outer(mu, mu)) / (count - 1)  # (D, D)
        return cls(mu, (sigma + sigma.T) / 2, count)

    def save(self, path: str | Path) -> Path:
        """Write ``mu``/``sigma`` (+ ``num_samples``) as ``.npz`` — pytorch-fid's stats format."""
        import io

        from cm3leon.core.io import atomic_write_bytes

        buf = io.BytesIO()
        extra = {} if self.num_samples is None else {"num_samples": np.int64(self.num_samples)}
        np.savez(buf, mu=self.mu, sigma=self.sigma, **extra)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        """Read a stats ``.npz`` with ``mu`` and ``sigma`` arrays (pickles refused)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = {"mu", "sigma"} - set(data.files)
                if missing:
                    raise FrechetError(
                        f"stats file lacks {sorted(missing)}; it has {sorted(data.files)}"
                    )
                n = int(data["num_samples"]) if "num_samples" in data.files else None
                return cls(data["mu"], data["sigma"], n)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: stats file not found") from None
        except (ValueError, OSError) as err:
            if isinstance(err, FrechetError):
                raise FrechetError(f"{path}: {err}") from None
            raise FrechetError(f"{path}: not a readable .npz stats file: {err}") from None


def _check_count(count: int, dim: int, name: str, *, allow_rank_deficient: bool = True) -> None:
    if count < 2:
        raise FrechetError(
            f"{name}: the Fréchet distance needs at least 2 samples to estimate a covariance, "
            f"got {count}"
        )
    if count >= dim + 1:
        return
    message = (
        f"{name}: {count} samples for {dim}-dimensional features; the covariance has rank "
        f"<= {count - 1} < {dim}, so the distance is computed on a singular covariance "
        "and is strongly biased. Use at least D + 1 samples (FID-Inception: >= 2049; the "
        "paper uses 30k)."
    )
    if not allow_rank_deficient:
        raise RankDeficientError(f"{message} Pass allow_rank_deficient=True to compute it anyway.")
    warnings.warn(message, RankDeficientWarning, stacklevel=3)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix via ``eigh`` (negative round-off clipped)."""
    w, v = np.linalg.eigh(sigma)  # (D,), (D, D)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(
    sigma1: np.ndarray, sigma2: np.ndarray, *, method: SqrtMethod = "eigh", eps: float = 1e-6
) -> float:
    """``tr (Σ₁ Σ₂)^{1/2}`` for two covariance matrices (see the module docstring)."""
    if method == "eigh":
        root = _psd_sqrt(sigma1)
        inner = root @ sigma2 @ root  # (D, D), symmetric PSD up to round-off
        eig = np.linalg.eigvalsh((inner + inner.T) / 2)
        return float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    if method == "sqrtm":
        from scipy import linalg

        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if np.iscomplexobj(covmean):
            imag = np.abs(np.diagonal(covmean).imag).max()
            if imag > 1e-3:
                raise FrechetError(f"matrix square root has an imaginary component {imag:.3g}")
            covmean = covmean.real
        return float(np.trace(covmean))
    raise FrechetError(f"unknown square-root method {method!r}; use 'eigh' or 'sqrtm'")


def frechet_distance(
    a: GaussianStats, b: GaussianStats, *, method: SqrtMethod = "eigh", eps: float = 1e-6
) -> float:
    """Fréchet distance between two fitted Gaussians (float64).

    Args:
        a: stats of the first set (e.g. real images).
        b: stats of the second set (e.g. generated images).
        method: ``"eigh"`` (symmetric eigen form) or ``"sqrtm"`` (pytorch-fid's).
        eps: diagonal offset of the ``"sqrtm"`` fallback.

    Raises:
        FrechetError: the feature dimensions differ.
    """
    if a.dim != b.dim:
        raise FrechetError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    diff = a.mu - b.mu  # (D,)
    tr_covmean = trace_sqrt_product(a.sigma, b.sigma, method=method, eps=eps)
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr_covmean)
