"""CLIP score: ``100 · max(cos(image, text), 0)`` per pair, averaged (Hessel et al., 2021).

The encoder is the retrieval package's CLIP bi-encoder, reached through the
:class:`cm3leon.core.interfaces.DocumentEncoder` protocol (an object or a registered name,
see :func:`cm3leon.eval.metrics.features.resolve_document_encoder`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric

from cm3leon.core.interfaces import DocumentEncoder
from cm3leon.eval.metrics.features import resolve_document_encoder

__all__ = ["CLIPScore", "clip_scores"]


def clip_scores(
    encoder: DocumentEncoder, images: Sequence[Any], texts: Sequence[str]
) -> torch.Tensor:
    """Per-pair CLIP scores ``(N,)`` float64 for ``images[i]`` with ``texts[i]``.

    Embeddings are re-normalised here, so encoders that return unnormalised vectors give
    the cosine too.

    Raises:
        ValueError: the two sequences differ in length or are empty, or the embeddings'
            shapes disagree.
    """
    if len(images) != len(texts):
        raise ValueError(f"CLIP score needs as many texts as images: {len(texts)} vs {len(images)}")
    if len(images) == 0:
        raise ValueError("CLIP score of an empty batch")
    img = torch.as_tensor(encoder.encode_image(list(images))).to(torch.float64)  # (N, D)
    txt = torch.as_tensor(encoder.encode_text([str(t) for t in texts])).to(torch.float64)  # (N, D)
    if img.shape != txt.shape or img.shape[0] != len(images):
        raise ValueError(
            f"image embeddings {tuple(img.shape)} vs text embeddings {tuple(txt.shape)}"
        )
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1, eps=1e-12)  # (N,)
    return 100.0 * cos.clamp(min=0.0)


class CLIPScore(Metric):
    """Mean CLIP score over all (image, text) pairs seen on all ranks.

    Args:
        encoder: a DocumentEncoder, a registered name, or a ``"module:attr"`` factory.
        encoder_options: options for a named encoder.
        **kwargs: torchmetrics ``Metric`` options.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        encoder: Any = "clip-image",
        *,
        encoder_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder = resolve_document_encoder(encoder, encoder_options)
        self.add_state("score_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: Sequence[Any], texts: Sequence[str]) -> None:
        """Score ``images[i]`` (PIL images / arrays / tensors) against ``texts[i]``."""
        scores = clip_scores(self.encoder, images, texts)
        self.score_sum = self.score_sum + scores.sum().to(self.score_sum.device)
        self.count = self.count + scores.numel()

    def compute(self) -> torch.Tensor:
        if int(self.count) == 0:
            raise ValueError("CLIPScore.compute() called before any update()")
        return self.score_sum / self.count
