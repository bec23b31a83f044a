"""Fixtures of the generation-driven protocol tests.

* ``world`` — a 32-scene export of the procedural world (COCO, VQA v2, InstructPix2Pix,
  ground truth).
* ``tiny`` — a randomly initialised ``cm3leon_tiny`` in the trainer's export format over
  the ``bytes`` text tokenizer and an untrained ``vqgan`` ``small_32`` tokenizer (64 codes
  of 512 per 32-px image), a 1-layer CLIP encoder (open_clip local-dir), a BM25 bank.
* ``oracle`` — registries with an ``oracle`` generator runner: it writes, in the
  ``generate`` runner's output layout, whatever :data:`ORACLE` holds for each prompt id
  (a text, or the path of an image copied into every candidate), so the protocols'
  scoring can be checked against hand-computed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.eval.protocols._oracle import ORACLE, SEEN, OraclePlugin

CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture
def oracle():
    from cm3leon.core.plugin_manager import registries_with

    ORACLE.clear()
    SEEN.clear()
    yield registries_with(OraclePlugin)
    ORACLE.clear()
    SEEN.clear()


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    from cm3leon.world import export_world

    root = tmp_path_factory.mktemp("world") / "world"
    export_world(root, n=32, formats="coco,vqa2,instruct_pix2pix", progress=False)
    return root


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, world: Path) -> dict[str, Any]:
    from cm3leon.core.documents import Document, ImageSegment, TextSegment
    from cm3leon.core.exported import save_exported
    from cm3leon.core.plugin_manager import get_registries
    from cm3leon.core.vocab import Vocabulary
    from cm3leon.eval.datasets import read_caption_dataset
    from cm3leon.retrieval import encoder
    from cm3leon.retrieval.bm25 import BM25Bank
    from tests.decoding._helpers import random_model

    root = tmp_path_factory.mktemp("tiny")
    image_tok = get_registries().tokenizers.build("vqgan", preset="small_32", seed=0)
    image_tok.save(root / "vq")
    vocab = Vocabulary(text_size=256, image_size=image_tok.codebook_size)
    model = random_model(vocab, dtype=torch.float32, std=0.1, max_seq_len=512)
    save_exported(model, root / "export", vocab=vocab)
    torch.manual_seed(0)
    encoder.save_encoder(encoder.build_clip_model(CLIP_CFG), CLIP_CFG, root / "clip")
    from PIL import Image

    train = read_caption_dataset(world / "coco" / "annotations" / "captions_train2017.json")
    docs = []
    for item in train[:12]:
        with Image.open(item.image) as im:
            docs.append(Document((TextSegment(item.references[0]), ImageSegment(image=im.convert("RGB"))),
                                 id=f"train-{item.image_id}"))  # fmt: skip
    BM25Bank.build(docs).save(root / "bank")
    paths = {"export": str(root / "export"), "text_tokenizer": "bytes",
             "image_tokenizer": f"vqgan:{root / 'vq'}"}  # fmt: skip
    return {"root": root, "model": paths, "clip": str(root / "clip"), "bank": str(root / "bank")}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
