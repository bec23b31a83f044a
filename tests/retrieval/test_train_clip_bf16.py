"""CLIP training in bf16 on the CPU (``train_clip.precision: amp_bf16``): linear layers run in bf16."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from cm3leon.retrieval.encoder import build_clip_model, model_config
from cm3leon.retrieval.train_clip import _composer_parts, _run_key, train_clip
from tests._dtypes import output_dtypes
from tests.retrieval.synthetic import shape_documents
from tests.retrieval.test_train_clip import TINY, tiny_cfg


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(1, 400, (4, 24), generator=g)


def _clip() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_clip_model(model_config("cm3leon-clip-tiny", TINY))


def test_cpu_autocast_computes_in_bf16_and_the_loss_in_fp32() -> None:
    model, _ = _composer_parts(_clip(), cpu_autocast=True)
    batch = _batch()
    with output_dtypes(torch.nn.Linear) as seen:
        outputs = model(batch)
    assert seen and set(seen) == {torch.bfloat16}
    loss = model.loss(outputs, batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_fp32_is_bitwise_the_bare_clip() -> None:
    model, _ = _composer_parts(_clip(), cpu_autocast=False)
    bare, batch = _clip(), _batch()
    with output_dtypes(torch.nn.Linear) as seen:
        ours = model(batch)
    theirs = bare(*batch)
    assert set(seen) == {torch.float32}
    assert all(torch.equal(a, b) for a, b in zip(ours[:3], theirs[:3], strict=True))


def test_train_clip_with_amp_bf16_on_cpu(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tiny_cfg(tmp_path / "run", precision="amp_bf16", max_duration="2ba")
    with caplog.at_level(logging.INFO, logger="cm3leon.retrieval.train_clip"), output_dtypes(torch.nn.Linear) as seen:
        metrics = train_clip(cfg, documents=shape_documents(80), progress=False)
    assert torch.bfloat16 in seen and metrics["run_key"]["precision"] == "amp_bf16"
    assert sum("precision amp_bf16 on cpu (requested amp_bf16)" in r.getMessage() for r in caplog.records) == 1
    assert "precision" not in _run_key(tiny_cfg(tmp_path / "x"))  # fp32 keeps the key of earlier runs


def test_fp16_on_cpu_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"train_clip.precision: 'amp_fp16' is a GPU setting"):
        train_clip(tiny_cfg(tmp_path / "run", precision="amp_fp16"), documents=shape_documents(80), progress=False)
