"""The CM3Leon transformer (§2.3): config, model, KV cache, builders, conversions.

Public API::

    from cm3leon.core.model import cm3leon_small, TransformerConfig, KVCache

    model = cm3leon_small(vocab_size=vocab.size)
    logits = model(input_ids, doc_ids=doc_ids)                 # (B, T, V), packed training
    cache = model.new_cache(batch_size, max_len)
    logits = model.forward_cached(prompt, cache, attention_mask=mask)  # prefill
    logits = model.forward_cached(next_ids, cache)             # one step, (B, 1, V)

    big = materialize_(meta_model(preset_config("cm3leon_7b")))  # == cm3leon_7b(), same seed

The Hugging Face conversion lives in :mod:`cm3leon.core.model.hf_opt` (needs
``transformers``) and is not imported here.
"""

from cm3leon.core.model.accounting import MODALITIES, count_modality_tokens, modality_masks
from cm3leon.core.model.builders import (
    PAPER_VOCAB_SIZE,
    PRESETS,
    cm3leon_7b,
    cm3leon_350m,
    cm3leon_760m,
    cm3leon_small,
    cm3leon_tiny,
    cm3leon_transformer,
    preset_config,
)
from cm3leon.core.model.config import ACTIVATIONS, ATTENTION_CHOICES, TransformerConfig
from cm3leon.core.model.kv_cache import KVCache
from cm3leon.core.model.meta_init import init_values, materialize_, meta_model
from cm3leon.core.model.transformer import (
    Block,
    CM3LeonTransformer,
    positions_from_doc_ids,
    positions_from_mask,
)

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_CHOICES",
    "MODALITIES",
    "PAPER_VOCAB_SIZE",
    "PRESETS",
    "Block",
    "CM3LeonTransformer",
    "KVCache",
    "TransformerConfig",
    "cm3leon_7b",
    "cm3leon_350m",
    "cm3leon_760m",
    "cm3leon_small",
    "cm3leon_tiny",
    "cm3leon_transformer",
    "count_modality_tokens",
    "init_values",
    "materialize_",
    "meta_model",
    "modality_masks",
    "positions_from_doc_ids",
    "positions_from_mask",
    "preset_config",
]
