"""The evaluation metrics with cm3leon-retrieval's real CLIP encoder, found by name."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.integration

TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    encoder = pytest.importorskip("cm3leon.retrieval.encoder")
    torch.manual_seed(0)
    return encoder.save_encoder(
        encoder.build_clip_model(TINY_CFG), TINY_CFG, tmp_path_factory.mktemp("clip") / "tiny"
    )


def test_clip_score_and_fid_with_the_registered_encoder(encoder_dir) -> None:
    from cm3leon.eval.metrics.clip_score import CLIPScore
    from cm3leon.eval.metrics.features import resolve_document_encoder, tensor_to_pil
    from cm3leon.eval.metrics.fid import FrechetDistance

    options = {"path": str(encoder_dir)}
    enc = resolve_document_encoder("clip-image", options)
    images = tensor_to_pil(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    texts = ["a red square", "a blue circle", "two green triangles"]

    metric = CLIPScore("clip-image", encoder_options=options)
    metric.update(images, texts)
    cos = torch.nn.functional.cosine_similarity(
        enc.encode_image(images).double(), enc.encode_text(texts).double()
    )
    assert float(metric.compute()) == pytest.approx(
        float((100 * cos.clamp(min=0)).mean()), rel=1e-6
    )

    fid = FrechetDistance(
        "clip", features_options={"encoder": "clip-image", "encoder_options": options}
    )
    assert fid.num_features == 16
    g = torch.Generator().manual_seed(2)
    fid.update(torch.rand(20, 3, 32, 32, generator=g) * 0.5, real=True)
    fid.update(torch.rand(20, 3, 32, 32, generator=g) * 0.5 + 0.5, real=False)
    assert float(fid.compute()) > 0.0
