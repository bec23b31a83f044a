"""The protocols' config sections and the typed generator config they build."""

from __future__ import annotations

import pytest

from cm3leon.core.config import ConfigError, load_config
from cm3leon.decoding.config import GenerateConfig
from cm3leon.decoding.presets import DecodingPreset, preset_pipelines
from cm3leon.eval.protocols import TextToImageConfig
from cm3leon.eval.protocols.config import ClipChoice, ModelSource, RetrievalChoice, generate_config

MODEL = ModelSource(export="runs/x", text_tokenizer="bytes", image_tokenizer="vqgan")


def test_generate_config_is_typed_and_valid_for_the_generator() -> None:
    preset = DecodingPreset(strategy="cd_k_top_p", cfg_scale=2.5)
    cfg = generate_config(MODEL, preset, RetrievalChoice(k=2, retriever="bm25", bank="runs/bank"),
                          output="image", num_candidates=4, seed=3, batch_size=2)  # fmt: skip
    assert isinstance(cfg, GenerateConfig)
    assert cfg.decoding.image.pipelines == preset_pipelines(preset)
    assert cfg.model.export == "runs/x" and cfg.tokenizer.image == "vqgan"
    assert cfg.retrieval.k == 2 and cfg.retrieval.retriever.name == "bm25"
    assert cfg.retrieval.retriever.options == {"bank": "runs/bank"}
    assert cfg.num_candidates == 4 and cfg.seed == 3 and cfg.rerank.enabled is False
    # the generator's own schema accepts it unchanged
    from omegaconf import OmegaConf

    again = load_config(GenerateConfig, data=OmegaConf.to_container(OmegaConf.structured(cfg)))
    assert again == cfg
    text = generate_config(MODEL, DecodingPreset(strategy="greedy", max_new_tokens=7), RetrievalChoice(),
                           output="text", num_candidates=1, seed=0, batch_size=1,
                           rerank=ClipChoice(options={"path": "clip"}))  # fmt: skip
    assert text.decoding.text.max_new_tokens == 7
    assert text.rerank.enabled and text.rerank.encoder.options == {"path": "clip"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("decoding.strategy=beam", "unknown strategy 'beam'; known: cfg, top_p, cd_k"),
        ("retrieval.k=-1", r"retrieval\.k must be >= 0"),
        ("num_samples=0", "num_samples must be >= 1"),
        ("decoding.temperature=0", r"decoding\.temperature must be > 0"),
        ("decoding.cfg_scale=high", r"decoding\.cfg_scale"),
        ("data.ground_truth=null", "give data.captions"),
        ("predictions=m.json", None),
    ],
)
def test_bad_protocol_configs(override: str, message: str | None) -> None:
    base = ["model.export=e", "model.text_tokenizer=bytes", "data.ground_truth=scenes.jsonl"]
    if message is None:  # scoring a manifest against the ground truth's prompts is valid
        assert load_config(TextToImageConfig, overrides=[*base, override]).predictions == "m.json"
        return
    with pytest.raises(ConfigError, match=message):
        load_config(TextToImageConfig, overrides=[*base, override])


def test_scoring_predictions_needs_a_reference_or_the_prompts() -> None:
    with pytest.raises(ConfigError, match="data.reference: scoring predictions"):
        load_config(TextToImageConfig, overrides=["predictions=m.json"])
    cfg = load_config(TextToImageConfig, overrides=["predictions=m.json", "data.reference=ref.npz"])
    assert cfg.model.export is None  # no model needed to score


def test_fid_features_auto_choice(tmp_path, monkeypatch) -> None:
    from cm3leon.eval.protocols.common import fid_features
    from cm3leon.eval.protocols.config import FidChoice

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
