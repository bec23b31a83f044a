"""Assets of the playground tests: a tiny export, the ``bytes`` + ``vqgan`` tokenizers, a BM25
bank and a 1-layer CLIP encoder, all random (what matters is the plumbing, not the pictures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cm3leon.core.documents import Document, ImageSegment, TextSegment, image_to_png
from cm3leon.core.exported import save_exported
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.vocab import Vocabulary
from tests.decoding._helpers import colour_image, random_model

CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
COLOURS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 220, 0)}


def build_assets(root: Path, *, clip: bool = True) -> dict[str, Any]:
    """Write the assets under ``root``; returns the paths and the ``cm3leon serve`` arguments.

    ``clip=False`` leaves out the CLIP encoder (and re-ranking): importing open_clip takes
    ~10 s on 2 busy cores, in the test and again in a server subprocess.
    """
    from cm3leon.retrieval import encoder
    from cm3leon.retrieval.bm25 import BM25Bank

    image_tok = get_registries().tokenizers.build("vqgan", preset="small_32", seed=0)
    image_tok.save(root / "vq")
    vocab = Vocabulary(text_size=256, image_size=image_tok.codebook_size)
    save_exported(
        random_model(vocab, dtype=torch.float32, std=0.1, max_seq_len=512),
        root / "export",
        vocab=vocab,
    )
    if clip:
        torch.manual_seed(0)
        encoder.save_encoder(encoder.build_clip_model(CLIP_CFG), CLIP_CFG, root / "clip")
    docs = [Document((TextSegment(f"a {name} square"), ImageSegment(image=colour_image(rgb, 32))), id=f"doc-{name}")
            for name, rgb in COLOURS.items()]  # fmt: skip
    BM25Bank.build(docs).save(root / "bank")
    (root / "red.png").write_bytes(image_to_png(colour_image(COLOURS["red"], 32)))
    (root / "not-an-image.png").write_text("this is text, not a PNG\n")
    args = ["--model", str(root / "export"), "--text-tokenizer", "bytes", "--image-tokenizer",
            f"vqgan:{root / 'vq'}", "--bank", str(root / "bank")]  # fmt: skip
    if clip:
        args += ["--clip", str(root / "clip")]
    return {
        "root": root,
        "args": args,
        "clip": clip,
        "red": root / "red.png",
        "bad": root / "not-an-image.png",
    }
