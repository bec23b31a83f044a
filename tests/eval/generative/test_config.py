"""Decoding presets and the generator config: valid for cm3leon-decoding, errors named."""

from __future__ import annotations

import pytest

from cm3leon.core.config import ConfigError, load_config
from cm3leon.decoding.config import GenerateConfig
from cm3leon.decoding.pipeline import build_pipelines
from cm3leon.eval.generative import (
    STRATEGIES,
    DecodingChoice,
    ModelSource,
    RetrievalChoice,
    TextToImageEvalConfig,
    generate_config,
)

MODEL = ModelSource(export="runs/x", text_tokenizer="bytes", image_tokenizer="vqgan")


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_builds_decoding_pipelines(strategy: str) -> None:
    choice = DecodingChoice(strategy=strategy, cfg_scale=2.5, top_p=0.8, cd_k=3, cd_alpha=0.3)
    data = generate_config(MODEL, choice, RetrievalChoice(k=2, retriever="bm25", bank="runs/bank"),
                           output="image", num_candidates=4, seed=3, batch_size=2)  # fmt: skip
    cfg = load_config(GenerateConfig, data=data)  # the generator's own schema accepts it
    pipes = build_pipelines(cfg.decoding.image.pipelines, where="decoding.image.pipelines")
    assert len(pipes) == (2 if strategy == "cd_k_top_p" else 1)
    assert cfg.retrieval.k == 2 and cfg.retrieval.retriever.options == {"bank": "runs/bank"}
    assert cfg.num_candidates == 4 and cfg.seed == 3 and cfg.rerank.enabled is False
    names = [(p.guidance.name, [q.name for q in p.processors], p.selector.name)
             for p in cfg.decoding.image.pipelines]  # fmt: skip
    expected = {
        "cfg": [("cfg", ["temperature"], "sample")],
        "top_p": [("cfg", ["temperature", "top_p"], "sample")],
        "cd_k": [("cdk", ["temperature"], "sample")],
        "cd_k_top_p": [
            ("cfg", ["temperature", "top_p"], "sample"),
            ("cdk", ["temperature"], "sample"),
        ],
        "greedy": [("none", [], "greedy")],
        "cfg_greedy": [("cfg", [], "greedy")],
        "dual_cfg": [("dual_cfg", ["temperature", "top_p"], "sample")],
    }[strategy]
    assert names == expected
    options = {s.guidance.name: s.guidance.options for s in cfg.decoding.image.pipelines}
    assert options.get("cfg", {"scale": 2.5}) == {"scale": 2.5}
    assert options.get("cdk", {"k": 3, "alpha": 0.3}) == {"k": 3, "alpha": 0.3}


def test_text_outputs_and_explicit_pipelines() -> None:
    explicit = [
        {"guidance": {"name": "cfg", "options": {"scale": 1.5}}, "selector": {"name": "greedy"}}
    ]
    data = generate_config(MODEL, DecodingChoice(strategy="ignored", pipelines=explicit, max_new_tokens=7),
                           RetrievalChoice(), output="text", num_candidates=1, seed=0, batch_size=1)  # fmt: skip
    cfg = load_config(GenerateConfig, data=data)
    assert cfg.decoding.text.max_new_tokens == 7
    assert cfg.decoding.text.pipelines[0].guidance.options == {"scale": 1.5}
    with pytest.raises(ValueError, match="output must be 'image' or 'text'"):
        generate_config(MODEL, DecodingChoice(), RetrievalChoice(), output="audio", num_candidates=1, seed=0,
                        batch_size=1)  # fmt: skip


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("decoding.strategy=beam", "unknown strategy 'beam'; known: cfg, top_p, cd_k"),
        ("retrieval.k=-1", r"retrieval\.k must be >= 0"),
        ("num_samples=0", "num_samples must be >= 1"),
        ("decoding.temperature=0", r"decoding\.temperature must be > 0"),
        ("decoding.cfg_scale=high", r"decoding\.cfg_scale"),
        ("data.ground_truth=null", "give data.captions"),
    ],
)
def test_bad_protocol_configs(override: str, message: str) -> None:
    base = ["model.export=e", "model.text_tokenizer=bytes", "data.ground_truth=scenes.jsonl"]
    with pytest.raises(ConfigError, match=message):
        load_config(TextToImageEvalConfig, overrides=[*base, override])


def test_fid_features_auto_choice(tmp_path, monkeypatch) -> None:
    from cm3leon.eval.generative.common import fid_features
    from cm3leon.eval.generative.config import FidChoice

    monkeypatch.delenv("CM3LEON_FID_INCEPTION", raising=False)
    assert fid_features(FidChoice()) == ("clip", {})  # no weights file: the CLIP encoder
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"x")
    assert fid_features(FidChoice(weights_path=str(weights))) == (
        "inception",
        {"weights_path": str(weights)},
    )
    monkeypatch.setenv("CM3LEON_FID_INCEPTION", str(weights))
    assert fid_features(FidChoice()) == ("inception", {"weights_path": str(weights)})
    assert fid_features(FidChoice(features="clip")) == ("clip", {})  # an explicit choice wins
    with pytest.raises(FileNotFoundError, match="Inception weights file .*nope.pth not found"):
        fid_features(FidChoice(weights_path=str(tmp_path / "nope.pth")))
