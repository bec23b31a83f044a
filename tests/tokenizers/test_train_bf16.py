"""VQ training in bf16 on the CPU (``image.precision: amp_bf16``): convolutions in bf16, codes in fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cm3leon.tokenizers.configs import check_config
from cm3leon.tokenizers.train_image import train_image_tokenizer
from cm3leon.tokenizers.vq_training import VQGANComposerModel
from cm3leon.tokenizers.vqgan import VQModel
from cm3leon.tokenizers.vqgan_config import vqgan_preset
from tests._dtypes import output_dtypes

from .test_train import image_config


def _vq(seed: int = 0) -> VQModel:
    torch.manual_seed(seed)
    return VQModel(vqgan_preset("small_32", codebook_size=64))


def test_cpu_autocast_runs_convolutions_in_bf16_and_quantizes_in_fp32() -> None:
    pixels = torch.rand(4, 3, 32, 32) * 2 - 1
    model = VQGANComposerModel(_vq(), cpu_autocast=True)
    with output_dtypes(torch.nn.Conv2d) as seen:
        out = model(pixels)
    assert seen and set(seen) == {torch.bfloat16}
    assert out.latents.dtype == torch.float32 and out.reconstruction.dtype == torch.float32
    # the nearest-code search ran in fp32 on the (bf16-computed) latents
    assert torch.equal(out.codes.reshape(-1), model.model.quantize.lookup(out.latents))
    losses = model.loss(out, pixels)
    assert losses["total"].dtype == torch.float32 and torch.isfinite(losses["total"])
    losses["total"].backward()
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_fp32_is_bitwise_the_bare_vq_model() -> None:
    pixels = torch.rand(4, 3, 32, 32) * 2 - 1
    bare, wrapped = _vq(), VQGANComposerModel(_vq(), cpu_autocast=False)
    with output_dtypes(torch.nn.Conv2d) as seen:
        out = wrapped(pixels)
    expected = bare(pixels)
    assert set(seen) == {torch.float32}
    assert torch.equal(out.reconstruction, expected.reconstruction) and torch.equal(out.codes, expected.codes)
    assert torch.equal(out.codebook_loss, expected.codebook_loss)


def test_train_image_with_amp_bf16_on_cpu(shapes_dir: Path, tmp_path: Path) -> None:
    cfg = image_config(tmp_path / "run", [str(shapes_dir)], max_steps=1, save_interval=1, batch_size=4,
                       precision="amp_bf16")
    with output_dtypes(torch.nn.Conv2d) as seen:
        summary = train_image_tokenizer(cfg)
    assert summary["steps"] == 1 and torch.bfloat16 in seen  # training forwards
    assert torch.float32 in seen  # the before/after evaluation stays fp32
    log = (tmp_path / "run" / "train.log").read_text()
    assert "precision amp_bf16 on cpu (requested amp_bf16)" in log


@pytest.mark.parametrize("precision, message", [
    ("amp_fp16", "image.precision: 'amp_fp16' is a GPU setting"),
    ("bf16", "image.precision: 'bf16' is not one of ['auto', 'fp32', 'amp_bf16', 'amp_fp16']"),
])
def test_precision_errors_name_the_key(tmp_path: Path, precision: str, message: str) -> None:
    cfg = image_config(tmp_path / "run", ["x"], precision=precision)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        check_config(cfg, source="vq.yaml")
    assert str(err.value).startswith("vq.yaml: ")
    for ok in ("auto", "amp_bf16", "fp32"):
        check_config(image_config(tmp_path / "run", ["x"], precision=ok), source="vq.yaml")
