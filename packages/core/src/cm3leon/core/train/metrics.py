"""Per-modality loss and perplexity as torchmetrics, correct across ranks.

CM3Leon's loss is plain next-token prediction over one stream that mixes text and
image tokens; the two halves learn at very different speeds (image tokens are many and
hard, text tokens few and easy), so the trainer reports them separately.  The
*modality of a target* is the block of the unified vocabulary its label falls in:
``text``, ``image`` or ``special`` (``<eos>``, ``<break>``, CM3 sentinels); ``all``
counts every non-ignored target.

Each metric keeps two sums (``sum_loss``, ``count``) with ``dist_reduce_fx="sum"``, so
``compute()`` after a torchmetrics sync is the exact token-mean over every rank's
tokens, not a mean of per-rank means.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics import Metric

from cm3leon.core.vocab import Vocabulary

__all__ = ["MODALITY_GROUPS", "ModalityCrossEntropy", "ModalityPerplexity", "target_mask"]

ModalityGroup = Literal["all", "text", "image", "special"]
MODALITY_GROUPS: tuple[ModalityGroup, ...] = ("all", "text", "image", "special")


def target_mask(labels: torch.Tensor, vocab: Vocabulary, group: str, ignore_index: int) -> torch.Tensor:
    """Bool mask ``like labels`` of the targets that belong to ``group``.

    Ignored targets (``ignore_index``) and ``<pad>`` targets are never included.
    """
    valid = (labels != ignore_index) & (labels != vocab.pad_id)
    if group == "all":
        return valid
    if group == "text":
        return valid & vocab.is_text(labels)
    if group == "image":
        return valid & vocab.is_image(labels)
    if group == "special":
        return valid & vocab.is_special(labels)
    raise ValueError(f"unknown modality group {group!r}; expected one of {list(MODALITY_GROUPS)}")


class ModalityCrossEntropy(Metric):
    """Mean next-token cross-entropy (nats) over the targets of one modality group.

    Args:
        vocab: the unified vocabulary (decides which ids are text / image / special).
        group: ``"all"``, ``"text"``, ``"image"`` or ``"special"``.
        ignore_index: label value of positions without a target (padding).

    ``update(token_loss, labels)`` takes the per-token losses ``(B, T)`` the model's loss
    already computed and the labels ``(B, T)``; nothing is recomputed over the vocabulary.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, vocab: Vocabulary, group: ModalityGroup = "all", *, ignore_index: int = -100) -> None:
        super().__init__()
        if group not in MODALITY_GROUPS:
            raise ValueError(f"unknown modality group {group!r}; expected one of {list(MODALITY_GROUPS)}")
        self.vocab = vocab
        self.group = group
        self.ignore_index = ignore_index
        self.add_state("sum_loss", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, token_loss: torch.Tensor, labels: torch.Tensor) -> None:  # type: ignore[override]
        if token_loss.shape != labels.shape:
            raise ValueError(
                f"token_loss shape {tuple(token_loss.shape)} != labels shape {tuple(labels.shape)}"
            )
        mask = target_mask(labels, self.vocab, self.group, self.ignore_index)
        self.sum_loss += token_loss.detach().double()[mask].sum()
        self.count += mask.sum()

    def compute(self) -> torch.Tensor:
        # An empty group (e.g. no image targets in a text-only SFT batch) is NaN, not 0:
        # a zero would read as a perfect model in the curves.
        if int(self.count) == 0:
            return torch.tensor(float("nan"))
        return (self.sum_loss / self.count).float()


class ModalityPerplexity(ModalityCrossEntropy):
    """``exp`` of :class:`ModalityCrossEntropy` (perplexity per target token)."""

    def compute(self) -> torch.Tensor:
        return torch.exp(super().compute())
