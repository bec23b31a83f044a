"""Small real stand-ins for the decoding tests: tiny model, fake VQ tokenizer, CLIP, retriever."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cm3leon.core.documents import Document
from cm3leon.core.model import cm3leon_tiny
from cm3leon.core.serialize import DocumentTokenizer
from cm3leon.core.tokenization import ByteTokenizer
from cm3leon.core.vocab import Vocabulary

#: 8 colours; code c of the fake tokenizer is the colour PALETTE[c % 8] (brightness c // 8).
PALETTE = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255], [255, 255, 255], [0, 0, 0]],
    dtype=np.int64,
)


class FakeImageTokenizer:
    """A ``side x side`` grid of 4-pixel patches; a code is a palette colour (x2 brightness).

    ``decode(encode(x))`` quantises ``x`` to the palette; enough to check layouts, infilling
    and that generated codes turn into images.
    """

    codebook_size = 16

    def __init__(self, side: int = 3, patch: int = 4) -> None:
        self.side, self.patch = side, patch

    @property
    def num_tokens(self) -> int:
        return self.side * self.side

    @property
    def image_size(self) -> int:
        return self.side * self.patch

    def encode(self, images: Sequence[Any]) -> torch.Tensor:
        from PIL import Image

        rows = []
        for im in images:
            pil = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, np.uint8))
            small = np.asarray(pil.convert("RGB").resize((self.side, self.side), Image.BOX), np.int64)
            flat = small.reshape(-1, 3)  # (N, 3)
            dist = ((flat[:, None, :] - PALETTE[None]) ** 2).sum(-1)  # (N, 8)
            colour = dist.argmin(1)
            dark = (flat.mean(1) < 64).astype(np.int64) & (colour != 7)
            rows.append(colour + 8 * dark)
        return torch.as_tensor(np.stack(rows))

    def decode(self, codes: torch.Tensor) -> list[Any]:
        from PIL import Image

        out = []
        for row in np.asarray(codes, np.int64).reshape(-1, self.num_tokens):
            rgb = PALETTE[row % 8] // np.where(row >= 8, 4, 1)[:, None]
            grid = rgb.reshape(self.side, self.side, 3).astype(np.uint8)
            out.append(Image.fromarray(grid).resize((self.image_size,) * 2, Image.NEAREST))
        return out

    def save(self, directory: str | Path) -> Path:
        return Path(directory)


def setup(side: int = 3, num_sentinels: int = 4) -> tuple[Vocabulary, DocumentTokenizer]:
    """Byte-level text + :class:`FakeImageTokenizer` images."""
    text, image = ByteTokenizer(), FakeImageTokenizer(side)
    vocab = Vocabulary(text_size=text.vocab_size, image_size=image.codebook_size, num_sentinels=num_sentinels)
    return vocab, DocumentTokenizer(vocab, text, image)


def random_model(vocab: Vocabulary, *, dtype: torch.dtype = torch.float64, seed: int = 0, std: float = 0.3,
                 **overrides: Any) -> torch.nn.Module:
    """``cm3leon_tiny`` with random (non-zero) weights, so decoding is not degenerate."""
    torch.manual_seed(seed)
    model = cm3leon_tiny(vocab_size=vocab.size, **overrides).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


def colour_image(rgb: Sequence[int], size: int = 12) -> Any:
    from PIL import Image

    return Image.new("RGB", (size, size), tuple(int(c) for c in rgb))


class ColourEncoder:
    """A CLIP stand-in: texts naming a colour and images of it get the same direction."""

    NAMES = ("red", "green", "blue")

    @property
    def dim(self) -> int:
        return 3

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), 3)
        for i, t in enumerate(texts):
            for j, name in enumerate(self.NAMES):
                out[i, j] = float(name in t.lower())
            if not out[i].any():
                out[i] = 1.0
        return torch.nn.functional.normalize(out, dim=-1)

    def encode_image(self, images: Sequence[Any]) -> torch.Tensor:
        arr = torch.stack([torch.as_tensor(np.array(im.convert("RGB")), dtype=torch.float32).mean((0, 1))
                           for im in images])  # fmt: skip
        return torch.nn.functional.normalize(arr + 1e-3, dim=-1)

    def encode_documents(self, docs: Sequence[Document]) -> torch.Tensor:
        return self.encode_text([d.text for d in docs])


class ListRetriever:
    """Returns the first ``k`` documents of a fixed bank (at most the bank's size)."""

    def __init__(self, bank: Sequence[Document]) -> None:
        self.bank = list(bank)
        self.queries: list[Document] = []

    def retrieve(self, queries: Sequence[Document], k: int, *, training: bool = False) -> list[list[Document]]:
        self.queries.extend(queries)
        return [self.bank[:k] for _ in queries]
