"""Built-in components of ``cm3leon-eval``, registered like any third-party plugin.

One hookimpl per hook (pluggy allows one per plugin): add new specs to the returned lists.
Factories are lazy ``"module:attr"`` strings so that listing plugins does not import torch.
"""

from __future__ import annotations

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import (
    CommandSpec,
    ConfigSchemaSpec,
    FeatureExtractorSpec,
    MetricSpec,
    RetrieverSpec,
    RunnerSpec,
)


@hookimpl
def cm3leon_register_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            "fid",
            "cm3leon.eval.metrics.fid:FrechetDistance",
            "Fréchet distance of image features (FID), exact across ranks.",
        ),
        MetricSpec(
            "clip_score",
            "cm3leon.eval.metrics.clip_score:CLIPScore",
            "CLIP score: 100 * max(cos(image, text), 0), averaged.",
        ),
        MetricSpec(
            "cider_d",
            "cm3leon.eval.metrics.cider:CiderD",
            "CIDEr-D as coco-caption computes it (PTB tokens), gathered then scored.",
        ),
        MetricSpec(
            "vqa_accuracy",
            "cm3leon.eval.metrics.vqa:VQAAccuracy",
            "Official VQA accuracy with per question/answer type means.",
        ),
    ]


@hookimpl
def cm3leon_register_feature_extractors() -> list[FeatureExtractorSpec]:
    return [
        FeatureExtractorSpec(
            "inception",
            "cm3leon.eval.metrics.features:inception_extractor",
            "FID Inception-v3 pool3 (2048-d) from a local pt_inception weights file.",
        ),
        FeatureExtractorSpec(
            "clip",
            "cm3leon.eval.metrics.features:clip_extractor",
            "CLIP image embeddings of a registered DocumentEncoder.",
        ),
    ]


@hookimpl
def cm3leon_register_retrievers() -> list[RetrieverSpec]:
    return [
        RetrieverSpec(
            "lookup",
            "cm3leon.eval.lookup_retrieval:lookup_retriever",
            "Oracle / control retrieval for evaluation: each prompt's own ground-truth document "
            "(mode own) or an unrelated one (mode other).",
            memory_bank=False,
        ),
    ]


@hookimpl
def cm3leon_register_config_schemas() -> list[ConfigSchemaSpec]:
    return [
        ConfigSchemaSpec(
            "ablation",
            "cm3leon.eval.ablation.spec:AblationConfig",
            "Ablation matrix: base + matrix + run_name + report.",
            directories=("ablations",),
        ),
        ConfigSchemaSpec(
            "demo",
            "cm3leon.eval.demo.config:DemoConfig",
            "cm3leon demo: every stage's command config, paths filled in from `out`.",
            directories=("demo",),
        ),
    ]


@hookimpl
def cm3leon_register_runners() -> list[RunnerSpec]:
    return [
        RunnerSpec(
            "fid_gaussian",
            "cm3leon.eval.runners:run_fid_gaussian",
            "FID of two sampled Gaussians vs the exact distance.",
            schema="cm3leon.eval.runners:FidGaussianConfig",
        ),
        RunnerSpec(
            "fid",
            "cm3leon.eval.protocols.fid:run_fid",
            "FID between image folders, document shards or .npz stats.",
            schema="cm3leon.eval.protocols.fid:FidRunConfig",
        ),
        RunnerSpec(
            "chain",
            "cm3leon.eval.runners:run_chain",
            "Several registered runners in sequence (generate, then score).",
            schema="cm3leon.eval.runners:ChainConfig",
        ),
        RunnerSpec(
            "text_to_image",
            "cm3leon.eval.protocols.text_to_image:run_text_to_image",
            "Text-to-image: checkpoint (or a samples manifest) -> CLIP re-rank -> FID, CLIP score, "
            "world accuracy.",
            schema="cm3leon.eval.protocols.text_to_image:TextToImageConfig",
        ),
        RunnerSpec(
            "captioning",
            "cm3leon.eval.protocols.captioning:run_captioning",
            "Captioning: checkpoint (or a COCO results file) -> CIDEr-D vs the nearest-caption "
            "baseline.",
            schema="cm3leon.eval.protocols.captioning:CaptioningConfig",
        ),
        RunnerSpec(
            "vqa",
            "cm3leon.eval.protocols.vqa:run_vqa",
            "VQA: checkpoint (or a VQA results file) -> VQA accuracy vs majority baselines.",
            schema="cm3leon.eval.protocols.vqa:VQAConfig",
        ),
        RunnerSpec(
            "editing",
            "cm3leon.eval.protocols.editing:run_editing",
            "Editing: checkpoint (or edited images) -> world edit accuracy vs identity/target.",
            schema="cm3leon.eval.protocols.editing:EditingConfig",
        ),
    ]


@hookimpl
def cm3leon_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "eval",
            "cm3leon.eval.cli:eval_group",
            "Evaluation protocols (text-to-image, captioning, VQA, editing), FID, grids.",
        ),
        CommandSpec(
            "ablate",
            "cm3leon.eval.cli:ablate_command",
            "Run an ablation matrix (configs/ablations/*.yaml): tables and plots.",
        ),
        CommandSpec(
            "demo",
            "cm3leon.eval.demo.cli:demo_command",
            "The whole paper end to end on the built-in world (cached, resumable) -> report.html.",
        ),
    ]
