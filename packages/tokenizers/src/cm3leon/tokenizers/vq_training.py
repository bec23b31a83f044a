"""Composer pieces for VQ-GAN training: the ComposerModel and the dead-code restart callback.

The loop is Composer's; per step it runs::

    forward   : pixels (B, 3, H, W) -> VQModel -> reconstruction, codes, losses;
                (training) fold the batch's code histogram into an EMA usage count
    loss      : total = l1 * |x - x^| + l2 * (x - x^)^2 + codebook_weight * ||sg[z] - e||^2
                        + beta * ||z - sg[e]||^2          (beta in the VQ config)
    metrics   : PSNR, codebook usage, codebook perplexity (torchmetrics, per step)
    BATCH_END : every ``every`` steps, codes whose EMA count is below ``threshold`` are
                re-initialised to encoder outputs of the batch (DeadCodeRestart)

The usage EMA is a persistent buffer of the ComposerModel (not of the VQModel), so
Composer checkpoints carry it for resumption while the exported ``VQModel`` keeps the
Chameleon-compatible ``state_dict``.

With ``cpu_autocast`` (``image.precision: amp_bf16`` on the CPU) the encoder and decoder
run under ``torch.autocast("cpu", dtype=torch.bfloat16)``; the quantizer's nearest-code
search always runs in fp32, and the losses and metrics are computed in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from composer.core import Callback, Event, State
from composer.loggers import Logger
from composer.models import ComposerModel
from torchmetrics import Metric

from cm3leon.tokenizers.metrics import CodebookPerplexity, CodebookUsage, reconstruction_psnr
from cm3leon.tokenizers.vqgan import VQModel, VQOutput

__all__ = ["DeadCodeRestart", "LossWeights", "VQGANComposerModel", "pixels_of"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the reconstruction and codebook terms (commitment uses the VQ ``beta``)."""

    l1: float = 1.0
    l2: float = 0.0
    codebook: float = 1.0

    def __post_init__(self) -> None:
        if min(self.l1, self.l2, self.codebook) < 0 or self.l1 + self.l2 <= 0:
            raise ValueError(f"loss weights must be >= 0 with l1 + l2 > 0, got {self}")


def pixels_of(batch: Any) -> torch.Tensor:
    """The pixel tensor of a batch: the batch itself, its first item, or ``batch['pixels']``."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        return batch["pixels"]
    if isinstance(batch, (list, tuple)):
        return batch[0]
    raise TypeError(f"unsupported batch type {type(batch).__name__}")


class VQGANComposerModel(ComposerModel):
    """Composer wrapper of a :class:`VQModel` for reconstruction training.

    Args:
        model: the VQ-GAN to train.
        weights: loss weights.
        usage_decay: decay of the per-code EMA usage count (for dead-code restarts).
        cpu_autocast: run the forward pass under CPU bf16 autocast (weights stay fp32).
    """

    def __init__(self, model: VQModel, *, weights: LossWeights | None = None, usage_decay: float = 0.99,
                 cpu_autocast: bool = False) -> None:
        super().__init__()
        self.model = model
        self.cpu_autocast = cpu_autocast
        self.weights = weights or LossWeights()
        self.usage_decay = usage_decay
        k = model.config.codebook_size
        # EMA of how often each code is chosen per step; DeadCodeRestart waits ``warmup`` steps.
        self.register_buffer("code_usage", torch.zeros(k, dtype=torch.float32))
        self.register_buffer("usage_steps", torch.zeros((), dtype=torch.long))
        self.last_latents: torch.Tensor | None = None
        self.train_metrics = self._metrics()

    def _metrics(self) -> dict[str, Metric]:
        k = self.model.config.codebook_size
        return {
            "PSNR": reconstruction_psnr(),
            "CodebookUsage": CodebookUsage(k),
            "CodebookPerplexity": CodebookPerplexity(k),
        }

    def forward(self, batch: Any) -> VQOutput:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_autocast):
            out = self.model(pixels_of(batch))  # reconstruction bf16 under CPU autocast
        if out.reconstruction.dtype in (torch.bfloat16, torch.float16):
            out = out._replace(reconstruction=out.reconstruction.float())
        if self.training:
            self._track_usage(out.codes)
            self.last_latents = out.latents.detach()
        return out

    @torch.no_grad()
    def _track_usage(self, codes: torch.Tensor) -> None:
        k = self.model.config.codebook_size
        counts = torch.bincount(codes.reshape(-1), minlength=k)[:k].to(self.code_usage.dtype)
        self.code_usage.mul_(self.usage_decay).add_(counts, alpha=1.0 - self.usage_decay)
        self.usage_steps += 1

    def loss(self, outputs: VQOutput, batch: Any) -> dict[str, torch.Tensor]:
        target = pixels_of(batch)
        rec = outputs.reconstruction
        losses: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=rec.device)
        if self.weights.l1:
            losses["l1"] = F.l1_loss(rec, target)
            total = total + self.weights.l1 * losses["l1"]
        if self.weights.l2:
            losses["l2"] = F.mse_loss(rec, target)
            total = total + self.weights.l2 * losses["l2"]
        losses["codebook"] = outputs.codebook_loss
        losses["commitment"] = outputs.commitment_loss
        losses["total"] = total + self.weights.codebook * outputs.codebook_loss + outputs.commitment_loss
        return losses

    def eval_forward(self, batch: Any, outputs: Any | None = None) -> VQOutput:
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        return self.train_metrics if is_train else self._metrics()

    def update_metric(self, batch: Any, outputs: VQOutput, metric: Metric) -> None:
        if isinstance(metric, (CodebookUsage, CodebookPerplexity)):
            metric.update(outputs.codes)
        else:
            metric.update(outputs.reconstruction.detach().clamp(-1.0, 1.0), pixels_of(batch))

    @torch.no_grad()
    def restart_dead_codes(self, threshold: float) -> int:
        """Restart codes whose EMA usage is below ``threshold`` from the last batch's latents."""
        if self.last_latents is None:
            return 0
        dead = self.code_usage < threshold
        n = self.model.quantize.restart_codes(dead, self.last_latents)
        # Give restarted codes a fresh "expected" count so they are not restarted again at once.
        if n:
            self.code_usage[dead] = threshold * 4
        return n


class DeadCodeRestart(Callback):
    """Every ``every`` steps, re-initialise codes used less than ``threshold`` times per step (EMA).

    Args:
        every: restart period in optimizer steps.
        threshold: EMA count (codes per step) below which a code counts as dead.
        warmup: no restarts before this many steps (the EMA needs history).
    """

    def __init__(self, every: int = 25, threshold: float = 0.03, warmup: int = 25) -> None:
        if every < 1 or threshold < 0 or warmup < 0:
            raise ValueError(f"DeadCodeRestart: bad settings every={every}, threshold={threshold}, warmup={warmup}")
        self.every, self.threshold, self.warmup = every, threshold, warmup
        self.total_restarted = 0

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event != Event.BATCH_END:
            return
        step = int(state.timestamp.batch)
        model = state.model.module if hasattr(state.model, "module") else state.model
        if not isinstance(model, VQGANComposerModel):
            raise TypeError(f"DeadCodeRestart needs a VQGANComposerModel, got {type(model).__name__}")
        k = model.model.config.codebook_size
        metrics = {"codebook/ema_usage": float((model.code_usage >= self.threshold).float().mean())}
        if step >= self.warmup and step % self.every == 0:
            n = model.restart_dead_codes(self.threshold)
            self.total_restarted += n
            metrics["codebook/restarted"] = float(n)
            metrics["codebook/restarted_fraction"] = n / k
        logger.log_metrics(metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"total_restarted": self.total_restarted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total_restarted = int(state.get("total_restarted", 0))
