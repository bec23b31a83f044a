"""Fixtures shared by the retrieval tests: a tiny random CLIP encoder and documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.retrieval.synthetic import shape_documents

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny open_clip model saved as a local-dir encoder."""
    import torch

    from cm3leon.retrieval.encoder import build_clip_model, save_encoder

    torch.manual_seed(0)
    model = build_clip_model(TINY_CFG)
    return save_encoder(model, TINY_CFG, tmp_path_factory.mktemp("enc") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_encoder_dir: Path):
    from cm3leon.retrieval.encoder import load_encoder

    return load_encoder(tiny_encoder_dir)


@pytest.fixture(scope="session")
def shape_docs():
    return shape_documents(48, seed=3)
