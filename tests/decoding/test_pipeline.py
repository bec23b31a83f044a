"""Pipelines built by registered name: unknown names, wrong types and kinds are clear errors."""

from __future__ import annotations

import pytest
import torch

from cm3leon.core.config import ConfigError
from cm3leon.decoding.options import (
    DecodingOptionsError,
    GenerationOptions,
    PipelineConfig,
    StrategyConfig,
)
from cm3leon.decoding.pipeline import (
    build_pipeline,
    build_pipelines,
    build_strategy,
    split_candidates,
    stream_union,
)
from cm3leon.decoding.processors import ClassifierFreeGuidance, DecodeState, TopP


def test_default_pipelines_build() -> None:
    opts = GenerationOptions()
    (image,) = build_pipelines(opts.image.pipelines, where="image")
    assert isinstance(image.guidance, ClassifierFreeGuidance) and image.guidance.options.scale == 3.0
    assert isinstance(image.processors[-1], TopP) and image.name == "cfg+temperature+top_p/sample"
    (text,) = build_pipelines(opts.text.pipelines, where="text")
    assert text.streams == ("cond",) and text.name == "none/greedy"


def test_pipeline_applies_guidance_then_processors_in_order() -> None:
    pipe = build_pipeline(
        {"guidance": {"name": "cfg", "options": {"scale": 2.0}},
         "processors": [{"name": "temperature", "options": {"temperature": 0.5}}, {"name": "top_k", "options": {"k": 1}}],
         "selector": {"name": "greedy"}},
        where="p",
    )  # fmt: skip
    cond, uncond = torch.tensor([[1.0, 3.0, 2.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    state = DecodeState(0, torch.zeros(1, 0, dtype=torch.long))
    scores = pipe.scores(torch.stack([cond, uncond]), state)  # (u + 2 (c - u)) / 0.5, then top-1
    assert torch.isfinite(scores).tolist() == [[False, False, True]] and scores[0, 2] == 8.0
    assert pipe(torch.stack([cond, uncond]), state, None).tolist() == [2]


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"guidance": {"name": "cfgg"}}, r"p\.guidance\.name: unknown decoding processor 'cfgg'; registered: .*cfg"),
        ({"selector": {"name": "nucleus"}}, r"p\.selector\.name: unknown decoding selector 'nucleus'; registered: greedy, sample"),
        ({"guidance": {"name": "cfg", "options": {"scale": "high"}}},
         r"p\.guidance\.options \(cfg\): cfg\.scale must be a real number, got 'high' \(str\)"),
        ({"guidance": {"name": "cfg", "options": {"alpha": 3}}}, r"unknown option\(s\) \['alpha'\]; accepted: scale"),
        ({"guidance": {"name": "top_p"}}, r"'top_p' is not a guidance processor"),
        ({"selector": {"name": "top_p"}}, r"'top_p' is a decoding processor, not a selector"),
        ({"processors": [{"name": "greedy"}]}, r"processors\[0\]\.name: 'greedy' is a decoding selector"),
        ({"weight": 0}, r"p\.weight must be >= 1"),
    ],
)
def test_bad_pipeline_configs_are_clear_errors(cfg: dict, message: str) -> None:
    with pytest.raises(DecodingOptionsError, match=message):
        build_pipeline(cfg, where="p")


def test_generation_options_reject_unknown_keys_and_types() -> None:
    with pytest.raises(ConfigError, match="imag"):
        GenerationOptions.from_dict({"imag": {}})
    with pytest.raises(ConfigError, match="max_new_tokens"):
        GenerationOptions.from_dict({"text": {"max_new_tokens": "many"}})
    opts = GenerationOptions.from_dict({"image": {"pipelines": [{"guidance": {"name": "cdk", "options": {"k": 3}}}]}})
    assert opts.image.pipelines[0].guidance == StrategyConfig("cdk", {"k": 3})
    with pytest.raises(DecodingOptionsError, match="at least one pipeline"):
        build_pipelines([], where="image")


def test_stream_union_and_candidate_split() -> None:
    pipes = build_pipelines([PipelineConfig(), PipelineConfig(guidance=StrategyConfig("dual_cfg"))], where="x")
    assert stream_union(pipes) == ("cond", "no_text", "uncond")
    assert split_candidates(8, [1, 1]) == [0] * 4 + [1] * 4
    assert split_candidates(8, [3, 1]) == [0] * 6 + [1] * 2
    assert split_candidates(3, [1, 1]) in ([0, 0, 1], [0, 1, 1])
    assert split_candidates(1, [5]) == [0]
    with pytest.raises(ValueError, match="some pipeline would decode none"):
        split_candidates(1, [1, 1])


def test_strategy_by_dict() -> None:
    temp = build_strategy({"name": "temperature", "options": {"temperature": 2.0}}, kind="processor", where="t")
    assert temp.options.temperature == 2.0
