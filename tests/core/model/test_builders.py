"""Builders: Table 3's numbers, parameter counts against the names, overrides, registry."""

from __future__ import annotations

import pytest
import torch

from cm3leon.core.model import (
    PAPER_VOCAB_SIZE,
    CM3LeonTransformer,
    TransformerConfig,
    cm3leon_7b,
    cm3leon_350m,
    cm3leon_760m,
    cm3leon_small,
    cm3leon_tiny,
    cm3leon_transformer,
)
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.vocab import Vocabulary


def expected_count(c: TransformerConfig) -> int:
    """Embeddings + per block (qkv, out, fc1, fc2) + an untied head; no biases or norm weights."""
    block = 4 * c.d_model * c.d_model + 2 * c.d_model * c.d_ff
    head = 0 if c.tie_embeddings else c.vocab_size * c.d_model
    return (c.vocab_size + c.max_seq_len) * c.d_model + c.n_layers * block + head


# name -> (builder, nominal parameters, exact count with the paper vocabulary, tied)
PAPER = {
    "350m": (cm3leon_350m, 350e6, 372_264_960),
    "760m": (cm3leon_760m, 760e6, 784_889_856),
    "7b": (cm3leon_7b, 7e9, 6_723_551_232),
}


def test_paper_vocabulary_size() -> None:
    assert PAPER_VOCAB_SIZE == Vocabulary(text_size=56_320, image_size=8_192).size == 64_532


@pytest.mark.parametrize("name", list(PAPER))
def test_parameter_counts_match_the_names(name: str) -> None:
    builder, nominal, exact = PAPER[name]
    with torch.device("meta"):
        model = builder()
    assert model.tok_emb.weight.is_meta
    n = model.num_parameters()
    assert n == expected_count(model.config) == exact
    assert abs(n - nominal) / nominal < 0.07  # 372M, 785M, 6.72B


def test_table3_literal_numbers() -> None:
    with torch.device("meta"):
        shapes = {k: b().config for k, (b, _, _) in PAPER.items()}
    assert {k: (c.n_layers, c.d_model, c.max_seq_len) for k, c in shapes.items()} == {
        "350m": (24, 1024, 4096),
        "760m": (24, 1536, 4096),
        "7b": (32, 4096, 4096),
    }
    for c in shapes.values():
        assert c.d_ff == 4 * c.d_model and c.vocab_size == PAPER_VOCAB_SIZE
        assert (c.activation, c.tie_embeddings, c.init_std, c.pos_init_std) == ("relu", True, 0.006, 0.0002)
    assert [c.head_dim for c in shapes.values()] == [64, 96, 128]


def test_cpu_presets_and_overrides() -> None:
    tiny = cm3leon_tiny(vocab_size=300, max_seq_len=64)
    assert (tiny.config.n_layers, tiny.config.d_model, tiny.config.vocab_size, tiny.config.max_seq_len) == (
        2, 64, 300, 64)
    assert tiny.num_parameters() == expected_count(tiny.config)
    with torch.device("meta"):
        small = cm3leon_small(tie_embeddings=False, activation="gelu")
    assert (small.config.n_layers, small.config.d_model, small.config.max_seq_len) == (4, 256, 1024)
    assert small.head is not None and small.num_parameters() == expected_count(small.config)


def test_unknown_override_is_named() -> None:
    with pytest.raises(ValueError, match=r"cm3leon_350m: unknown override\(s\) \['n_layer'\]"):
        cm3leon_350m(n_layer=3)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        cm3leon_tiny(vocab_size=0)


def test_component_builder_has_every_knob() -> None:
    fields = set(TransformerConfig.__dataclass_fields__)
    import inspect

    assert set(inspect.signature(cm3leon_transformer).parameters) == fields
    model = cm3leon_transformer(vocab_size=50, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_seq_len=16,
                                activation="silu", tie_embeddings=False, norm_eps=1e-6)
    assert isinstance(model, CM3LeonTransformer) and model.config.norm_eps == 1e-6


def test_builders_are_registered_lazily() -> None:
    models = get_registries().models
    for name in ("cm3leon_transformer", "cm3leon_350m", "cm3leon_760m", "cm3leon_7b",
                 "cm3leon_small", "cm3leon_tiny"):
        assert isinstance(models.get(name).factory, str)  # "module:attr", imported on use
    model = models.build("cm3leon_tiny", vocab_size=41)
    assert isinstance(model, CM3LeonTransformer) and model.config.vocab_size == 41
