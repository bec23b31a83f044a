"""Per-modality token accounting for batches of token ids (batched torch).

The same categories as :meth:`cm3leon.core.vocab.Vocabulary.count_modalities`:
``text`` and ``image`` ids, ``special`` ids other than ``<pad>``, and ``pad``.  Used for
throughput logging (text vs image tokens/s) and per-modality losses; everything stays
on the tensors' device, so counting never forces a host sync.
"""

from __future__ import annotations

import torch

from cm3leon.core.vocab import Vocabulary

__all__ = ["MODALITIES", "count_modality_tokens", "modality_masks"]

MODALITIES = ("text", "image", "special", "pad")


def modality_masks(
    ids: torch.Tensor, vocab: Vocabulary, *, attention_mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Boolean masks of each category, each shaped like ``ids``.

    Args:
        ids: integer tensor of global ids, any shape.
        vocab: the unified vocabulary the ids belong to.
        attention_mask: optional bool tensor like ``ids``; False positions count as ``pad``.

    Raises:
        ValueError: an id outside ``[0, vocab.size)`` (named with its index), or a
            mask of the wrong shape.

    The four masks partition the positions: each position is in exactly one.
    """
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"ids must be an integer tensor, got dtype {ids.dtype}")
    bad = (ids < 0) | (ids >= vocab.size)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"modality_masks: id {int(ids[where])} at index {where} out of range [0, {vocab.size})"
        )
    real = torch.ones_like(ids, dtype=torch.bool)
    if attention_mask is not None:
        if attention_mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} != ids shape {tuple(ids.shape)}"
            )
        real = attention_mask.bool()
    pad = (ids == vocab.pad_id) | ~real
    return {
        "text": vocab.is_text(ids) & real,
        "image": vocab.is_image(ids) & real,
        "special": vocab.is_special(ids) & ~pad,
        "pad": pad,
    }


def count_modality_tokens(
    ids: torch.Tensor,
    vocab: Vocabulary,
    *,
    attention_mask: torch.Tensor | None = None,
    per_row: bool = False,
) -> dict[str, torch.Tensor]:
    """How many text, image, special and pad tokens a batch holds.

    Args:
        ids: ``(B, T)`` (or any shape) global ids.
        vocab: the unified vocabulary.
        attention_mask: optional, False positions are counted as ``pad``.
        per_row: count per row of a 2-D batch (``(B,)`` tensors) instead of in total.

    Returns:
        ``{"text", "image", "special", "pad"}`` -> long tensors (0-d, or ``(B,)``).
    """
    if per_row and ids.ndim != 2:
        raise ValueError(f"per_row counting needs a (B, T) batch, got shape {tuple(ids.shape)}")
    masks = modality_masks(ids, vocab, attention_mask=attention_mask)
    if per_row:
        return {k: m.sum(dim=1) for k, m in masks.items()}
    return {k: m.sum() for k, m in masks.items()}
