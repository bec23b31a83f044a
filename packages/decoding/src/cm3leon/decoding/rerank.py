"""CLIP re-ranking of N candidates (Table 1: 8 samples, CLIP keeps the best).

The encoder is any :class:`cm3leon.core.interfaces.DocumentEncoder` (unit-norm
embeddings); the retrieval package registers its open_clip encoder as the
``clip-image`` feature extractor, which :func:`load_reranker` builds by name.
Generated images are scored against the prompt's text, generated texts against the
prompt's image; the score is the cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cm3leon.core.interfaces import DocumentEncoder

__all__ = ["ClipReranker", "load_reranker"]


class ClipReranker:
    """Scores candidates with a CLIP-style :class:`DocumentEncoder`.

    Args:
        encoder: gives unit-norm ``encode_text``/``encode_image`` embeddings.

    Raises:
        TypeError: ``encoder`` does not implement :class:`DocumentEncoder`.
    """

    def __init__(self, encoder: DocumentEncoder) -> None:
        if not isinstance(encoder, DocumentEncoder):
            raise TypeError(
                f"re-ranking needs a DocumentEncoder (encode_text, encode_image, encode_documents, "
                f"dim); got {type(encoder).__name__}"
            )
        self.encoder = encoder

    @torch.inference_mode()
    def score_images(self, text: str, images: Sequence[Any]) -> torch.Tensor:
        """Cosine similarity ``(N,)`` of each image with ``text``."""
        if not images:
            return torch.zeros(0)
        img = self.encoder.encode_image(list(images)).float()  # (N, D)
        txt = self.encoder.encode_text([text]).float()  # (1, D)
        return (img @ txt.T)[:, 0].cpu()

    @torch.inference_mode()
    def score_texts(self, image: Any, texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity ``(N,)`` of each text with ``image``."""
        if not texts:
            return torch.zeros(0)
        txt = self.encoder.encode_text(list(texts)).float()  # (N, D)
        img = self.encoder.encode_image([image]).float()  # (1, D)
        return (txt @ img.T)[:, 0].cpu()

    @staticmethod
    def order(scores: torch.Tensor) -> list[int]:
        """Candidate indices, best first (stable for equal scores)."""
        return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


def load_reranker(name: str = "clip-image", *, registries: Any = None, **options: Any) -> ClipReranker:
    """Build the encoder registered as feature extractor ``name`` and wrap it.

    ``options`` go to the factory (the retrieval package's ``clip-image`` takes
    ``path=DIR`` or ``model=NAME, pretrained=FILE``).

    Raises:
        UnknownComponentError: ``name`` is not registered (lists what is).
        TypeError: the component is not a :class:`DocumentEncoder`.
    """
    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    encoder = registries.feature_extractors.build(name, where="rerank.encoder", **options)
    return ClipReranker(encoder)
