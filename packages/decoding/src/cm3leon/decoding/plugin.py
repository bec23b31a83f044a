"""Built-in components of ``cm3leon-decoding``, registered like any third-party plugin.

Factories are lazy ``"module:attr"`` strings: listing plugins does not import torch.
One hookimpl per hook (pluggy's rule): add new specs to the returned lists.
"""

from __future__ import annotations

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import CommandSpec, ConfigSchemaSpec, DecodingSpec, RunnerSpec

_P = "cm3leon.decoding.processors"
_O = "cm3leon.decoding.options"

# name, kind, factory, options, description
_DECODING: tuple[tuple[str, str, str, str, str], ...] = (
    ("none", "processor", "NoGuidance", "NoGuidanceOptions",
     "Guidance: the conditional stream alone."),
    ("cfg", "processor", "ClassifierFreeGuidance", "CFGOptions",
     "Guidance: classifier-free guidance, eq. 2 (cond + uncond <mask> stream in one batch)."),
    ("cdk", "processor", "ContrastiveTopK", "CDKOptions",
     "Guidance: contrastive decoding top-K, eq. 3 (expert = cond, amateur = uncond)."),
    ("dual_cfg", "processor", "DualGuidance", "DualCFGOptions",
     "Guidance: separate image and text CFG scales for editing (§4.1), three streams."),
    ("temperature", "processor", "Temperature", "TemperatureOptions", "Divide scores by a temperature."),
    ("top_k", "processor", "TopK", "TopKOptions", "Keep the k highest scores."),
    ("top_p", "processor", "TopP", "TopPOptions", "Nucleus (top-p) filtering."),
    ("greedy", "selector", "Greedy", "GreedyOptions", "Argmax."),
    ("sample", "selector", "Sample", "SampleOptions", "Sample from softmax(scores) with a seeded generator."),
)  # fmt: skip


@hookimpl
def cm3leon_register_decoding() -> list[DecodingSpec]:
    return [
        DecodingSpec(name, f"{_P}:{factory}", description, kind=kind, options=f"{_O}:{options}")  # type: ignore[arg-type]
        for name, kind, factory, options, description in _DECODING
    ]


@hookimpl
def cm3leon_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "generate",
            "cm3leon.decoding.cli:generate_command",
            "Generate images (PNG grids) and text from prompts: CFG / CD-K / top-p, retrieval, CLIP re-ranking.",
        ),
        CommandSpec(
            "serve",
            "cm3leon.decoding.serve.cli:serve_command",
            "Browser playground: text-to-image, captioning, VQA and editing (needs cm3leon-decoding[serve]).",
        ),
    ]


@hookimpl
def cm3leon_register_config_schemas() -> list[ConfigSchemaSpec]:
    return [
        ConfigSchemaSpec(
            "generate",
            "cm3leon.decoding.config:GenerateConfig",
            "Generation run: model export, tokenizers, decoding pipelines, retrieval, re-ranking.",
            directories=("generate",),
        )
    ]


@hookimpl
def cm3leon_register_runners() -> list[RunnerSpec]:
    return [
        RunnerSpec(
            "generate",
            "cm3leon.decoding.run:run_generate",
            "Generate N candidates per prompt (manifest.json for the text_to_image runner).",
            schema="cm3leon.decoding.config:GenerateConfig",
        )
    ]
