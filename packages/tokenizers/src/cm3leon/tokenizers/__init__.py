"""cm3leon.tokenizers: byte-level BPE text tokenizer, VQ-GAN image tokenizer, their training.

Public API (imported lazily, so ``import cm3leon.tokenizers.plugin`` never loads torch):

* text: :class:`BPETokenizer`, :func:`load_text_tokenizer`, :func:`train_text_tokenizer`;
* image: :class:`VQGANTokenizer`, :class:`VQModel`, :class:`VQGANConfig`,
  :func:`vqgan_preset`, :func:`load_image_tokenizer`, :func:`load_chameleon_checkpoint`,
  :func:`map_transformers_state_dict`, :func:`train_image_tokenizer`;
* image input: :class:`Preprocess`, :class:`ImageInputError`, :class:`ImageBatchError`.

The unified vocabulary of a text and an image tokenizer (and the ``DocumentTokenizer`` over
them) is built by core: :func:`cm3leon.core.tokenization.build_document_tokenizer`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BPETokenizer",
    "BatchEncoding",
    "CHAMELEON_PREPROCESS",
    "ImageBatchError",
    "ImageFailure",
    "ImageInputError",
    "PAPER_TEXT_VOCAB_SIZE",
    "Preprocess",
    "VQGANConfig",
    "VQGANTokenizer",
    "VQModel",
    "build_image_tokenizer",
    "load_chameleon_checkpoint",
    "load_image_tokenizer",
    "load_text_tokenizer",
    "map_transformers_state_dict",
    "train_image_tokenizer",
    "train_text_tokenizer",
    "vqgan_preset",
]

_WHERE = {
    "BPETokenizer": "text_bpe",
    "PAPER_TEXT_VOCAB_SIZE": "text_bpe",
    "load_text_tokenizer": "text_bpe",
    "BatchEncoding": "image_tokenizer",
    "VQGANTokenizer": "image_tokenizer",
    "build_image_tokenizer": "image_tokenizer",
    "load_image_tokenizer": "image_tokenizer",
    "CHAMELEON_PREPROCESS": "chameleon",
    "load_chameleon_checkpoint": "chameleon",
    "map_transformers_state_dict": "chameleon",
    "ImageBatchError": "image_io",
    "ImageFailure": "image_io",
    "ImageInputError": "image_io",
    "Preprocess": "image_io",
    "VQGANConfig": "vqgan_config",
    "vqgan_preset": "vqgan_config",
    "VQModel": "vqgan",
    "train_image_tokenizer": "train_image",
    "train_text_tokenizer": "train_text",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cm3leon.tokenizers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cm3leon.tokenizers.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
