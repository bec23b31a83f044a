"""Built-in components of ``cm3leon-tokenizers``, registered like any third-party plugin.

Factories are lazy ``"module:attr"`` strings: listing plugins imports neither torch
nor ``tokenizers``.  One hookimpl per hook (pluggy's rule).
"""

from __future__ import annotations

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import CallbackSpec, CommandSpec, ConfigSchemaSpec, TokenizerSpec

_PKG = "cm3leon.tokenizers"


@hookimpl
def cm3leon_register_tokenizers() -> list[TokenizerSpec]:
    return [
        TokenizerSpec(
            "bpe",
            f"{_PKG}.text_bpe:BPETokenizer.byte_level",
            "Byte-level BPE (tokenizers library, tokenizer.json); untrained = 256 byte symbols",
            modality="text",
            loader=f"{_PKG}.text_bpe:load_text_tokenizer",
        ),
        TokenizerSpec(
            "vqgan",
            f"{_PKG}.image_tokenizer:build_image_tokenizer",
            "VQ-GAN image tokenizer (presets: chameleon, paper, small_64, small_32); safetensors export",
            modality="image",
            loader=f"{_PKG}.image_tokenizer:load_image_tokenizer",
        ),
        TokenizerSpec(
            "chameleon_vqgan",
            f"{_PKG}.chameleon:build_chameleon_tokenizer",
            "Meta Chameleon VQ-GAN (512px -> 1024 codes of 8192); loader reads the Lightning vqgan.ckpt",
            modality="image",
            loader=f"{_PKG}.chameleon:load_chameleon_checkpoint",
        ),
    ]


@hookimpl
def cm3leon_register_config_schemas() -> list[ConfigSchemaSpec]:
    return [
        ConfigSchemaSpec(
            "tokenizers",
            f"{_PKG}.configs:TokenizersConfig",
            "Tokenizer training (kind: text | image)",
            directories=("tokenizers",),
        )
    ]


@hookimpl
def cm3leon_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "tokenizers",
            f"{_PKG}.cli:tokenizers_command",
            "Train the text BPE / VQ-GAN image tokenizer; list presets; inspect exports.",
        ),
        # Here, not in core: the Hugging Face export needs the tokenizers' file formats
        # (tokenizer.json, the VQ export), which only this member knows (hf_export.py).
        CommandSpec(
            "export",
            f"{_PKG}.export_cli:export_command",
            "Export a model for other ecosystems (hf: OPT + tokenizer + VQ, loads in transformers alone).",
        ),
    ]


@hookimpl
def cm3leon_register_callbacks() -> list[CallbackSpec]:
    return [
        CallbackSpec(
            "vq_dead_code_restart",
            f"{_PKG}.vq_training:DeadCodeRestart",
            "Re-initialise unused VQ codes from encoder outputs (VQ-GAN training)",
        )
    ]
