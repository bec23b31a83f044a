"""Decoding with bf16 weights (``model.dtype: bf16`` / ``--dtype bf16``): close to fp32, same outputs shape.

Tolerance (stated, measured on this random ``cm3leon_tiny``, std 0.1): bf16 weights change
a log-probability by at most 0.1 nats (measured 0.03) and keep the argmax on >= 95% of
positions (measured 100%).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.exported import load_exported, save_exported
from cm3leon.decoding.config import GenerateConfig, ModelSource, TokenizerSources
from cm3leon.decoding.generator import CM3LeonGenerator
from cm3leon.decoding.prompts import Prompt
from cm3leon.decoding.run import build_generator
from tests.decoding._helpers import FakeImageTokenizer, colour_image, random_model, setup

VOCAB, DT = setup()


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bf16") / "export"
    save_exported(random_model(VOCAB, dtype=torch.float32, seed=1, std=0.1), out, vocab=VOCAB)
    return out


def test_bf16_logits_are_close_to_fp32(export: Path) -> None:
    fp32, bf16 = (load_exported(export, dtype=d).model for d in (torch.float32, torch.bfloat16))
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    ids = torch.randint(0, VOCAB.size, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = (m(ids).float().log_softmax(-1) for m in (fp32, bf16))  # (2, 30, V)
    assert torch.isfinite(got).all()
    assert float((want - got).abs().max()) <= 0.1
    assert float((want.argmax(-1) == got.argmax(-1)).float().mean()) >= 0.95
    cache = bf16.new_cache(2, 40)
    assert cache.k.dtype == torch.bfloat16  # the KV cache follows the weights: half the bytes


def test_generation_with_bf16_weights(export: Path) -> None:
    gen = CM3LeonGenerator.load(export, text_tokenizer="bytes", image_tokenizer=FakeImageTokenizer(),
                                dtype=torch.bfloat16)
    prompts = [Prompt.text_to_image("a red cube", id="t2i"),
               Prompt.image_to_text(colour_image((255, 0, 0)), prefix="Image of ", suffix=":", id="cap",
                                    max_new_tokens=4)]
    t2i, cap = gen.generate(prompts, num_candidates=3, seed=0)
    for c in t2i.candidates:
        assert c.codes.shape == (9,) and ((c.codes >= 0) & (c.codes < VOCAB.image_size)).all()
        assert c.image.size == (12, 12)
    assert len(cap.candidates) == 3 and all(isinstance(c.text, str) for c in cap.candidates)
    fp32 = CM3LeonGenerator.load(export, text_tokenizer="bytes", image_tokenizer=FakeImageTokenizer())
    same = fp32.generate(prompts[:1], num_candidates=3, seed=0)[0]
    agree = np.mean([np.mean(a.codes == b.codes) for a, b in zip(t2i.candidates, same.candidates, strict=True)])
    assert agree >= 0.5  # sampling from nearly equal distributions with one seed mostly agrees


def test_dtype_names_in_the_config(export: Path) -> None:
    def cfg(dtype: str) -> GenerateConfig:
        return GenerateConfig(model=ModelSource(export=str(export), dtype=dtype),
                              tokenizer=TokenizerSources(text="bytes", image=None))

    gen = build_generator(cfg("bf16"))
    assert next(gen.model.parameters()).dtype == torch.bfloat16
    assert next(build_generator(cfg("fp32")).model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match=r"model.dtype: unknown dtype 'half'; known: \["):
        build_generator(cfg("half"))


def test_cli_dtype_flag_reaches_the_summary(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    prompt = tmp_path / "p.jsonl"
    prompt.write_text(json.dumps({"id": "c", "task": "text_infill", "prefix": "a ", "suffix": " b",
                                  "max_new_tokens": 3}) + "\n")
    args = ["generate", "--model", str(export), "--text-tokenizer", "bytes", "--prompts", str(prompt),
            "--dtype", "bf16", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dtype"] == "bfloat16"
    assert json.loads((out / "summary.json").read_text())["dtype"] == "bfloat16"
    bad = CliRunner().invoke(cli, [*args[:-2], "--dtype", "int8", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "--dtype" in bad.output
