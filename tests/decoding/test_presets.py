"""The paper's decoding presets: typed pipelines every registered piece accepts."""

from __future__ import annotations

import pytest

from cm3leon.core.config import ConfigError, load_config
from cm3leon.decoding.options import GenerationOptions, PipelineConfig, StrategyConfig
from cm3leon.decoding.pipeline import build_pipelines
from cm3leon.decoding.presets import PRESETS, DecodingPreset, generation_options, preset_pipelines

EXPECTED = {
    "cfg": [("cfg", ["temperature"], "sample")],
    "top_p": [("cfg", ["temperature", "top_p"], "sample")],
    "cd_k": [("cdk", ["temperature"], "sample")],
    "cd_k_top_p": [("cfg", ["temperature", "top_p"], "sample"), ("cdk", ["temperature"], "sample")],
    "greedy": [("none", [], "greedy")],
    "cfg_greedy": [("cfg", [], "greedy")],
    "dual_cfg": [("dual_cfg", ["temperature", "top_p"], "sample")],
}


def test_every_strategy_has_its_expected_layout() -> None:
    assert sorted(PRESETS) == sorted(EXPECTED)


@pytest.mark.parametrize("strategy", sorted(PRESETS))
def test_every_strategy_builds_registered_pipelines(strategy: str) -> None:
    preset = DecodingPreset(strategy=strategy, cfg_scale=2.5, top_p=0.8, cd_k=3, cd_alpha=0.3,
                            image_scale=1.25, text_scale=6.0, temperature=0.7)  # fmt: skip
    pipes = preset_pipelines(preset)
    assert all(isinstance(p, PipelineConfig) for p in pipes)
    assert len(build_pipelines(pipes, where="decoding")) == len(EXPECTED[strategy])
    layout = [(p.guidance.name, [q.name for q in p.processors], p.selector.name) for p in pipes]
    assert layout == EXPECTED[strategy]
    options = {p.guidance.name: p.guidance.options for p in pipes}
    assert options.get("cfg", {"scale": 2.5}) == {"scale": 2.5}
    assert options.get("cdk", {"k": 3, "alpha": 0.3}) == {"k": 3, "alpha": 0.3}
    assert options.get("dual_cfg", {"image_scale": 1.25, "text_scale": 6.0}) == {
        "image_scale": 1.25, "text_scale": 6.0}  # fmt: skip
    for p in pipes:
        for q in p.processors:
            expected = {"temperature": {"temperature": 0.7}, "top_p": {"p": 0.8}}[q.name]
            assert q.options == expected


def test_generation_options_set_one_modality() -> None:
    image = generation_options(DecodingPreset(strategy="cd_k"), "image")
    assert image.image.pipelines[0].guidance.name == "cdk"
    assert image.text == GenerationOptions.Text()  # the other modality keeps its defaults
    text = generation_options(DecodingPreset(strategy="greedy", max_new_tokens=7), "text")
    assert text.text.max_new_tokens == 7 and text.image == GenerationOptions.Image()
    with pytest.raises(ValueError, match="output must be 'image' or 'text'"):
        generation_options(DecodingPreset(), "audio")  # type: ignore[arg-type]


def test_explicit_pipelines_replace_the_preset() -> None:
    explicit = [{"guidance": {"name": "cfg", "options": {"scale": 1.5}}, "selector": {"name": "greedy"}}]
    preset = DecodingPreset(strategy="ignored", pipelines=explicit)  # type: ignore[arg-type]
    assert preset_pipelines(preset) == [
        PipelineConfig(guidance=StrategyConfig("cfg", {"scale": 1.5}), selector=StrategyConfig("greedy"))
    ]
    assert preset_pipelines(preset) is not preset.pipelines  # a copy
    loaded = load_config(DecodingPreset, data={"strategy": "nope", "pipelines": explicit})
    assert loaded.pipelines == preset.pipelines
    with pytest.raises(ConfigError, match="selectr"):
        load_config(DecodingPreset, data={"pipelines": [{"selectr": {"name": "greedy"}}]})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategy=beam", "unknown strategy 'beam'; known: cfg, top_p, cd_k"),
        ("temperature=0", r"decoding\.temperature must be > 0"),
        ("max_new_tokens=0", r"decoding\.max_new_tokens must be > 0"),
        ("cfg_scale=high", r"cfg_scale"),
    ],
)
def test_bad_presets(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(DecodingPreset, overrides=[override])
