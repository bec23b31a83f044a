"""VQ-GAN network and image tokenizer: shapes, id ranges, presets, export/import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cm3leon.core.interfaces import ImageTokenizer
from cm3leon.tokenizers.image_tokenizer import (
    VQGANTokenizer,
    build_image_tokenizer,
    load_image_tokenizer,
)
from cm3leon.tokenizers.quantizer import VectorQuantizer
from cm3leon.tokenizers.vqgan import VQModel
from cm3leon.tokenizers.vqgan_config import VQGANConfig, preset_names, vqgan_preset


@pytest.mark.parametrize(
    ("preset", "resolution", "factor", "tokens", "codebook"),
    [
        ("chameleon", 512, 16, 1024, 8192),
        ("paper", 256, 8, 1024, 8192),
        ("small_64", 64, 4, 256, 1024),
        ("small_32", 32, 4, 64, 512),
    ],
)
def test_presets(preset: str, resolution: int, factor: int, tokens: int, codebook: int) -> None:
    cfg = vqgan_preset(preset)
    assert (cfg.resolution, cfg.downsample_factor, cfg.num_tokens, cfg.codebook_size) == (
        resolution, factor, tokens, codebook)


def test_chameleon_preset_size() -> None:
    with torch.device("meta"):
        model = VQModel(vqgan_preset("chameleon"))
    assert len(model.state_dict()) == 293
    assert round(model.num_parameters() / 1e6, 1) == 68.7


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown VQ-GAN preset 'huge'; known presets: chameleon, paper"):
        vqgan_preset("huge")
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['codebook'\]"):
        vqgan_preset("small_32", codebook=3)
    with pytest.raises(ValueError, match="not divisible by the downsampling factor 4"):
        VQGANConfig(resolution=30, channel_mult=(1, 2, 2), base_channels=32)
    with pytest.raises(ValueError, match="not divisible by num_groups=32"):
        VQGANConfig(base_channels=16, channel_mult=(1, 2))
    with pytest.raises(ValueError, match="codebook_size must be a positive integer"):
        VQGANConfig(codebook_size=0)
    cfg = vqgan_preset("small_32", codebook_size=64)
    assert VQGANConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"cfg.json: unknown VQ-GAN config key\(s\) \['colour'\]"):
        VQGANConfig.from_dict({**cfg.to_dict(), "colour": 1}, source="cfg.json")
    assert preset_names() == ["chameleon", "paper", "small_32", "small_64"]


@pytest.mark.parametrize("preset", ["small_32", "small_64"])
def test_encode_decode_shapes_and_ranges(preset: str) -> None:
    torch.manual_seed(0)
    model = VQModel(vqgan_preset(preset)).eval()
    cfg = model.config
    x = torch.rand(3, 3, cfg.resolution, cfg.resolution) * 2 - 1
    with torch.no_grad():
        codes = model.encode(x)
        out = model(x)
        rec = model.decode(codes)
    assert codes.shape == (3, cfg.latent_size, cfg.latent_size) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < cfg.codebook_size
    assert torch.equal(out.codes, codes)
    assert rec.shape == x.shape and out.reconstruction.shape == x.shape
    assert torch.allclose(model.decode(codes.flatten(1)), rec)
    assert out.codebook_loss.item() >= 0 and out.commitment_loss.item() >= 0


def test_model_rejects_bad_shapes() -> None:
    model = VQModel(vqgan_preset("small_32"))
    with pytest.raises(ValueError, match=r"expects images \(B, 3, H, W\)"):
        model.encode(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="not divisible by the downsampling factor 4"):
        model.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match="cannot reshape 10 codes"):
        model.decode(torch.zeros(1, 10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"VQ code 512 out of range \[0, 512\)"):
        model.decode(torch.full((1, 8, 8), 512))


def test_quantizer_picks_nearest_code_and_restarts_dead_codes() -> None:
    q = VectorQuantizer(4, 2)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]))
    z = torch.tensor([[0.9, 0.1], [0.1, 0.8], [0.0, 0.1], [4.0, 6.0]]).T.reshape(1, 2, 2, 2)
    out = q(z)
    assert out.codes.flatten().tolist() == [1, 2, 0, 3]
    # Straight-through: the quantized values equal the codes in the forward pass.
    assert torch.allclose(out.quantized.permute(0, 2, 3, 1).reshape(-1, 2), q.embedding.weight[[1, 2, 0, 3]])
    dead = torch.tensor([False, False, False, True])
    candidates = torch.tensor([[7.0, -7.0]])
    assert q.restart_codes(dead, candidates) == 1
    assert torch.allclose(q.embedding.weight[3], torch.tensor([7.0, -7.0]), atol=0.2)
    assert torch.equal(q.embedding.weight[0], torch.zeros(2))


def test_l2_normalised_lookup_uses_cosine() -> None:
    q = VectorQuantizer(2, 2, l2_normalized=True)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 0.1]]))
    z = torch.tensor([[0.0, 3.0]]).T.reshape(1, 2, 1, 1)  # far from code 1 in L2, same direction
    out = q(z)
    assert out.codes.item() == 1
    assert torch.allclose(out.quantized.flatten(), torch.tensor([0.0, 1.0]))


# ------------------------------------------------------------------ tokenizer
def test_tokenizer_protocol_encode_decode(shapes_dir: Path) -> None:
    tok = build_image_tokenizer("small_32", seed=0)
    assert isinstance(tok, ImageTokenizer)
    assert (tok.codebook_size, tok.num_tokens, tok.image_size) == (512, 64, 32)
    files = sorted(shapes_dir.glob("*.png"))[:3]
    arrays = [np.array(Image.open(f)) for f in files]
    codes = tok.encode([files[0], Image.open(files[1]), arrays[2], torch.from_numpy(arrays[2]).permute(2, 0, 1)])
    assert codes.shape == (4, 64) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 512
    assert torch.equal(codes[2], codes[3])  # array and uint8 CHW tensor of the same image
    assert torch.equal(tok.encode(files[0])[0], codes[0])  # a single path is a batch of one
    images = tok.decode(codes)
    assert len(images) == 4 and all(im.mode == "RGB" and im.size == (32, 32) for im in images)
    big = Image.fromarray(np.tile(arrays[0], (3, 2, 1)))  # 96x64 -> resized and cropped
    assert tok.encode([big]).shape == (1, 64)


def test_tokenizer_batches_larger_than_batch_size() -> None:
    tok = VQGANTokenizer.from_preset("small_32", seed=0)
    tok.batch_size = 4
    x = torch.rand(10, 3, 32, 32) * 2 - 1
    codes = tok.encode_pixels(x)
    tok.batch_size = 32
    assert torch.equal(codes, tok.encode_pixels(x))
    assert tok.decode_pixels(codes).shape == (10, 3, 32, 32)


def test_decode_rejects_bad_codes() -> None:
    tok = VQGANTokenizer.from_preset("small_32", seed=0)
    with pytest.raises(ValueError, match=r"codes must be \(B, 64\), got shape \(2, 63\)"):
        tok.decode(torch.zeros(2, 63, dtype=torch.long))
    bad = torch.zeros(2, 64, dtype=torch.long)
    bad[1, 5] = 512
    with pytest.raises(ValueError, match=r"VQ code 512 at image 1, position 5 is out of range \[0, 512\)"):
        tok.decode(bad)
    with pytest.raises(ValueError, match="codes must be integers"):
        tok.decode(torch.zeros(1, 64))


def test_export_import_round_trip(tmp_path: Path) -> None:
    tok = VQGANTokenizer.from_preset("small_32", seed=1, codebook_size=128)
    tok.info["note"] = "unit test"
    out = tok.save(tmp_path / "vq")
    assert sorted(p.name for p in out.iterdir()) == ["COMPLETE", "cm3leon_tokenizer.json", "config.json",
                                                     "model.safetensors"]
    assert json.loads((out / "cm3leon_tokenizer.json").read_text())["name"] == "vqgan"
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in out.iterdir())
    again = load_image_tokenizer(out)
    assert again.config == tok.config and again.info["note"] == "unit test"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(again.encode_pixels(x), tok.encode_pixels(x))
    codes = tok.encode_pixels(x)
    assert torch.equal(again.decode_pixels(codes), tok.decode_pixels(codes))


def test_import_rejects_incomplete_tampered_or_mismatched(tmp_path: Path) -> None:
    tok = VQGANTokenizer.from_preset("small_32", seed=1)
    out = tok.save(tmp_path / "vq")
    (out / "COMPLETE").unlink()
    with pytest.raises(ValueError, match="no COMPLETE marker"):
        load_image_tokenizer(out)
    out = tok.save(tmp_path / "vq2")
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.safetensors: SHA-256 .* does not match"):
        load_image_tokenizer(out)
    out = tok.save(tmp_path / "vq3")
    meta = json.loads((out / "config.json").read_text())
    meta["vqgan"]["codebook_size"] = 256
    meta.pop("sha256")
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"key 'quantize\.embedding\.weight' has shape \(512, 16\)"):
        load_image_tokenizer(out)
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found"):
        load_image_tokenizer(tmp_path / "absent")


def test_seeded_construction_is_reproducible_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = build_image_tokenizer("small_32", seed=7)
    assert torch.equal(torch.rand(3), expected)
    b = VQGANTokenizer.from_preset("small_32", seed=7)
    c = VQGANTokenizer.from_preset("small_32", seed=8)
    w = "quantize.embedding.weight"
    assert torch.equal(a.model.state_dict()[w], b.model.state_dict()[w])
    assert not torch.equal(a.model.state_dict()[w], c.model.state_dict()[w])
