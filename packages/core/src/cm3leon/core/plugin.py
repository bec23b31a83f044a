"""Built-in components of ``cm3leon-core``, registered like any third-party plugin.

One hookimpl per hook (pluggy allows one per plugin); each returns the specs of
every core area.  Factories are lazy ``"module:attr"`` strings so that listing
plugins does not import torch.
"""

from __future__ import annotations

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import (
    CallbackSpec,
    CommandSpec,
    ConfigSchemaSpec,
    ModelSpec,
    SourceSpec,
    TokenizerSpec,
)


@hookimpl
def cm3leon_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "plugins",
            "cm3leon.core.cli:plugins_command",
            "List loaded plugins and every component they register.",
        ),
        CommandSpec(
            "config",
            "cm3leon.core.cli:config_command",
            "Validate a YAML config (with dotted overrides) against a registered schema.",
        ),
        CommandSpec(
            "data",
            "cm3leon.core.data_cli:data_command",
            "Prepare MDS shards of documents or token ids; inspect and hash-check them.",
        ),
        CommandSpec(
            "train",
            "cm3leon.core.train.cli:train_command",
            "Train with Composer (pretrain / SFT; `composer -n N -m cm3leon.core.train`), export, plot.",
        ),
    ]


@hookimpl
def cm3leon_register_sources() -> list[SourceSpec]:
    return [
        SourceSpec(
            "folder",
            "cm3leon.core.sources:folder_source",
            "Image files with same-stem .txt captions (recursive).",
        ),
        SourceSpec(
            "jsonl",
            "cm3leon.core.sources:jsonl_source",
            "JSONL of {image, caption[, codes]} records or full document JSON.",
        ),
        SourceSpec(
            "webdataset",
            "cm3leon.core.corpora.tars:webdataset_source",
            "Webdataset tar shards, img2dataset layout (<key>.jpg|png|webp, .txt, .json); cm3leon-core[corpora].",
        ),
        SourceSpec(
            "parquet",
            "cm3leon.core.corpora.tables:parquet_source",
            "Parquet rows: image bytes (img2dataset jpg) or a path column + image_root; cm3leon-core[corpora].",
        ),
        SourceSpec(
            "hf",
            "cm3leon.core.corpora.tables:hf_source",
            "Hugging Face datasets save_to_disk folder or HF parquet files; cm3leon-core[corpora].",
        ),
        SourceSpec(
            "tsv",
            "cm3leon.core.corpora.tsv:tsv_source",
            "caption<TAB>url lines (CC3M layout; columns configurable) with local images under image_root.",
        ),
    ]


@hookimpl
def cm3leon_register_tokenizers() -> list[TokenizerSpec]:
    return [
        TokenizerSpec(
            "bytes",
            "cm3leon.core.tokenization:ByteTokenizer",
            "UTF-8 byte text tokenizer (vocab 256); tests and fallback.",
            modality="text",
            loader="cm3leon.core.tokenization:ByteTokenizer.load",
        ),
    ]


_MODEL_BUILDERS = {
    "cm3leon_transformer": "Component builder: every TransformerConfig knob explicit.",
    "cm3leon_350m": "CM3Leon-350M, Table 3: 24 layers, d_model 1024, seq 4096.",
    "cm3leon_760m": "CM3Leon-760M, Table 3: 24 layers, d_model 1536, seq 4096.",
    "cm3leon_7b": "CM3Leon-7B, Table 3: 32 layers, d_model 4096, seq 4096.",
    "cm3leon_small": "CPU demo preset: 4 layers, d_model 256, seq 1024.",
    "cm3leon_tiny": "Unit-test preset: 2 layers, d_model 64, seq 256.",
}


@hookimpl
def cm3leon_register_models() -> list[ModelSpec]:
    return [
        ModelSpec(name, f"cm3leon.core.model.builders:{name}", description)
        for name, description in _MODEL_BUILDERS.items()
    ]


# ---------------------------------------------------------------- training
_TRAIN_CALLBACKS = {
    "speed_monitor": ("cm3leon.core.train.callbacks:speed_monitor",
                      "Tokens/s, FLOP/s and MFU (Composer SpeedMonitor; CPU peak measurable)."),
    "lr_monitor": ("composer.callbacks:LRMonitor", "Log the learning rate every batch."),
    "optimizer_monitor": ("composer.callbacks:OptimizerMonitor", "Log gradient and update norms."),
    "memory_monitor": ("composer.callbacks:MemoryMonitor", "Log GPU memory statistics."),
    "runtime_estimator": ("composer.callbacks:RuntimeEstimator", "Estimate the remaining training time."),
    "loss_spike": ("cm3leon.core.train.spikes:loss_spike",
                   "Flag training-loss spikes (robust z-score over a window); warn or stop."),
}


@hookimpl
def cm3leon_register_callbacks() -> list[CallbackSpec]:
    return [CallbackSpec(name, factory, description) for name, (factory, description) in _TRAIN_CALLBACKS.items()]


@hookimpl
def cm3leon_register_config_schemas() -> list[ConfigSchemaSpec]:
    return [
        ConfigSchemaSpec(
            "train",
            "cm3leon.core.train.config:TrainConfig",
            "Composer training run: model, data streams, AdamW, warm-up schedule, FSDP, checkpoints.",
            directories=("pretrain", "sft"),
        ),
    ]
