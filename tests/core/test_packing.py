"""Packing: rows, labels, document ids, position resets, overflow policies, accounting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cm3leon.core.packing import (
    IGNORE_INDEX,
    PackedIterableDataset,
    PackingCollator,
    StreamingPacker,
    pack,
    raw_samples_in_batch,
    token_accounting,
)
from cm3leon.core.vocab import Vocabulary

VOCAB = Vocabulary(text_size=256, image_size=16, num_sentinels=4)
EOS, PAD, BRK = VOCAB.eos_id, VOCAB.pad_id, VOCAB.break_id


def example(n_text: int, n_image: int = 0, start: int = 0) -> np.ndarray:
    text = VOCAB.text_to_global((np.arange(n_text) + start) % 256)
    parts = [[EOS], text]
    if n_image:
        parts += [[BRK], VOCAB.image_to_global(np.arange(n_image) % 16), [BRK]]
    return np.concatenate(parts).astype(np.int64)


def test_rows_labels_doc_ids_positions() -> None:
    a, b = example(3), example(2, start=50)  # lengths 4 and 3
    rows = pack([a, b], 10)
    assert rows.input_ids.tolist() == [[*a, *b, PAD, PAD, PAD]]
    assert rows.labels.tolist() == [[*a[1:], EOS, *b[1:], EOS, *[IGNORE_INDEX] * 3]]
    assert rows.doc_ids.tolist() == [[0, 0, 0, 0, 1, 1, 1, 2, 2, 2]]
    assert rows.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 2]]
    assert rows.loss_weights.tolist() == [[1.0] * 7 + [0.0] * 3]
    assert rows.num_examples.tolist() == [2] and rows.stats.pad_tokens == 3


def test_greedy_keeps_order_and_opens_rows() -> None:
    seqs = [example(5), example(2), example(6), example(1)]  # lengths 6, 3, 7, 2
    rows = pack(seqs, 9)
    assert rows.num_examples.tolist() == [2, 2]  # [6+3], [7+2]
    ffd = pack(seqs, 10, strategy="ffd")
    assert ffd.input_ids.shape[0] == 2 and ffd.stats.packed == 4


def test_overflow_truncate_keeps_the_true_next_token() -> None:
    long = example(9)  # 10 tokens
    rows = pack([long, example(1)], 6)
    assert rows.stats.truncated == 1 and rows.num_truncated.tolist() == [1, 0]
    assert rows.input_ids[0].tolist() == long[:6].tolist()
    assert rows.labels[0].tolist() == long[1:7].tolist()  # last label: token 6, not <eos>
    dropped = pack([long, example(1)], 6, overflow="drop")
    assert dropped.stats.dropped_long == 1 and dropped.input_ids.shape[0] == 1


def test_fixed_rows_drop_and_count_what_does_not_fit() -> None:
    rows = pack([example(4)] * 5, 10, num_rows=2, strategy="ffd")  # 5 tokens each, 2 per row
    assert rows.input_ids.shape == (2, 10) and rows.stats.dropped_no_room == 1
    padded = pack([example(1)], 10, num_rows=3)
    assert padded.input_ids.shape == (3, 10) and padded.num_examples.tolist() == [1, 0, 0]
    assert (padded.labels[1:] == IGNORE_INDEX).all()


def test_loss_weights_are_label_weights() -> None:
    tokens = example(3)
    weights = np.array([1.0, 1.0, 2.0, 3.0], np.float32)
    rows = pack([{"tokens": tokens, "loss_weights": weights}], 6)
    assert rows.loss_weights[0].tolist() == [1.0, 2.0, 3.0, 3.0, 0.0, 0.0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=20), st.integers(4, 16))
def test_streaming_packer_matches_greedy_pack(lengths, seq_len) -> None:
    seqs = [example(n - 1, start=i) for i, n in enumerate(lengths)]
    packer = StreamingPacker(seq_len)
    rows = [r for s in seqs for r in packer.add(s)] + packer.flush()
    reference = pack(seqs, seq_len)
    assert np.array_equal(np.stack([r["input_ids"] for r in rows]), reference.input_ids)
    assert np.array_equal(np.stack([r["labels"] for r in rows]), reference.labels)
    assert np.array_equal(np.stack([r["position_ids"] for r in rows]), reference.position_ids)
    assert packer.stats.truncated == reference.stats.truncated
    # Invariants: every example starts at position 0 with a fresh doc id; rows never leak.
    for row in reference.as_dict()["doc_ids"]:
        assert (np.diff(row) >= 0).all()
    starts = reference.position_ids == 0
    assert (reference.input_ids[starts & (reference.input_ids != PAD)] == EOS).all()


def test_collator_counts_and_accounting() -> None:
    batch = [{"tokens": example(3, 4)}, {"tokens": example(30)}, {"tokens": example(2)}]
    out = PackingCollator(16, VOCAB, num_rows=2)(batch)
    assert out["input_ids"].shape == (2, 16) and out["input_ids"].dtype == torch.int64
    assert raw_samples_in_batch(out) == 3
    assert int(out["num_truncated"].sum()) == 1 and int(out["num_dropped"].sum()) == 0
    acc = token_accounting(out["input_ids"], VOCAB)
    assert acc == {k: int(out[f"num_{k}_tokens"].sum()) for k in ("text", "image", "special", "pad")}
    expected_text = 3 + 15 + 2  # the 31-token example is cut to 16 (eos + 15 text)
    assert acc["text"] == expected_text and acc["image"] == 4
    assert acc["text"] + acc["image"] + acc["special"] + acc["pad"] == out["input_ids"].numel()
    dropped = PackingCollator(16, VOCAB, overflow="drop")(batch)
    assert raw_samples_in_batch(dropped) == 3 and int(dropped["num_dropped"].sum()) == 1


def test_packed_iterable_dataset_streams_rows() -> None:
    ds = PackedIterableDataset([example(3), example(3), example(3)], 9, vocab=VOCAB)
    rows = list(ds)
    assert len(rows) == 2 and rows[0]["input_ids"].shape == (9,)
    assert int(rows[0]["num_examples"]) == 2


def test_bad_input_names_the_example() -> None:
    with pytest.raises(ValueError, match=f"pack: example 1: token id {VOCAB.size} at position 2 out of range"):
        pack([example(2), np.array([EOS, 30, VOCAB.size])], 8, vocab=VOCAB)
    with pytest.raises(ValueError, match="pack: example 0 is empty"):
        pack([np.array([], dtype=np.int64)], 8)
    with pytest.raises(ValueError, match="overflow"):
        pack([example(2)], 8, overflow="wrap")
    with pytest.raises(ValueError, match="loss_weights shape"):
        pack([(example(2), np.ones(2))], 8)


def _toy_attention(ids: torch.Tensor, positions: torch.Tensor, doc_ids: torch.Tensor) -> torch.Tensor:
    """One causal self-attention layer with learned-style absolute positions and doc masks."""
    gen = torch.Generator().manual_seed(0)
    tok_emb = torch.randn(VOCAB.size, 8, generator=gen)
    pos_emb = torch.randn(32, 8, generator=gen)
    wq, wk, wv = (torch.randn(8, 8, generator=gen) for _ in range(3))
    x = tok_emb[ids] + pos_emb[positions]  # (B, T, 8)
    t = ids.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    mask = causal & (doc_ids[:, :, None] == doc_ids[:, None, :])  # (B, T, T)
    return F.scaled_dot_product_attention(x @ wq, x @ wk, x @ wv, attn_mask=mask)


def test_doc_masks_and_position_resets_make_packing_invisible() -> None:
    """A packed example computes exactly what it computes alone (the docstring's claim)."""
    seqs = [example(4), example(2, 4), example(5, start=9)]
    rows = pack(seqs, 32)
    packed = _toy_attention(*(torch.as_tensor(getattr(rows, k)) for k in ("input_ids", "position_ids", "doc_ids")))
    cursor = 0
    for s in seqs:
        alone = pack([s], len(s))
        ref = _toy_attention(*(torch.as_tensor(getattr(alone, k)) for k in ("input_ids", "position_ids", "doc_ids")))
        torch.testing.assert_close(packed[0, cursor : cursor + len(s)], ref[0], rtol=1e-5, atol=1e-6)
        cursor += len(s)
    assert torch.isfinite(packed).all()  # the padding run attends to itself: no NaN rows
    # Without resets the same example would see different positions: the outputs differ.
    shifted = torch.as_tensor(rows.position_ids).clone()
    shifted[0, : cursor] = torch.arange(cursor)
    leaky = _toy_attention(torch.as_tensor(rows.input_ids), shifted, torch.as_tensor(rows.doc_ids))
    assert not torch.allclose(leaky[0, len(seqs[0]) : cursor], packed[0, len(seqs[0]) : cursor])


def test_position_ids_agree_with_the_model_convention() -> None:
    from cm3leon.core.model import positions_from_doc_ids

    out = PackingCollator(20, VOCAB)([{"tokens": example(n)} for n in (3, 7, 2, 11, 5)])
    assert torch.equal(positions_from_doc_ids(out["doc_ids"]), out["position_ids"])
