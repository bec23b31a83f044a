"""FID as a torchmetrics ``Metric`` that is exact across ranks.

Each set (real, generated) is summarised by three sum-reduced float64 states — ``Σx`` (D,),
``Σxxᵀ`` (D, D) and ``N`` — so ``dist_reduce_fx="sum"`` over ranks gives exactly the moments
of the union, and the Gaussian fit (:meth:`GaussianStats.from_moments`) happens once, after
the reduction.  Features come from a pluggable extractor: a registered name
(``"inception"``, ``"clip"``, …), any module/callable ``images -> (B, D)``, or none (the
inputs already are features).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torchmetrics import Metric

from cm3leon.eval.metrics.frechet import FrechetError, GaussianStats, SqrtMethod, frechet_distance

__all__ = ["FrechetDistance", "build_feature_extractor"]


def build_feature_extractor(
    extractor: str | Callable[[torch.Tensor], torch.Tensor],
    options: Mapping[str, Any] | None = None,
    *,
    registries: Any = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return a feature extractor: a registered name is built with ``options``."""
    if isinstance(extractor, str):
        if registries is None:
            from cm3leon.core.plugin_manager import get_registries

            registries = get_registries()
        return registries.feature_extractors.build(
            extractor, where="features", **dict(options or {})
        )
    if options:
        raise TypeError("extractor options are only used with a registered extractor name")
    if not callable(extractor):
        raise TypeError(
            f"feature extractor must be a name or a callable, got {type(extractor).__name__}"
        )
    return extractor


def _feature_dim(extractor: Any) -> int | None:
    for attr in ("num_features", "dim"):
        value = getattr(extractor, attr, None)
        if isinstance(value, int):
            return value
    return None


class FrechetDistance(Metric):
    """Fréchet distance between real and generated feature distributions (FID).

    Args:
        features: registered extractor name, a callable ``images -> (B, D)``, or ``None``
            when :meth:`update` receives features directly.
        num_features: feature dimension ``D``; required unless the extractor exposes
            ``num_features`` (or ``dim``).
        features_options: keyword options for a registered extractor (e.g. ``weights_path``).
        method: ``"eigh"`` or ``"sqrtm"`` (see :mod:`cm3leon.eval.metrics.frechet`).
        reference: fixed real-set statistics (e.g. a reference ``.npz``); then only generated
            samples are accumulated and ``update(..., real=True)`` is an error.
        reset_real_features: keep accumulated real statistics across :meth:`reset` when false.
        **kwargs: torchmetrics ``Metric`` options (``dist_sync_fn``, ``process_group``, ...).

    Example::

        fid = FrechetDistance(features="inception", features_options={"weights_path": w})
        fid.update(real_images, real=True)   # (B, 3, H, W) in [0, 1]
        fid.update(fake_images, real=False)
        fid.compute()                        # tensor(float64)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        features: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        num_features: int | None = None,
        features_options: Mapping[str, Any] | None = None,
        method: SqrtMethod = "eigh",
        reference: GaussianStats | None = None,
        reset_real_features: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.extractor = (
            None if features is None else build_feature_extractor(features, features_options)
        )
        dim = num_features if num_features is not None else _feature_dim(self.extractor)
        if reference is not None:
            dim = reference.dim if dim is None else dim
            if reference.dim != dim:
                raise FrechetError(
                    f"reference stats have dimension {reference.dim}, features {dim}"
                )
        if dim is None or dim < 1:
            raise ValueError(
                "FrechetDistance needs num_features (the extractor does not expose it)"
            )
        if method not in ("eigh", "sqrtm"):
            raise ValueError(f"method must be 'eigh' or 'sqrtm', got {method!r}")
        self.num_features = int(dim)
        self.method = method
        self.reference = reference
        self.reset_real_features = reset_real_features
        for prefix in ("real", "fake"):
            self.add_state(
                f"{prefix}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(
                f"{prefix}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(
                f"{prefix}_count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum"
            )

    def _features(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.extractor is not None:
            with torch.no_grad():
                inputs = self.extractor(inputs)
        feats = torch.as_tensor(inputs)
        if feats.ndim != 2 or feats.shape[1] != self.num_features:
            raise FrechetError(
                f"expected features of shape (B, {self.num_features}), got {tuple(feats.shape)}"
            )
        if not torch.isfinite(feats).all():
            raise FrechetError("features contain NaN or infinity")
        return feats.to(torch.float64)

    def update(self, inputs: torch.Tensor, real: bool) -> None:
        """Add a batch of images (or features ``(B, D)`` without extractor) to one set."""
        if real and self.reference is not None:
            raise ValueError(
                "this FrechetDistance has fixed reference stats; update only real=False"
            )
        feats = self._features(inputs)  # (B, D) float64
        prefix = "real" if real else "fake"
        setattr(self, f"{prefix}_sum", getattr(self, f"{prefix}_sum") + feats.sum(0))
        setattr(self, f"{prefix}_outer", getattr(self, f"{prefix}_outer") + feats.T @ feats)
        setattr(self, f"{prefix}_count", getattr(self, f"{prefix}_count") + feats.shape[0])

    def stats(self, real: bool, *, name: str | None = None) -> GaussianStats:
        """Gaussian fit of the accumulated real or generated set (after any rank reduction).

        ``name`` labels errors and warnings (default: "real set" / "generated set").
        """
        if real and self.reference is not None:
            return self.reference
        prefix = "real" if real else "fake"
        return GaussianStats.from_moments(
            getattr(self, f"{prefix}_sum").cpu().numpy(),
            getattr(self, f"{prefix}_outer").cpu().numpy(),
            int(getattr(self, f"{prefix}_count")),
            name=name or f"{'real' if real else 'generated'} set",
        )

    def compute(self) -> torch.Tensor:
        """The Fréchet distance (float64 scalar)."""
        value = frechet_distance(self.stats(real=True), self.stats(real=False), method=self.method)
        return torch.tensor(value, dtype=torch.float64)

    def reset(self) -> None:
        """Reset the generated set (and the real set unless ``reset_real_features=False``)."""
        if self.reset_real_features:
            super().reset()
            return
        kept = {k: getattr(self, k).clone() for k in ("real_sum", "real_outer", "real_count")}
        super().reset()
        for key, value in kept.items():
            setattr(self, key, value)
