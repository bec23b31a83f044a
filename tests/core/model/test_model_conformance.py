"""The model conformance suite over every built-in builder (shrunk by keyword overrides)."""

from __future__ import annotations

from cm3leon.core.model.testing import ModelConformance

SHRINK = {"vocab_size": 61, "n_layers": 2, "d_model": 32, "n_heads": 2, "d_ff": 64, "max_seq_len": 24}


class TestTiny(ModelConformance):
    name = "cm3leon_tiny"
    build_kwargs = {"vocab_size": 61, "max_seq_len": 24}


class TestSmall(ModelConformance):
    name = "cm3leon_small"
    build_kwargs = {"vocab_size": 61, "max_seq_len": 24, "tie_embeddings": False}


class Test350M(ModelConformance):
    name = "cm3leon_350m"
    build_kwargs = SHRINK


class Test760M(ModelConformance):
    name = "cm3leon_760m"
    build_kwargs = SHRINK


class Test7B(ModelConformance):
    name = "cm3leon_7b"
    build_kwargs = SHRINK


class TestComponentBuilder(ModelConformance):
    name = "cm3leon_transformer"
    build_kwargs = {**SHRINK, "activation": "gelu"}
