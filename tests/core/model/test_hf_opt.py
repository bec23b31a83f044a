"""Lossless conversion to and from Hugging Face OPTForCausalLM (transformers 4.57)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from cm3leon.core.model import cm3leon_tiny
from cm3leon.core.model.hf_opt import OPT_POSITION_OFFSET, from_hf_opt, hf_opt_config, to_hf_opt
from tests.core.model._helpers import VOCAB, left_pad_mask, random_ids, random_model


@pytest.mark.parametrize(
    ("dtype", "tie", "activation"),
    [
        (torch.float64, True, "relu"),
        (torch.float64, False, "relu"),
        (torch.float64, True, "gelu_tanh"),
        (torch.float32, True, "relu"),
        (torch.float32, False, "silu"),
    ],
)
def test_identical_logits(dtype: torch.dtype, tie: bool, activation: str) -> None:
    model = random_model(dtype=dtype, tie_embeddings=tie, activation=activation)
    hf = to_hf_opt(model)
    assert hf.dtype == dtype and not hf.training
    ids = random_ids(3, 30)
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)


def test_identical_logits_on_left_padded_batch() -> None:
    model = random_model()
    hf = to_hf_opt(model)
    mask = left_pad_mask([16, 11, 2], 16)
    ids = random_ids(3, 16).masked_fill(~mask, 0)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)
        theirs = hf(ids, attention_mask=mask.long()).logits
    real = mask[:, :, None]  # padding outputs are meaningless in both
    torch.testing.assert_close(theirs * real, ours * real, rtol=0, atol=1e-12)


def test_hf_layout() -> None:
    model = random_model(dtype=torch.float32)
    cfg = hf_opt_config(model.config)
    assert (cfg.enable_bias, cfg.do_layer_norm_before, cfg.activation_function) == (False, True, "relu")
    hf = to_hf_opt(model)
    pos = hf.model.decoder.embed_positions.weight
    assert pos.shape == (model.config.max_seq_len + OPT_POSITION_OFFSET, 64)
    assert torch.equal(pos[OPT_POSITION_OFFSET:], model.pos_emb.weight)
    assert not any("bias" in n and "layer_norm" not in n for n, _ in hf.named_parameters())
    assert hf.lm_head.weight.data_ptr() == hf.model.decoder.embed_tokens.weight.data_ptr()  # tied


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip(tie: bool) -> None:
    model = random_model(tie_embeddings=tie, activation="gelu")
    back = from_hf_opt(to_hf_opt(model))
    assert back.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_unconvertible_models_are_refused() -> None:
    from transformers import OPTConfig, OPTForCausalLM

    base = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, ffn_dim=64,
                max_position_embeddings=16)
    with pytest.raises(ValueError, match=r"enable_bias=True \(CM3Leon has no biases\)"):
        from_hf_opt(OPTForCausalLM(OPTConfig(**base)))
    hf = OPTForCausalLM(OPTConfig(**base, enable_bias=False))
    with torch.no_grad():
        hf.model.decoder.layers[0].final_layer_norm.weight.fill_(2.0)
    with pytest.raises(ValueError, match="layers.0.final_layer_norm.weight is not the identity"):
        from_hf_opt(hf)
    with pytest.raises(ValueError, match="norm_eps=1e-06 cannot be expressed in OPT"):
        hf_opt_config(cm3leon_tiny(vocab_size=VOCAB, norm_eps=1e-6).config)


@pytest.mark.slow
def test_small_preset_with_paper_vocabulary_full_context() -> None:
    """The CPU demo preset at the paper's vocabulary over its whole 1024-token table."""
    from cm3leon.core.model import cm3leon_small

    torch.manual_seed(0)
    model = cm3leon_small().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    hf = to_hf_opt(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 1024))
    mask = left_pad_mask([1024, 700], 1024)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=0, atol=1e-4)
        real = mask[:, :, None]
        ours = model(ids, attention_mask=mask) * real
        theirs = hf(ids, attention_mask=mask.long()).logits * real
        torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)
