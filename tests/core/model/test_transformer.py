"""The §2.3 architecture, the forward API, packing masks and input validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cm3leon.core.model import (
    CM3LeonTransformer,
    cm3leon_tiny,
    positions_from_doc_ids,
    positions_from_mask,
)
from tests.core.model._helpers import VOCAB, left_pad_mask, random_ids, random_model


# ------------------------------------------------------------------ architecture
def test_no_biases_no_norm_parameters_no_dropout() -> None:
    model = cm3leon_tiny(vocab_size=VOCAB, tie_embeddings=False)
    names = {n for n, _ in model.named_parameters()}
    assert not [n for n in names if "bias" in n]
    assert not [m for m in model.modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.Dropout))]
    per_block = {n.split(".", 2)[2] for n in names if n.startswith("blocks.")}
    assert per_block == {"attn.qkv.weight", "attn.out.weight", "mlp.fc1.weight", "mlp.fc2.weight"}
    assert names - {n for n in names if n.startswith("blocks.")} == {
        "tok_emb.weight",
        "pos_emb.weight",
        "head.weight",
    }


def test_initialisation_follows_section_2_3() -> None:
    torch.manual_seed(0)
    model = cm3leon_tiny(vocab_size=4000, d_model=128, d_ff=512, tie_embeddings=False)
    std, pos_std = model.config.init_std, model.config.pos_init_std
    for name, w in [("tok_emb", model.tok_emb.weight), ("qkv", model.blocks[0].attn.qkv.weight),
                    ("fc1", model.blocks[1].mlp.fc1.weight)]:
        assert w.abs().max() <= 3 * std, name  # truncated at 3 std
        # a normal truncated at +-3 sigma has std 0.9866 sigma
        assert w.std().item() == pytest.approx(0.9866 * std, rel=0.03), name
    pos = model.pos_emb.weight
    assert pos.abs().max() <= 3 * pos_std
    assert pos.std().item() == pytest.approx(0.9866 * pos_std, rel=0.05)
    for block in model.blocks:  # output layers are zero
        assert torch.count_nonzero(block.attn.out.weight) == 0
        assert torch.count_nonzero(block.mlp.fc2.weight) == 0
    assert torch.count_nonzero(model.head.weight) == 0


def test_untied_zero_head_gives_uniform_first_loss() -> None:
    model = cm3leon_tiny(vocab_size=VOCAB, tie_embeddings=False)
    ids = random_ids(2, 16)
    logits = model(ids)
    loss = F.cross_entropy(logits.flatten(0, 1), ids.flatten())
    assert loss.item() == pytest.approx(math.log(VOCAB), abs=1e-6)


def test_tied_head_is_the_embedding() -> None:
    model = cm3leon_tiny(vocab_size=VOCAB)
    assert model.head is None
    h = torch.randn(3, 64)
    assert torch.equal(model.logits(h), h @ model.tok_emb.weight.T)


def test_block_is_pre_ln_relu_attention_mlp() -> None:
    """Recompute one block by hand from its weights, with an explicit causal softmax."""
    model = random_model(n_layers=1)
    ids = random_ids(2, 9)
    D, H = model.config.d_model, model.config.n_heads
    x = model.tok_emb(ids) + model.pos_emb.weight[:9]

    def ln(t: torch.Tensor) -> torch.Tensor:
        return (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + 1e-5)

    blk = model.blocks[0]
    q, k, v = (ln(x) @ blk.attn.qkv.weight.T).split(D, dim=-1)
    q, k, v = (t.view(2, 9, H, D // H).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    scores = scores.masked_fill(torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf"))
    att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 9, D)
    x = x + att @ blk.attn.out.weight.T
    x = x + torch.relu(ln(x) @ blk.mlp.fc1.weight.T) @ blk.mlp.fc2.weight.T
    expected = ln(x) @ model.tok_emb.weight.T
    torch.testing.assert_close(model(ids), expected, rtol=0, atol=1e-10)


def test_return_hidden_and_backward() -> None:
    model = random_model(dtype=torch.float32)
    ids = random_ids(2, 12)
    logits, hidden = model(ids, return_hidden=True)
    assert logits.shape == (2, 12, VOCAB) and hidden.shape == (2, 12, 64)
    torch.testing.assert_close(model.logits(hidden), logits)
    F.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# ------------------------------------------------------------------ packing
def test_positions_from_doc_ids() -> None:
    doc = torch.tensor([[7, 7, 7, 9, 9, 4], [0, 1, 1, 1, 1, 1]])
    assert positions_from_doc_ids(doc).tolist() == [[0, 1, 2, 0, 1, 0], [0, 0, 1, 2, 3, 4]]


def test_positions_from_mask() -> None:
    mask = torch.tensor([[False, False, True, True, True], [True] * 5])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_packed_documents_do_not_leak() -> None:
    """A packed row gives each document exactly the logits it has alone."""
    model = random_model()
    lengths = [5, 9, 2, 8]
    docs = [random_ids(1, n, seed=10 + i) for i, n in enumerate(lengths)]
    packed = torch.cat(docs, dim=1)
    doc_ids = torch.cat([torch.full((1, n), i) for i, n in enumerate(lengths)], dim=1)
    logits = model(packed, doc_ids=doc_ids)  # positions default to restarting per document
    alone = torch.cat([model(d) for d in docs], dim=1)
    torch.testing.assert_close(logits, alone, rtol=0, atol=1e-12)
    # Without the document mask the later documents do see the earlier ones.
    leaky = model(packed, position_ids=positions_from_doc_ids(doc_ids))
    assert (leaky[:, 5:] - alone[:, 5:]).abs().max() > 1e-3


def test_left_padded_row_equals_unpadded_row() -> None:
    model = random_model()
    ids = random_ids(3, 14)
    mask = left_pad_mask([14, 9, 1], 14)
    ids = ids.masked_fill(~mask, 0)
    logits = model(ids, attention_mask=mask)
    assert torch.isfinite(logits).all()  # padding queries attend to themselves
    for row, n in enumerate([14, 9, 1]):
        alone = model(ids[row : row + 1, 14 - n :])
        torch.testing.assert_close(logits[row : row + 1, 14 - n :], alone, rtol=0, atol=1e-12)


def test_all_true_mask_equals_no_mask() -> None:
    model = random_model()
    ids = random_ids(2, 10)
    torch.testing.assert_close(
        model(ids, attention_mask=torch.ones(2, 10, dtype=torch.long)), model(ids), rtol=0, atol=0
    )


# ------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def tiny() -> CM3LeonTransformer:
    return cm3leon_tiny(vocab_size=VOCAB)


def test_out_of_range_id_names_row_and_position(tiny: CM3LeonTransformer) -> None:
    ids = random_ids(3, 8)
    ids[2, 5] = VOCAB
    with pytest.raises(ValueError, match=r"input_ids\[2, 5\] = 97 is out of range \[0, 97\)"):
        tiny(ids)
    ids[2, 5] = -1
    with pytest.raises(ValueError, match=r"input_ids\[2, 5\] = -1 is out of range"):
        tiny(ids)


def test_too_long_sequence_names_length_and_limit(tiny: CM3LeonTransformer) -> None:
    with pytest.raises(ValueError, match="sequence length 257 exceeds max_seq_len 256"):
        tiny(torch.zeros(1, 257, dtype=torch.long))


def test_positions_outside_table_are_named(tiny: CM3LeonTransformer) -> None:
    ids = random_ids(2, 4)
    pos = torch.arange(4).repeat(2, 1)
    pos[1, 3] = 256
    with pytest.raises(ValueError, match=r"position_ids\[1, 3\] = 256 is outside the position table \[0, 256\)"):
        tiny(ids, position_ids=pos)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input_ids": torch.zeros(4, dtype=torch.long)}, ValueError, r"shape \(B, T\)"),
        ({"input_ids": torch.zeros(2, 0, dtype=torch.long)}, ValueError, "T >= 1"),
        ({"input_ids": torch.zeros(2, 3)}, TypeError, "integer token ids"),
        ({"input_ids": [[1, 2]]}, TypeError, "must be a torch.Tensor"),
        ({"doc_ids": torch.zeros(2, 4, dtype=torch.long)}, ValueError, r"doc_ids must have shape"),
        ({"attention_mask": torch.ones(3, 3, dtype=torch.bool)}, ValueError, r"attention_mask must have shape"),
        ({"position_ids": torch.zeros(2, 2, dtype=torch.long)}, ValueError, r"position_ids must have shape"),
    ],
)
def test_bad_shapes_and_types(tiny: CM3LeonTransformer, kwargs: dict, error: type, message: str) -> None:
    args = {"input_ids": torch.zeros(2, 3, dtype=torch.long), **kwargs}
    with pytest.raises(error, match=message):
        tiny(args.pop("input_ids"), **args)
