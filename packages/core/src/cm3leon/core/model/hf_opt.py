"""Lossless conversion between :class:`CM3LeonTransformer` and Hugging Face ``OPTForCausalLM``.

The CM3Leon architecture is OPT's with the biases and LayerNorm parameters removed,
so an ``OPTConfig`` with ``enable_bias=False``, pre-LayerNorm
(``do_layer_norm_before=True``) and no embedding projection computes the same
function once:

* every LayerNorm is affine with weight 1 and bias 0 (``layer_norm_elementwise_affine=False``
  fails to initialise in transformers 4.57; an identity affine is the same function);
* the fused ``qkv`` projection is split into ``q_proj``/``k_proj``/``v_proj``;
* OPT's position table has ``max_seq_len + 2`` rows and looks position ``p`` up at row
  ``p + 2`` (a fairseq legacy); rows 0 and 1 are set to zero (HF gives padding
  position -1, i.e. row 1);
* activations map ``relu -> relu``, ``gelu -> gelu``, ``gelu_tanh -> gelu_pytorch_tanh``,
  ``silu -> silu``; a tied head maps to ``tie_word_embeddings=True``.

Requires ``transformers`` (``pip install 'cm3leon-core[hf]'``), imported on use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from cm3leon.core.model.config import TransformerConfig
from cm3leon.core.model.transformer import CM3LeonTransformer

if TYPE_CHECKING:
    from transformers import OPTConfig, OPTForCausalLM

__all__ = ["OPT_POSITION_OFFSET", "from_hf_opt", "hf_opt_config", "to_hf_opt"]

#: OPTLearnedPositionalEmbedding's row offset.
OPT_POSITION_OFFSET = 2

_TO_HF_ACT = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "silu": "silu"}
_FROM_HF_ACT = {v: k for k, v in _TO_HF_ACT.items()}
_OPT_LN_EPS = 1e-5  # OPT builds nn.LayerNorm(hidden) with PyTorch's default eps.


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "the Hugging Face OPT conversion needs transformers: pip install 'cm3leon-core[hf]'"
        ) from err
    return transformers


def hf_opt_config(config: TransformerConfig, **extra: Any) -> OPTConfig:
    """The ``OPTConfig`` computing the same function as ``config``.

    Args:
        config: the CM3Leon architecture.
        extra: further ``OPTConfig`` keywords (e.g. ``attn_implementation="eager"``).

    Raises:
        ValueError: ``norm_eps`` differs from OPT's fixed 1e-5.
    """
    if config.norm_eps != _OPT_LN_EPS:
        raise ValueError(
            f"TransformerConfig.norm_eps={config.norm_eps} cannot be expressed in OPT, "
            f"whose LayerNorms use eps={_OPT_LN_EPS}"
        )
    from cm3leon.core.vocab import Vocabulary

    return _transformers().OPTConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        ffn_dim=config.d_ff,
        max_position_embeddings=config.max_seq_len,
        do_layer_norm_before=True,
        word_embed_proj_dim=config.d_model,
        dropout=0.0,
        attention_dropout=0.0,
        layerdrop=0.0,
        activation_function=_TO_HF_ACT[config.activation],
        init_std=config.init_std,
        enable_bias=False,
        layer_norm_elementwise_affine=True,
        tie_word_embeddings=config.tie_embeddings,
        pad_token_id=Vocabulary.pad_id,
        bos_token_id=Vocabulary.eos_id,
        eos_token_id=Vocabulary.eos_id,
        **extra,
    )


@torch.no_grad()
def to_hf_opt(model: CM3LeonTransformer, **config_extra: Any) -> OPTForCausalLM:
    """An ``OPTForCausalLM`` (eval mode, same dtype/device) with ``model``'s weights."""
    cfg = model.config
    hf = _transformers().OPTForCausalLM(hf_opt_config(cfg, **config_extra))
    weight = model.tok_emb.weight
    hf = hf.to(dtype=weight.dtype, device=weight.device).eval()
    D = cfg.d_model
    ones, zeros = torch.ones_like(weight[0]), torch.zeros_like(weight[0])  # (D,)
    positions = torch.cat([weight.new_zeros(OPT_POSITION_OFFSET, D), model.pos_emb.weight])
    sd: dict[str, torch.Tensor] = {
        "model.decoder.embed_tokens.weight": weight,
        "model.decoder.embed_positions.weight": positions,  # (max_seq_len + 2, D)
        "model.decoder.final_layer_norm.weight": ones,
        "model.decoder.final_layer_norm.bias": zeros,
        "lm_head.weight": weight if model.head is None else model.head.weight,
    }
    for i, block in enumerate(model.blocks):
        p = f"model.decoder.layers.{i}."
        q, k, v = block.attn.qkv.weight.split(D, dim=0)  # each (D, D)
        sd |= {
            p + "self_attn.q_proj.weight": q,
            p + "self_attn.k_proj.weight": k,
            p + "self_attn.v_proj.weight": v,
            p + "self_attn.out_proj.weight": block.attn.out.weight,
            p + "fc1.weight": block.mlp.fc1.weight,
            p + "fc2.weight": block.mlp.fc2.weight,
        }
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            sd[p + ln + ".weight"], sd[p + ln + ".bias"] = ones, zeros
    hf.load_state_dict(sd, strict=True)
    return hf


@torch.no_grad()
def from_hf_opt(hf: OPTForCausalLM) -> CM3LeonTransformer:
    """A :class:`CM3LeonTransformer` with the weights of a bias-free, pre-LN OPT model.

    Raises:
        ValueError: the OPT model uses something CM3Leon does not have (biases,
            post-LN, an embedding projection, non-identity LayerNorms, an unknown
            activation), named.
    """
    c = hf.config
    problems = []
    if c.enable_bias:
        problems.append("enable_bias=True (CM3Leon has no biases)")
    if not c.do_layer_norm_before:
        problems.append("do_layer_norm_before=False (CM3Leon is pre-LN)")
    if c.word_embed_proj_dim != c.hidden_size:
        problems.append(f"word_embed_proj_dim={c.word_embed_proj_dim} != hidden_size")
    if c.activation_function not in _FROM_HF_ACT:
        problems.append(f"activation_function={c.activation_function!r}")
    if getattr(c, "_remove_final_layer_norm", False):
        problems.append("_remove_final_layer_norm=True")
    if problems:
        raise ValueError("cannot convert this OPT model to CM3Leon: " + "; ".join(problems))
    sd = hf.state_dict()
    for name, tensor in sd.items():
        if "layer_norm" in name and not torch.equal(tensor, torch.full_like(tensor, name.endswith("weight"))):
            raise ValueError(
                f"cannot convert: LayerNorm parameter {name} is not the identity "
                "(CM3Leon's LayerNorms have no learnable parameters)"
            )
    config = TransformerConfig(
        vocab_size=c.vocab_size,
        d_model=c.hidden_size,
        n_layers=c.num_hidden_layers,
        n_heads=c.num_attention_heads,
        d_ff=c.ffn_dim,
        max_seq_len=c.max_position_embeddings,
        activation=_FROM_HF_ACT[c.activation_function],
        tie_embeddings=bool(c.tie_word_embeddings),
        init_std=c.init_std,
    )
    emb = sd["model.decoder.embed_tokens.weight"]
    with torch.device("meta"):
        model = CM3LeonTransformer(config)
    model = model.to_empty(device=emb.device).to(emb.dtype)
    ours = {
        "tok_emb.weight": emb,
        "pos_emb.weight": sd["model.decoder.embed_positions.weight"][OPT_POSITION_OFFSET:],
    }
    if model.head is not None:
        ours["head.weight"] = sd["lm_head.weight"]
    for i in range(config.n_layers):
        p = f"model.decoder.layers.{i}."
        qkv = [sd[p + f"self_attn.{n}_proj.weight"] for n in ("q", "k", "v")]
        ours |= {
            f"blocks.{i}.attn.qkv.weight": torch.cat(qkv, dim=0),  # (3D, D)
            f"blocks.{i}.attn.out.weight": sd[p + "self_attn.out_proj.weight"],
            f"blocks.{i}.mlp.fc1.weight": sd[p + "fc1.weight"],
            f"blocks.{i}.mlp.fc2.weight": sd[p + "fc2.weight"],
        }
    model.load_state_dict(ours, strict=True)
    return model.eval()
