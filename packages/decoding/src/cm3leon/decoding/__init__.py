"""cm3leon.decoding: KV-cached generation with CFG, CD-K, top-p and CLIP re-ranking.

Public API::

    from cm3leon.decoding import CM3LeonGenerator, GenerationOptions, Prompt

    gen = CM3LeonGenerator(model, document_tokenizer, retriever=..., reranker=...)
    results = gen.generate([Prompt.text_to_image("a red cube")], num_candidates=8, seed=0)

Lower levels: :func:`decode` (the batched engine over the KV cache), :class:`SpanSpec`
(what may be generated), pipelines of registered processors/selectors
(:func:`build_pipeline`), :class:`PromptEncoder` (token streams per prompt).
"""

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
