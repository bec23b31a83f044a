"""TransformerConfig validation names the bad field."""

from __future__ import annotations

import pytest

from cm3leon.core.model import TransformerConfig

BASE = dict(vocab_size=100, d_model=64, n_layers=2, n_heads=4, d_ff=256, max_seq_len=128)


def test_defaults_follow_the_paper() -> None:
    cfg = TransformerConfig(**BASE)
    assert cfg.activation == "relu"
    assert cfg.tie_embeddings is True
    assert cfg.init_std == 0.006
    assert cfg.pos_init_std == 0.0002
    assert cfg.head_dim == 16


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("vocab_size", 0, "vocab_size must be a positive integer"),
        ("d_model", 64.0, "d_model must be a positive integer"),
        ("n_layers", True, "n_layers must be a positive integer"),
        ("n_heads", 5, "n_heads=5 must divide d_model=64"),
        ("d_ff", -1, "d_ff must be a positive integer"),
        ("max_seq_len", None, "max_seq_len must be a positive integer"),
        ("activation", "swiglu", "activation must be one of"),
        ("tie_embeddings", "yes", "tie_embeddings must be a bool"),
        ("init_std", 0.0, "init_std must be a positive number"),
        ("pos_init_std", -1e-4, "pos_init_std must be a positive number"),
        ("norm_eps", "1e-5", "norm_eps must be a positive number"),
    ],
)
def test_bad_field_is_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**{**BASE, field: value})


def test_dict_round_trip_and_replace() -> None:
    cfg = TransformerConfig(**BASE, activation="gelu")
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(n_layers=3).n_layers == 3
    with pytest.raises(ValueError, match=r"ckpt.json: unknown TransformerConfig field\(s\) \['n_layer'\]"):
        TransformerConfig.from_dict({**BASE, "n_layer": 3}, source="ckpt.json")
    with pytest.raises(ValueError, match=r"missing TransformerConfig field\(s\) \['d_ff'\]"):
        TransformerConfig.from_dict({k: v for k, v in BASE.items() if k != "d_ff"})
    with pytest.raises(ValueError, match="n_heads=3 must divide"):
        cfg.replace(n_heads=3)
