"""The Composer wrapper around :class:`CM3LeonTransformer`: CM3 loss, metrics, FLOPs.

A batch is what :class:`cm3leon.core.packing.PackingCollator` produces (every tensor
``(B, T)`` unless noted)::

    input_ids      int64   packed examples, <pad> after the last one
    labels         int64   next token within the example, IGNORE_INDEX (-100) on padding
    loss_weights   float32 per-label weight (1.0; RA-CM3 query up-weighting if enabled)
    doc_ids        int64   example index within the row (block-diagonal attention)
    position_ids   int64   restart at 0 for every example
    num_*          (B,)    counters (examples, dropped, tokens per modality) -- ignored here

The loss is the CM3 objective's plain next-token cross-entropy over the whole
transformed sequence (§2.2), averaged over real targets: labels equal to
``IGNORE_INDEX`` or to ``<pad>`` never count.  With ``use_loss_weights`` the average
is weighted, ``sum(w * ce) / sum(w)`` (RA-CM3's optional query up-weighting; CM3Leon
itself trains with all weights 1, where this is the plain mean).

Precision: with ``cpu_autocast`` the forward pass runs under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (Composer's ``amp_bf16`` autocasts on
CUDA only; see :mod:`cm3leon.core.precision`); the loss is computed from fp32 logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from composer.models import ComposerModel
from torchmetrics import Metric

from cm3leon.core.model import CM3LeonTransformer, TransformerConfig
from cm3leon.core.packing import IGNORE_INDEX
from cm3leon.core.train.metrics import MODALITY_GROUPS, ModalityCrossEntropy, ModalityPerplexity
from cm3leon.core.vocab import Vocabulary

__all__ = ["CM3LeonComposerModel", "REQUIRED_BATCH_KEYS", "flops_per_token", "loss_generating_tokens"]

REQUIRED_BATCH_KEYS = ("input_ids", "labels")


def flops_per_token(config: TransformerConfig, seq_len: int) -> float:
    """Training FLOPs per token of one forward+backward pass at sequence length ``seq_len``.

    ``6 N`` for the matmul parameters (PaLM / Chinchilla convention: 2 forward + 4 backward
    per multiply-accumulate) plus ``12 L d T`` for the two attention products ``Q K^T`` and
    ``A V`` over the full ``T x T`` score matrix, which is what SDPA computes with an
    explicit document mask.  ``N`` counts every weight that multiplies an activation: the
    blocks and the output projection (the tied token embedding), not the position table
    (a lookup).  Computed from the config, so it is right under FSDP sharding too.
    """
    d, f = config.d_model, config.d_ff
    blocks = config.n_layers * (4 * d * d + 2 * d * f)  # qkv + out, fc1 + fc2
    head = config.vocab_size * d
    return 6.0 * (blocks + head) + 12.0 * config.n_layers * d * seq_len


def loss_generating_tokens(batch: Mapping[str, Any]) -> int:
    """Number of targets that carry loss in ``batch`` (labels that are not ignored)."""
    labels = batch["labels"]
    return int((labels != IGNORE_INDEX).sum())


class CM3LeonComposerModel(ComposerModel):
    """:class:`composer.models.ComposerModel` for CM3 next-token training.

    Args:
        model: the core transformer (any registered builder's output).
        vocab: the unified vocabulary of the training data (its size must equal the
            model's ``vocab_size``).
        use_loss_weights: weight each target by ``batch["loss_weights"]`` when present.
        train_metrics: compute the per-modality metrics on training batches.
        fsdp_wrap_blocks / activation_checkpointing: mark each transformer block as an
            FSDP unit / for activation checkpointing (read by Composer's FSDP wrapper).
        cpu_autocast: run the forward pass under CPU bf16 autocast (``precision:
            amp_bf16`` on the CPU); weights and gradients stay fp32.

    Raises:
        ValueError: vocabulary and model disagree on the number of ids.
    """

    def __init__(
        self,
        model: CM3LeonTransformer,
        vocab: Vocabulary,
        *,
        use_loss_weights: bool = True,
        train_metrics: bool = True,
        fsdp_wrap_blocks: bool = True,
        activation_checkpointing: bool = False,
        cpu_autocast: bool = False,
    ) -> None:
        super().__init__()
        if model.config.vocab_size != vocab.size:
            raise ValueError(
                f"model vocab_size {model.config.vocab_size} != vocabulary size {vocab.size} "
                f"(text {vocab.text_size}, image {vocab.image_size}); build the model with "
                "vocab_size=vocab.size"
            )
        self.model = model
        self.config = model.config
        self.vocab = vocab
        self.use_loss_weights = use_loss_weights
        self._train_metrics = train_metrics
        self.cpu_autocast = cpu_autocast
        for block in model.blocks:
            # Composer's FSDP auto-wrap policy reads these module attributes.
            block._fsdp_wrap = fsdp_wrap_blocks
            block._activation_checkpointing = activation_checkpointing

    # ----------------------------------------------------------------- compute
    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits ``(B, T, V)`` of the packed batch, as ``{"logits": ...}``."""
        missing = [k for k in REQUIRED_BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"batch lacks {missing}; got keys {sorted(batch)}")
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_autocast)
        with autocast:
            logits = self.model(
                batch["input_ids"],
                position_ids=batch.get("position_ids"),
                doc_ids=batch.get("doc_ids"),
            )  # (B, T, V), bf16 under CPU autocast
        return {"logits": logits}

    def loss(self, outputs: dict[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
             *args: Any, **kwargs: Any) -> torch.Tensor:
        """Mean (or weighted mean) next-token cross-entropy over the real targets.

        The per-token losses are kept in ``outputs["token_loss"]`` (detached) so the
        metrics reuse them instead of recomputing a softmax over the vocabulary.
        """
        logits, labels = outputs["logits"], batch["labels"]
        B, T, V = logits.shape
        if labels.shape != (B, T):
            raise ValueError(f"labels shape {tuple(labels.shape)} != logits batch shape {(B, T)}")
        labels = labels.masked_fill(labels == self.vocab.pad_id, IGNORE_INDEX)
        token_loss = F.cross_entropy(
            logits.float().view(B * T, V), labels.view(B * T), ignore_index=IGNORE_INDEX,
            reduction="none",
        ).view(B, T)  # (B, T), 0 where ignored
        valid = (labels != IGNORE_INDEX).to(token_loss.dtype)  # (B, T)
        weights = valid
        if self.use_loss_weights and "loss_weights" in batch:
            weights = batch["loss_weights"].to(token_loss.dtype) * valid
        outputs["token_loss"] = token_loss.detach()
        # clamp: a batch with no target at all gives loss 0, not 0/0.
        return (token_loss * weights).sum() / weights.sum().clamp(min=1e-12)

    def eval_forward(self, batch: Mapping[str, torch.Tensor], outputs: Any = None) -> dict[str, torch.Tensor]:
        if outputs is not None and "token_loss" in outputs:
            return outputs
        outputs = self.forward(batch) if outputs is None else outputs
        self.loss(outputs, batch)
        return outputs

    # ----------------------------------------------------------------- metrics
    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        if is_train and not self._train_metrics:
            return {}
        metrics: dict[str, Metric] = {}
        for group in MODALITY_GROUPS:
            metrics[f"loss_{group}"] = ModalityCrossEntropy(self.vocab, group, ignore_index=IGNORE_INDEX)
            metrics[f"perplexity_{group}"] = ModalityPerplexity(self.vocab, group, ignore_index=IGNORE_INDEX)
        return metrics

    def update_metric(self, batch: Mapping[str, torch.Tensor], outputs: Any, metric: Metric) -> None:
        if "token_loss" not in outputs:
            outputs = self.eval_forward(batch, outputs)
        metric.update(outputs["token_loss"], batch["labels"])

    # ------------------------------------------------------------------- FLOPs
    def flops_per_batch(self, batch: Mapping[str, torch.Tensor]) -> float:
        """Training FLOPs of ``batch`` on this rank (read by Composer's ``SpeedMonitor``)."""
        B, T = batch["input_ids"].shape
        return flops_per_token(self.config, T) * B * T
