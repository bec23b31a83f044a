"""cm3leon.decoding: KV-cached generation with CFG, CD-K, top-p and CLIP re-ranking.

Public API::

    from cm3leon.decoding import CM3LeonGenerator, GenerationOptions, Prompt

    gen = CM3LeonGenerator(model, document_tokenizer, retriever=..., reranker=...)
    results = gen.generate([Prompt.text_to_image("a red cube")], num_candidates=8, seed=0)

Lower levels: :func:`decode` (the batched engine over the KV cache), :class:`SpanSpec`
(what may be generated), pipelines of registered processors/selectors
(:func:`build_pipeline`), :class:`PromptEncoder` (token streams per prompt).
"""

# Lazy exports (PEP 562): importing cm3leon.decoding -- which the plugin module's import
# does for every `cm3leon` command -- must not import torch; `cm3leon plugins list` stays
# fast and commands can set OpenMP/threading environment variables before torch loads.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "build_pipeline": "cm3leon.decoding.pipeline",
    "build_pipelines": "cm3leon.decoding.pipeline",
    "Candidate": "cm3leon.decoding.generator",
    "cdk_candidates": "cm3leon.decoding.processors",
    "CDKOptions": "cm3leon.decoding.options",
    "CFGOptions": "cm3leon.decoding.options",
    "ClassifierFreeGuidance": "cm3leon.decoding.processors",
    "ClipReranker": "cm3leon.decoding.rerank",
    "CM3LeonGenerator": "cm3leon.decoding.generator",
    "ContrastiveTopK": "cm3leon.decoding.processors",
    "decode": "cm3leon.decoding.engine",
    "DecodeResult": "cm3leon.decoding.engine",
    "DecodeState": "cm3leon.decoding.processors",
    "DecodingOptionsError": "cm3leon.decoding.options",
    "DualCFGOptions": "cm3leon.decoding.options",
    "DualGuidance": "cm3leon.decoding.processors",
    "EncodedPrompt": "cm3leon.decoding.prompts",
    "GenerationOptions": "cm3leon.decoding.options",
    "GenerationResult": "cm3leon.decoding.generator",
    "Greedy": "cm3leon.decoding.processors",
    "Hole": "cm3leon.decoding.prompts",
    "load_reranker": "cm3leon.decoding.rerank",
    "NoGuidance": "cm3leon.decoding.processors",
    "Pipeline": "cm3leon.decoding.pipeline",
    "PipelineConfig": "cm3leon.decoding.options",
    "Prompt": "cm3leon.decoding.prompts",
    "prompt_from_task": "cm3leon.decoding.tasks",
    "PromptEncoder": "cm3leon.decoding.prompts",
    "Sample": "cm3leon.decoding.processors",
    "SpanSpec": "cm3leon.decoding.engine",
    "StrategyConfig": "cm3leon.decoding.options",
    "Temperature": "cm3leon.decoding.processors",
    "TemperatureOptions": "cm3leon.decoding.options",
    "TopK": "cm3leon.decoding.processors",
    "TopKOptions": "cm3leon.decoding.options",
    "TopP": "cm3leon.decoding.processors",
    "TopPOptions": "cm3leon.decoding.options",
}

if TYPE_CHECKING:  # pragma: no cover - static analysis sees the eager imports
    from cm3leon.decoding.engine import DecodeResult, SpanSpec, decode
    from cm3leon.decoding.generator import Candidate, CM3LeonGenerator, GenerationResult
    from cm3leon.decoding.options import (
        CDKOptions,
        CFGOptions,
        DecodingOptionsError,
        DualCFGOptions,
        GenerationOptions,
        PipelineConfig,
        StrategyConfig,
        TemperatureOptions,
        TopKOptions,
        TopPOptions,
    )
    from cm3leon.decoding.pipeline import Pipeline, build_pipeline, build_pipelines
    from cm3leon.decoding.processors import (
        ClassifierFreeGuidance,
        ContrastiveTopK,
        DecodeState,
        DualGuidance,
        Greedy,
        NoGuidance,
        Sample,
        Temperature,
        TopK,
        TopP,
        cdk_candidates,
    )
    from cm3leon.decoding.prompts import EncodedPrompt, Hole, Prompt, PromptEncoder
    from cm3leon.decoding.rerank import ClipReranker, load_reranker
    from cm3leon.decoding.tasks import prompt_from_task


__all__ = [
    "CDKOptions",
    "CFGOptions",
    "CM3LeonGenerator",
    "Candidate",
    "ClassifierFreeGuidance",
    "ClipReranker",
    "ContrastiveTopK",
    "DecodeResult",
    "DecodeState",
    "DecodingOptionsError",
    "DualCFGOptions",
    "DualGuidance",
    "EncodedPrompt",
    "GenerationOptions",
    "GenerationResult",
    "Greedy",
    "Hole",
    "NoGuidance",
    "Pipeline",
    "PipelineConfig",
    "Prompt",
    "PromptEncoder",
    "Sample",
    "SpanSpec",
    "StrategyConfig",
    "Temperature",
    "TemperatureOptions",
    "TopK",
    "TopKOptions",
    "TopP",
    "TopPOptions",
    "build_pipeline",
    "build_pipelines",
    "cdk_candidates",
    "decode",
    "load_reranker",
    "prompt_from_task",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cm3leon.decoding' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
