"""Protocols the packages implement and consume through the registries.

Packages never import each other (only core): a decoding strategy finds the
image tokenizer, or an evaluation protocol finds the CLIP encoder, by name in
the registries, and talks to it through these protocols.  ``runtime_checkable``
lets the conformance suites check a plugin's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cm3leon.core.documents import Document

__all__ = [
    "DocumentEncoder",
    "ImageTokenizer",
    "Retriever",
    "Task",
    "TextTokenizer",
]


@runtime_checkable
class TextTokenizer(Protocol):
    """Text <-> local ids ``[0, vocab_size)`` (offset into the unified vocabulary by core)."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """Ids for ``text`` (no special tokens added)."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of :meth:`encode` (exact round trip for any Unicode text)."""
        ...

    def save(self, directory: str | Path) -> Path:
        """Persist to ``directory`` (atomically); the tokenizer spec's loader restores it."""
        ...


@runtime_checkable
class ImageTokenizer(Protocol):
    """Images <-> VQ codes ``[0, codebook_size)``; ``num_tokens`` codes per image."""

    @property
    def codebook_size(self) -> int: ...

    @property
    def num_tokens(self) -> int:
        """Codes per image (e.g. 1024 = 32x32)."""
        ...

    @property
    def image_size(self) -> int:
        """Square input resolution in pixels."""
        ...

    def encode(self, images: Sequence[Any]) -> torch.Tensor:
        """Encode PIL images / uint8 arrays / tensors to codes ``(B, num_tokens)`` int64."""
        ...

    def decode(self, codes: torch.Tensor) -> list[Any]:
        """Decode codes ``(B, num_tokens)`` to RGB ``PIL.Image`` objects."""
        ...

    def save(self, directory: str | Path) -> Path: ...


@runtime_checkable
class DocumentEncoder(Protocol):
    """A frozen bi-encoder (CLIP): L2-normalised embeddings for texts, images, documents."""

    @property
    def dim(self) -> int: ...

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, dim)`` float32, unit norm."""
        ...

    def encode_image(self, images: Sequence[Any]) -> torch.Tensor:
        """``(N, dim)`` float32, unit norm."""
        ...

    def encode_documents(self, docs: Sequence[Document]) -> torch.Tensor:
        """``(N, dim)``: normalised average of the normalised text and image parts."""
        ...


@runtime_checkable
class Retriever(Protocol):
    """Finds documents of a memory bank relevant to a query document."""

    def retrieve(self, queries: Sequence[Document], k: int, *, training: bool = False) -> list[list[Document]]:
        """Up to ``k`` documents per query, best first (strategy rules applied)."""
        ...


@runtime_checkable
class Task(Protocol):
    """An SFT task: turns one raw record into a multimodal document (Table 5).

    The document marks the task's output in ``meta["targets"]``
    (:class:`cm3leon.core.documents.TargetSpan`), which SFT can mask exactly
    (``CM3Config.target_prob``); the tasks package's conformance suite checks it.
    """

    name: str
    templates: Sequence[str]

    def render(self, record: dict[str, Any], *, rng: np.random.Generator) -> Document:
        """Render ``record`` with a template chosen by ``rng``; segment order per template."""
        ...
