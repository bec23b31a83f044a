"""Per-modality token accounting agrees with Vocabulary.count_modalities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cm3leon.core.model import count_modality_tokens, modality_masks
from cm3leon.core.vocab import Vocabulary

VOCAB = Vocabulary(text_size=50, image_size=30, num_sentinels=2)


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB.size, (4, 33), generator=g)


def test_totals_match_vocabulary_counts() -> None:
    ids = _batch()
    counts = count_modality_tokens(ids, VOCAB)
    expected = VOCAB.count_modalities(ids.numpy())
    assert {k: int(v) for k, v in counts.items()} == expected
    assert sum(int(v) for v in counts.values()) == ids.numel()


def test_hand_written_caption_image_row() -> None:
    v = VOCAB
    text = [v.text_offset + 3, v.text_offset + 7]
    image = [v.image_offset + c for c in (0, 5, 29)]
    row = [v.eos_id, *text, v.break_id, *image, v.break_id, v.pad_id, v.pad_id]
    ids = torch.tensor([row, [v.pad_id] * len(row)])
    per_row = count_modality_tokens(ids, v, per_row=True)
    assert per_row["text"].tolist() == [2, 0]
    assert per_row["image"].tolist() == [3, 0]
    assert per_row["special"].tolist() == [3, 0]  # <eos>, two <break>
    assert per_row["pad"].tolist() == [2, len(row)]


def test_attention_mask_counts_masked_positions_as_pad() -> None:
    ids = _batch()
    mask = torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) > 0.3
    masks = modality_masks(ids, VOCAB, attention_mask=mask)
    stacked = torch.stack(list(masks.values())).long()
    assert torch.equal(stacked.sum(0), torch.ones_like(ids))  # a partition
    kept = ids[mask].numpy()
    counts = count_modality_tokens(ids, VOCAB, attention_mask=mask)
    expected = VOCAB.count_modalities(kept)
    assert int(counts["text"]) == expected["text"]
    assert int(counts["image"]) == expected["image"]
    assert int(counts["pad"]) == expected["pad"] + int((~mask).sum())


def test_out_of_range_id_is_named() -> None:
    ids = torch.zeros(2, 5, dtype=torch.long)
    ids[1, 3] = VOCAB.size
    with pytest.raises(ValueError, match=rf"id {VOCAB.size} at index \(1, 3\) out of range"):
        count_modality_tokens(ids, VOCAB)
    with pytest.raises(TypeError, match="integer tensor"):
        count_modality_tokens(torch.from_numpy(np.zeros((2, 2))), VOCAB)
