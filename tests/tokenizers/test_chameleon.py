"""Chameleon compatibility: checkpoint keys/shapes, Lightning loader, identical codes vs transformers."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cm3leon.tokenizers.chameleon import (
    CHAMELEON_PREPROCESS,
    load_chameleon_checkpoint,
    load_encoder_half,
    map_transformers_state_dict,
    vqgan_config_from_taming_yaml,
)
from cm3leon.tokenizers.image_io import load_images
from cm3leon.tokenizers.vqgan import VQModel
from cm3leon.tokenizers.vqgan_config import VQGANConfig, vqgan_preset

# Key names and shapes of the state dict in Meta's released Chameleon VQ-GAN checkpoint
# (a copy of ../shared/reference/chameleon-vqgan-state-dict.tsv, so CI has it).
TSV = Path(__file__).resolve().parents[1] / "fixtures" / "chameleon-vqgan-state-dict.tsv"
SMALL = VQGANConfig(resolution=32, base_channels=32, channel_mult=(1, 2), num_res_blocks=1, z_channels=32,
                    codebook_size=64, codebook_dim=16)


def reference_shapes() -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in TSV.read_text().splitlines() if line.strip()]
    return {key: tuple(ast.literal_eval(shape)) for key, shape in rows}


def test_chameleon_preset_matches_released_state_dict_key_for_key() -> None:
    with torch.device("meta"):
        model = VQModel(vqgan_preset("chameleon"))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = reference_shapes()
    assert len(ref) == 293
    assert sorted(set(ref) - set(ours)) == [] and sorted(set(ours) - set(ref)) == []
    mismatched = {k: (ours[k], ref[k]) for k in ref if ours[k] != ref[k]}
    assert mismatched == {}
    assert sum(int(np.prod(s)) for s in ref.values()) == model.num_parameters()


# ------------------------------------------------------------------ Lightning checkpoint
def write_taming_yaml(path: Path, cfg: VQGANConfig) -> Path:
    path.write_text(
        "model:\n  target: taming.models.vqgan.VQModel\n  params:\n"
        f"    embed_dim: {cfg.codebook_dim}\n    n_embed: {cfg.codebook_size}\n"
        "    ddconfig:\n      double_z: false\n"
        f"      z_channels: {cfg.z_channels}\n      resolution: {cfg.resolution}\n"
        f"      in_channels: 3\n      out_ch: 3\n      ch: {cfg.base_channels}\n"
        f"      ch_mult: {list(cfg.channel_mult)}\n      num_res_blocks: {cfg.num_res_blocks}\n"
        "      attn_resolutions: []\n      dropout: 0.0\n"
        "    lossconfig:\n      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator\n"
    )
    return path


def lightning_checkpoint(model: VQModel, path: Path, *, drop: str | None = None) -> Path:
    """A checkpoint in PyTorch Lightning's layout, with training-only loss/discriminator keys."""
    state = {k: v.clone() for k, v in model.state_dict().items() if k != drop}
    state["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4)
    state["loss.perceptual_loss.net.slice1.0.weight"] = torch.randn(8, 3, 3, 3)
    ckpt = {"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8", "state_dict": state,
            "optimizer_states": [], "lr_schedulers": []}
    torch.save(ckpt, path)
    return path


def test_lightning_checkpoint_loads_strictly_with_yaml(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = VQModel(SMALL).eval()
    release = tmp_path / "tokenizer"
    release.mkdir()
    lightning_checkpoint(source, release / "vqgan.ckpt")
    write_taming_yaml(release / "vqgan.yaml", SMALL)
    tok = load_chameleon_checkpoint(release)  # directory form: vqgan.ckpt + vqgan.yaml
    assert tok.config == SMALL and tok.info["dropped_keys"] == 2
    for key, value in source.state_dict().items():
        assert torch.equal(tok.model.state_dict()[key], value), key
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(tok.encode_pixels(x), source.encode(x).flatten(1))


def test_lightning_checkpoint_errors(tmp_path: Path) -> None:
    source = VQModel(SMALL)
    yaml = write_taming_yaml(tmp_path / "vqgan.yaml", SMALL)
    missing = lightning_checkpoint(source, tmp_path / "missing.ckpt", drop="decoder.conv_out.bias")
    with pytest.raises(ValueError, match=r"missing\.ckpt\['state_dict'\]: .*missing 1 key\(s\) \['decoder\.conv_out\.bias'\]"):
        load_chameleon_checkpoint(missing, config_path=yaml)
    wrong = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": {**source.state_dict(), "quant_conv.bias": torch.zeros(3)}}, wrong)
    with pytest.raises(ValueError, match=r"key 'quant_conv\.bias' has shape \(3,\), the model expects \(16,\)"):
        load_chameleon_checkpoint(wrong, config_path=yaml)
    plain = tmp_path / "plain.ckpt"
    torch.save(source.state_dict(), plain)
    with pytest.raises(ValueError, match=r"plain\.ckpt: not a Lightning checkpoint \(no 'state_dict'"):
        load_chameleon_checkpoint(plain, config_path=yaml)
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": Path("/etc")}, unsafe)  # arbitrary object
    with pytest.raises(ValueError, match=r"unsafe\.ckpt: refused to unpickle"):
        load_chameleon_checkpoint(unsafe, config_path=yaml)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.ckpt: empty checkpoint file"):
        load_chameleon_checkpoint(empty, config_path=yaml)
    with pytest.raises(FileNotFoundError, match="absent.ckpt: checkpoint not found"):
        load_chameleon_checkpoint(tmp_path / "absent.ckpt")


def test_taming_yaml_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  params:\n    n_embed: 8\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: missing key 'ddconfig' under model.params"):
        vqgan_config_from_taming_yaml(path)
    chameleon_yaml = write_taming_yaml(tmp_path / "vqgan.yaml", vqgan_preset("chameleon"))
    assert vqgan_config_from_taming_yaml(chameleon_yaml) == vqgan_preset("chameleon")


@pytest.mark.slow
def test_full_size_chameleon_checkpoint_round_trip(tmp_path: Path) -> None:
    """The released layout at full size: 293 tensors + loss keys, 68.7M parameters."""
    torch.manual_seed(0)
    source = VQModel(vqgan_preset("chameleon"))
    path = lightning_checkpoint(source, tmp_path / "vqgan.ckpt")
    tok = load_chameleon_checkpoint(path)
    assert tok.num_tokens == 1024 and tok.image_size == 512
    assert all(torch.equal(tok.model.state_dict()[k], v) for k, v in source.state_dict().items())


# ------------------------------------------------------------------ transformers
def _transformers_vqvae(seed: int = 0):
    from transformers import ChameleonVQVAEConfig
    from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAE

    torch.manual_seed(seed)
    return ChameleonVQVAE(ChameleonVQVAEConfig()).eval()  # Chameleon's defaults, random init


def _spread_codebook(hf, pixels: torch.Tensor) -> None:
    """Put codes near real latents so that many codes are used and near-ties occur."""
    with torch.no_grad():
        latents = hf.quant_conv(hf.encoder(pixels)).permute(0, 2, 3, 1).reshape(-1, 256)
        g = torch.Generator().manual_seed(1)
        pick = torch.randint(0, latents.shape[0], (hf.quantize.embedding.weight.shape[0],), generator=g)
        noise = torch.randn(len(pick), 256, generator=g) * latents.std() * 0.05
        hf.quantize.embedding.weight.copy_(latents[pick] + noise)


def _images(n: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    base = [rng.integers(0, 256, (size // 8, size // 8 + 3, 3), dtype=np.uint8) for _ in range(n)]
    return [Image.fromarray(b).resize((size + 24, size), Image.Resampling.BILINEAR) for b in base]


def _check_identical_codes(size: int) -> None:
    hf = _transformers_vqvae()
    from cm3leon.tokenizers.image_io import Preprocess

    pixels, _, _ = load_images(_images(2, size), Preprocess(size, background=CHAMELEON_PREPROCESS.background))
    _spread_codebook(hf, pixels)
    ours = VQModel(vqgan_preset("chameleon")).eval()
    # transformers nests the VQ in its model as model.vqmodel.*; map that layout.
    nested = {f"model.vqmodel.{k}": v for k, v in hf.state_dict().items()}
    nested["model.embed_tokens.weight"] = torch.zeros(2, 2)  # language-model keys are dropped
    mapped = map_transformers_state_dict(nested)
    assert set(mapped) == set(hf.state_dict())
    load_encoder_half(ours, mapped, source="transformers ChameleonVQVAE")
    with torch.no_grad():
        _, _, hf_codes = hf.encode(pixels)
        codes = ours.encode(pixels)
    hf_codes = hf_codes.view(codes.shape)
    assert torch.equal(codes, hf_codes)
    assert codes.unique().numel() > codes.numel() // 4  # many distinct codes: a real comparison


def test_identical_codes_to_transformers_chameleon_vqvae() -> None:
    _check_identical_codes(128)


@pytest.mark.slow
def test_identical_codes_to_transformers_at_512() -> None:
    _check_identical_codes(512)


def test_encoder_half_loading_is_strict() -> None:
    ours = VQModel(SMALL)
    half = {k: v for k, v in ours.state_dict().items() if not k.startswith("decoder.")}
    load_encoder_half(ours, half)
    half.pop("quant_conv.bias")
    with pytest.raises(ValueError, match=r"missing \['quant_conv.bias'\]"):
        load_encoder_half(ours, half)
    with pytest.raises(ValueError, match=r"unexpected \['decoder.conv_in.bias'"):
        load_encoder_half(ours, {**ours.state_dict()})


def test_chameleon_preprocessing_preset() -> None:
    assert (CHAMELEON_PREPROCESS.size, CHAMELEON_PREPROCESS.resize) == (512, "shortest_side")
    rgba = Image.new("RGBA", (640, 520), (10, 20, 30, 0))  # fully transparent -> white
    pixels, _, _ = load_images([rgba], CHAMELEON_PREPROCESS)
    assert pixels.shape == (1, 3, 512, 512) and torch.all(pixels == 1.0)
