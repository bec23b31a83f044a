"""The CLIP document encoder: §2.1's document vector, local checkpoints, feature view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cm3leon.core.documents import Document, ImageSegment
from cm3leon.core.interfaces import DocumentEncoder
from cm3leon.retrieval.encoder import (
    ClipDocumentEncoder,
    EncoderError,
    build_clip_model,
    load_encoder,
    model_config,
    save_encoder,
)
from tests.retrieval.synthetic import render


def test_implements_the_document_encoder_protocol(tiny_encoder: ClipDocumentEncoder) -> None:
    assert isinstance(tiny_encoder, DocumentEncoder)
    assert tiny_encoder.dim == 32


def test_document_vector_is_normalised_average_of_normalised_parts(tiny_encoder: ClipDocumentEncoder) -> None:
    img = render("red", "circle", "left")
    doc = Document.of("a red circle on the left", img, id="d")
    t = tiny_encoder.encode_text([doc.text])[0]
    i = tiny_encoder.encode_image([img])[0]
    assert t.norm().item() == pytest.approx(1.0, abs=1e-5) and i.norm().item() == pytest.approx(1.0, abs=1e-5)
    expected = F.normalize(t + i, dim=0)
    got = tiny_encoder.encode_documents([doc])[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # Order of segments does not matter; the parts are what count.
    flipped = Document.of(img, "a red circle on the left")
    torch.testing.assert_close(tiny_encoder.encode_documents([flipped])[0], expected, atol=1e-5, rtol=1e-5)


def test_single_modality_documents_use_the_part_they_have(tiny_encoder: ClipDocumentEncoder) -> None:
    img = render("blue", "square", "right")
    vecs = tiny_encoder.encode_documents([Document.of("only text"), Document.of(img)])
    torch.testing.assert_close(vecs[0], tiny_encoder.encode_text(["only text"])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vecs[1], tiny_encoder.encode_image([img])[0], atol=1e-5, rtol=1e-5)


def test_several_images_are_averaged(tiny_encoder: ClipDocumentEncoder) -> None:
    a, b = render("red", "circle", "left"), render("green", "triangle", "right")
    emb = tiny_encoder.encode_image([a, b])
    doc = Document.of("two shapes", a, "and", b)
    image_part = F.normalize(emb.sum(0), dim=0)
    expected = F.normalize(tiny_encoder.encode_text([doc.text])[0] + image_part, dim=0)
    torch.testing.assert_close(tiny_encoder.encode_documents([doc])[0], expected, atol=1e-5, rtol=1e-5)


def test_empty_document_is_an_error(tiny_encoder: ClipDocumentEncoder) -> None:
    with pytest.raises(EncoderError, match="'empty'.*neither text nor image"):
        tiny_encoder.encode_documents([Document.of("  ", id="empty")])


def test_vq_only_images_need_a_decoder(tiny_encoder: ClipDocumentEncoder) -> None:
    doc = Document((ImageSegment(codes=(1, 2, 3, 4)),), id="codes-only")
    with pytest.raises(EncoderError, match="codes-only.*only VQ codes"):
        tiny_encoder.encode_documents([doc])
    img = render("yellow", "circle", "left")
    calls = []

    def decode(codes: torch.Tensor):
        calls.append(codes.tolist())
        return [img]

    vec = tiny_encoder.encode_documents([doc], code_decoder=decode)[0]
    assert calls == [[[1, 2, 3, 4]]]
    torch.testing.assert_close(vec, tiny_encoder.encode_image([img])[0], atol=1e-5, rtol=1e-5)


def test_feature_extractor_view_matches_pil_path(tiny_encoder: ClipDocumentEncoder) -> None:
    imgs = [render("red", "circle", "left"), render("purple", "square", "right")]
    batch = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    feats = tiny_encoder(batch)
    assert feats.shape == (2, 32)
    torch.testing.assert_close(feats, tiny_encoder.encode_image(imgs), atol=1e-4, rtol=1e-4)
    with pytest.raises(EncoderError, match="expected an image batch"):
        tiny_encoder(torch.zeros(3, 32, 32))


def test_encoder_is_frozen(tiny_encoder: ClipDocumentEncoder) -> None:
    tiny_encoder.train()
    assert not tiny_encoder.training and not tiny_encoder.model.training
    assert not any(p.requires_grad for p in tiny_encoder.parameters())


def test_local_dir_is_open_clip_format(tiny_encoder_dir: Path, tiny_encoder: ClipDocumentEncoder) -> None:
    import open_clip

    model = open_clip.create_model(f"local-dir:{tiny_encoder_dir}")
    ours = tiny_encoder.model.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, ours[key])


def test_architecture_by_name_with_local_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    cfg = model_config("cm3leon-clip-tiny", {"vision_cfg": {"layers": 1}, "text_cfg": {"layers": 1}})
    assert cfg["vision_cfg"]["layers"] == 1 and cfg["vision_cfg"]["width"] == 64  # the rest kept
    model = build_clip_model(model_config("cm3leon-clip-tiny"))
    pt = tmp_path / "weights.pt"
    torch.save(model.state_dict(), pt)  # the plain state-dict format open_clip loads
    from safetensors.torch import save_file

    st = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    texts = ["a green triangle on the left"]
    ref = F.normalize(model.eval().encode_text(open_clip_tokens(texts, 32)), dim=-1)
    for path in (pt, st):
        enc = load_encoder(model="cm3leon-clip-tiny", pretrained=path)
        torch.testing.assert_close(enc.encode_text(texts), ref, atol=1e-5, rtol=1e-5)
    # Fingerprints identify the weights, so a bank can refuse a different encoder.
    other = tmp_path / "other.pt"
    torch.save(build_clip_model(model_config("cm3leon-clip-tiny")).state_dict(), other)
    fp = load_encoder(model="cm3leon-clip-tiny", pretrained=pt).fingerprint
    assert fp == load_encoder(model="cm3leon-clip-tiny", pretrained=pt).fingerprint
    assert fp != load_encoder(model="cm3leon-clip-tiny", pretrained=other).fingerprint


def open_clip_tokens(texts: list[str], context: int) -> torch.Tensor:
    import open_clip

    return open_clip.get_tokenizer("cm3leon-clip-tiny", context_length=context)(texts)


def test_checkpoint_errors_name_the_file(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    with pytest.raises(EncoderError, match="exactly one"):
        load_encoder()
    with pytest.raises(EncoderError, match="not a CLIP encoder directory"):
        load_encoder(tmp_path)
    with pytest.raises(EncoderError, match="needs pretrained"):
        load_encoder(model="ViT-B-32")
    with pytest.raises(EncoderError, match="missing.pt: checkpoint file not found"):
        load_encoder(model="ViT-B-32", pretrained=tmp_path / "missing.pt")
    # The test encoder's (smaller) weights do not fit the cm3leon-clip-tiny architecture.
    with pytest.raises(EncoderError, match="safetensors: cannot load as open_clip 'cm3leon-clip-tiny'"):
        load_encoder(model="cm3leon-clip-tiny", pretrained=tiny_encoder_dir / "open_clip_model.safetensors")
    with pytest.raises(EncoderError, match="unknown open_clip architecture 'nope'"):
        model_config("nope")


def test_save_is_atomic_and_refuses_overwrite(tmp_path: Path) -> None:
    cfg = model_config("cm3leon-clip-tiny")
    model = build_clip_model(cfg)
    out = save_encoder(model, cfg, tmp_path / "enc")
    assert (out / "COMPLETE").is_file()
    with pytest.raises(FileExistsError):
        save_encoder(model, cfg, out)
