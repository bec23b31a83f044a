"""torchmetrics ``Metric``s of image-tokenizer training: codebook usage and perplexity.

Both accumulate a histogram of code counts (``dist_reduce_fx="sum"``), so values
are exact across ranks.  Reconstruction PSNR uses torchmetrics'
``PeakSignalNoiseRatio`` directly (see :func:`reconstruction_psnr`).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.image import PeakSignalNoiseRatio

__all__ = ["CodebookPerplexity", "CodebookUsage", "code_histogram", "reconstruction_psnr"]


def code_histogram(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Counts of each code in ``codes`` (any shape) -> ``(codebook_size,)`` float."""
    flat = codes.reshape(-1).long()
    return torch.bincount(flat, minlength=codebook_size).to(torch.float64)[:codebook_size]


def reconstruction_psnr() -> PeakSignalNoiseRatio:
    """PSNR of reconstructions in ``[-1, 1]`` (data range 2, i.e. PSNR on ``[0, 1]`` images)."""
    return PeakSignalNoiseRatio(data_range=2.0)


class _CodeCounts(Metric):
    full_state_update = False
    higher_is_better = True

    def __init__(self, codebook_size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
        self.codebook_size = codebook_size
        self.add_state("counts", default=torch.zeros(codebook_size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, codes: torch.Tensor) -> None:
        """Add the codes of a batch (any shape, int)."""
        self.counts += code_histogram(codes.detach(), self.codebook_size).to(self.counts.device)


class CodebookUsage(_CodeCounts):
    """Fraction of the codebook used at least once in the accumulated codes (0..1)."""

    def compute(self) -> torch.Tensor:
        return (self.counts > 0).to(torch.float32).mean()


class CodebookPerplexity(_CodeCounts):
    """``exp(entropy)`` of the code distribution: 1 (collapse) .. ``codebook_size`` (uniform)."""

    def compute(self) -> torch.Tensor:
        total = self.counts.sum()
        if total <= 0:
            return torch.tensor(0.0)
        p = self.counts / total
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return entropy.exp().to(torch.float32)
