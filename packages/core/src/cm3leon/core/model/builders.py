"""Model builders, in two layers (torchtune style).

* :func:`cm3leon_transformer` -- the component builder: every knob, no defaults for shapes.
* ``cm3leon_350m``/``cm3leon_760m``/``cm3leon_7b`` -- Table 3's literal numbers (layers,
  ``d_model``, sequence length 4096).  Table 3 gives no head count or feed-forward width;
  they are taken as OPT/GPT-3 take them for the same widths: ``d_ff = 4 d_model`` and
  64-dimensional heads up to ``d_model=1024`` (OPT-350M: 16 heads), 96-dimensional at
  1536 (GPT-3 "Large", 760M: 16 heads; OPT has no 760M model) and 128-dimensional at
  4096 (OPT-6.7B: 32 heads).
* ``cm3leon_tiny`` (unit tests) and ``cm3leon_small`` (the CPU demo).

The vocabulary defaults to the paper's: 56,320 text + 8,192 image ids plus the
specials of :class:`cm3leon.core.vocab.Vocabulary` (64,532 ids).  Every builder
accepts keyword overrides of any :class:`TransformerConfig` field
(``cm3leon_small(vocab_size=vocab.size, max_seq_len=512)``); an unknown keyword
raises ``ValueError`` naming it.
"""

from __future__ import annotations

from typing import Any

from cm3leon.core.model.config import TransformerConfig
from cm3leon.core.model.transformer import CM3LeonTransformer
from cm3leon.core.vocab import Vocabulary

__all__ = [
    "PAPER_VOCAB_SIZE",
    "PRESETS",
    "cm3leon_350m",
    "cm3leon_760m",
    "cm3leon_7b",
    "cm3leon_small",
    "cm3leon_tiny",
    "cm3leon_transformer",
    "preset_config",
]

#: 56,320 text ids + 8,192 image codes + the unified vocabulary's special tokens.
PAPER_VOCAB_SIZE = Vocabulary(text_size=56_320, image_size=8_192).size

#: Literal architecture of every named preset (``vocab_size`` defaults to the paper's).
PRESETS: dict[str, dict[str, Any]] = {
    # Table 3: 24 layers, d_model 1024, seq 4096; heads/d_ff as OPT-350M.
    "cm3leon_350m": dict(n_layers=24, d_model=1024, n_heads=16, d_ff=4096, max_seq_len=4096),
    # Table 3: 24 layers, d_model 1536, seq 4096; heads/d_ff as GPT-3 Large (760M).
    "cm3leon_760m": dict(n_layers=24, d_model=1536, n_heads=16, d_ff=6144, max_seq_len=4096),
    # Table 3: 32 layers, d_model 4096, seq 4096; heads/d_ff as OPT-6.7B.
    "cm3leon_7b": dict(n_layers=32, d_model=4096, n_heads=32, d_ff=16384, max_seq_len=4096),
    # CPU presets.
    "cm3leon_small": dict(n_layers=4, d_model=256, n_heads=4, d_ff=1024, max_seq_len=1024),
    "cm3leon_tiny": dict(n_layers=2, d_model=64, n_heads=4, d_ff=256, max_seq_len=256),
}


def cm3leon_transformer(
    *,
    vocab_size: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    d_ff: int,
    max_seq_len: int,
    activation: str = "relu",
    tie_embeddings: bool = True,
    init_std: float = 0.006,
    pos_init_std: float = 0.0002,
    norm_eps: float = 1e-5,
    attention: str = "auto",
) -> CM3LeonTransformer:
    """Component builder: a :class:`CM3LeonTransformer` with every knob explicit.

    Arguments are the fields of :class:`TransformerConfig` (see there).  Build on the
    ``meta`` device to count parameters without memory:
    ``with torch.device("meta"): cm3leon_transformer(...)``.
    """
    return CM3LeonTransformer(
        TransformerConfig(
            vocab_size=vocab_size,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            d_ff=d_ff,
            max_seq_len=max_seq_len,
            activation=activation,
            tie_embeddings=tie_embeddings,
            init_std=init_std,
            pos_init_std=pos_init_std,
            norm_eps=norm_eps,
            attention=attention,
        )
    )


def preset_config(name: str, **overrides: Any) -> TransformerConfig:
    """The :class:`TransformerConfig` of preset ``name`` with ``overrides`` applied.

    Raises:
        ValueError: unknown preset name or unknown override key (both named).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; presets: {sorted(PRESETS)}")
    fields = set(TransformerConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{name}: unknown override(s) {unknown}; accepted: {sorted(fields)}")
    values = {"vocab_size": PAPER_VOCAB_SIZE, **PRESETS[name], **overrides}
    return TransformerConfig(**values)


def cm3leon_350m(**overrides: Any) -> CM3LeonTransformer:
    """CM3Leon-350M (Table 3): 24 layers, d_model 1024, 16 heads, d_ff 4096, seq 4096."""
    return CM3LeonTransformer(preset_config("cm3leon_350m", **overrides))


def cm3leon_760m(**overrides: Any) -> CM3LeonTransformer:
    """CM3Leon-760M (Table 3): 24 layers, d_model 1536, 16 heads, d_ff 6144, seq 4096."""
    return CM3LeonTransformer(preset_config("cm3leon_760m", **overrides))


def cm3leon_7b(**overrides: Any) -> CM3LeonTransformer:
    """CM3Leon-7B (Table 3): 32 layers, d_model 4096, 32 heads, d_ff 16384, seq 4096."""
    return CM3LeonTransformer(preset_config("cm3leon_7b", **overrides))


def cm3leon_small(**overrides: Any) -> CM3LeonTransformer:
    """CPU demo preset: 4 layers, d_model 256, 4 heads, d_ff 1024, seq 1024."""
    return CM3LeonTransformer(preset_config("cm3leon_small", **overrides))


def cm3leon_tiny(**overrides: Any) -> CM3LeonTransformer:
    """Unit-test preset: 2 layers, d_model 64, 4 heads, d_ff 256, seq 256."""
    return CM3LeonTransformer(preset_config("cm3leon_tiny", **overrides))
