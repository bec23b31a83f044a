"""Shared helpers for the model tests."""

from __future__ import annotations

import torch

from cm3leon.core.model import CM3LeonTransformer, cm3leon_tiny

VOCAB = 97


def random_model(
    *, dtype: torch.dtype = torch.float64, seed: int = 0, **overrides: object
) -> CM3LeonTransformer:
    """A tiny model whose weights are all non-zero random numbers.

    §2.3's init zeroes every output projection, which would make each block the
    identity and equivalence tests vacuous; these weights exercise every path.
    """
    torch.manual_seed(seed)
    model = cm3leon_tiny(vocab_size=VOCAB, **overrides).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def random_ids(batch: int, length: int, *, seed: int = 1, vocab: int = VOCAB) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


def left_pad_mask(lengths: list[int], total: int) -> torch.Tensor:
    """``(B, total)`` bool mask, row ``i`` holding ``lengths[i]`` real tokens at the right."""
    idx = torch.arange(total)[None, :]
    return idx >= total - torch.tensor(lengths)[:, None]
