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
    RunnerSpec,
)


@hookimpl
def cm3leon_register_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            "fid",
            "cm3leon.eval.fid:FrechetDistance",
            "Fréchet distance of image features (FID), exact across ranks.",
        ),
        MetricSpec(
            "clip_score",
            "cm3leon.eval.clip_score:CLIPScore",
            "CLIP score: 100 * max(cos(image, text), 0), averaged.",
        ),
        MetricSpec(
            "cider_d",
            "cm3leon.eval.cider:CiderD",
            "CIDEr-D as coco-caption computes it (PTB tokens), gathered then scored.",
        ),
        MetricSpec(
            "vqa_accuracy",
            "cm3leon.eval.vqa:VQAAccuracy",
            "Official VQA accuracy with per question/answer type means.",
        ),
    ]


@hookimpl
def cm3leon_register_feature_extractors() -> list[FeatureExtractorSpec]:
    return [
        FeatureExtractorSpec(
            "inception",
            "cm3leon.eval.features:inception_extractor",
            "FID Inception-v3 pool3 (2048-d) from a local pt_inception weights file.",
        ),
        FeatureExtractorSpec(
            "clip",
            "cm3leon.eval.features:clip_extractor",
            "CLIP image embeddings of a registered DocumentEncoder.",
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
            "cm3leon.eval.runners:run_fid",
            "FID between image folders or .npz stats.",
            schema="cm3leon.eval.runners:FidRunConfig",
        ),
        RunnerSpec(
            "text_to_image",
            "cm3leon.eval.runners:run_text_to_image",
            "CLIP re-ranking of generated candidates, FID and CLIP score.",
            schema="cm3leon.eval.runners:TextToImageRunConfig",
        ),
        RunnerSpec(
            "captioning",
            "cm3leon.eval.runners:run_captioning",
            "CIDEr-D of a COCO captions results file.",
            schema="cm3leon.eval.runners:CaptioningRunConfig",
        ),
        RunnerSpec(
            "chain",
            "cm3leon.eval.runners:run_chain",
            "Several registered runners in sequence (generate, then score).",
            schema="cm3leon.eval.runners:ChainConfig",
        ),
        RunnerSpec(
            "vqa",
            "cm3leon.eval.runners:run_vqa",
            "Official VQA accuracy of a results file.",
            schema="cm3leon.eval.runners:VQARunConfig",
        ),
        RunnerSpec(
            "eval_text_to_image",
            "cm3leon.eval.generative.text_to_image:run_text_to_image_eval",
            "Checkpoint -> N samples per caption -> CLIP re-rank -> FID, CLIP score, world accuracy.",
            schema="cm3leon.eval.generative.text_to_image:TextToImageEvalConfig",
        ),
        RunnerSpec(
            "eval_captioning",
            "cm3leon.eval.generative.captioning:run_captioning_eval",
            "Checkpoint -> captions (SFT task prompt) -> CIDEr-D vs the nearest-caption baseline.",
            schema="cm3leon.eval.generative.captioning:CaptioningEvalConfig",
        ),
        RunnerSpec(
            "eval_vqa",
            "cm3leon.eval.generative.vqa:run_vqa_eval",
            "Checkpoint -> short answers (SFT task prompt) -> VQA accuracy vs majority baselines.",
            schema="cm3leon.eval.generative.vqa:VQAEvalConfig",
        ),
        RunnerSpec(
            "eval_editing",
            "cm3leon.eval.generative.editing:run_editing_eval",
            "Checkpoint -> dual-guidance edits -> world edit accuracy vs identity/target baselines.",
            schema="cm3leon.eval.generative.editing:EditingEvalConfig",
        ),
    ]


@hookimpl
def cm3leon_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "eval",
            "cm3leon.eval.cli:eval_group",
            "Score generated outputs: FID, CIDEr-D, VQA accuracy, text-to-image; grids.",
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
