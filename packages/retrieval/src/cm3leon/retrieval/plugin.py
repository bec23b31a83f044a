"""Built-in components of ``cm3leon-retrieval``, registered like any third-party plugin.

Factories are lazy ``"module:attr"`` strings: listing plugins imports neither
torch, open_clip nor FAISS.
"""

from __future__ import annotations

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import CommandSpec, ConfigSchemaSpec, FeatureExtractorSpec, RetrieverSpec


@hookimpl
def cm3leon_register_retrievers() -> list[RetrieverSpec]:
    return [
        RetrieverSpec(
            "clip",
            "cm3leon.retrieval.dense:clip_retriever",
            "Dense CLIP bi-encoder + FAISS MIPS with CM3Leon's strategy (§2.1).",
        ),
        RetrieverSpec(
            "bm25",
            "cm3leon.retrieval.bm25:bm25_retriever",
            "Okapi BM25 over captions (pure numpy) with the same strategy rules.",
        ),
    ]


@hookimpl
def cm3leon_register_feature_extractors() -> list[FeatureExtractorSpec]:
    return [
        FeatureExtractorSpec(
            "clip-image",
            "cm3leon.retrieval.encoder:load_encoder",
            "Frozen open_clip encoder from a local checkpoint (path=DIR or model=NAME, "
            "pretrained=FILE): (B,3,H,W) in [0,1] -> unit-norm CLIP features; also a DocumentEncoder.",
        ),
    ]


@hookimpl
def cm3leon_register_config_schemas() -> list[ConfigSchemaSpec]:
    return [
        ConfigSchemaSpec(
            "retrieval",
            "cm3leon.retrieval.config:RetrievalConfig",
            "Sections train_clip / bank / augment of the retrieval commands.",
            directories=("retrieval",),
        ),
    ]


@hookimpl
def cm3leon_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "retrieval",
            "cm3leon.retrieval.cli:retrieval_command",
            "Train the small CLIP, build memory banks, write retrieval-augmented shards, query.",
        ),
    ]
