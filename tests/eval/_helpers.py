"""Test stand-ins: a tiny DocumentEncoder and a simulated two-rank gather for torchmetrics."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

# Colour words and the centred RGB direction the stand-in encoder gives them.
COLOURS = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "white": (1.0, 1.0, 1.0),
}


def _rgb(image: Any) -> np.ndarray:
    if isinstance(image, torch.Tensor):  # (3, H, W) float in [0, 1]
        return image.float().mean(dim=(1, 2)).numpy().astype(np.float64)
    return np.asarray(image.convert("RGB"), dtype=np.float64).mean(axis=(0, 1)) / 255.0


class StandInEncoder:
    """A DocumentEncoder whose embedding of an image is its centred mean colour (plus a
    constant), and of a text the centred colour of the colour words it contains."""

    dim = 4

    def __init__(self) -> None:
        self.calls = 0

    @staticmethod
    def _embed(rgb: np.ndarray) -> torch.Tensor:
        vec = torch.tensor([*(rgb - 0.5), 0.05], dtype=torch.float64)
        return (vec / vec.norm()).float()

    def encode_image(self, images: Sequence[Any]) -> torch.Tensor:
        self.calls += 1
        return torch.stack([self._embed(_rgb(im)) for im in images])

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            words = [w for w in text.lower().split() if w in COLOURS]
            rgb = np.mean([COLOURS[w] for w in words], axis=0) if words else np.full(3, 0.5)
            rows.append(self._embed(np.asarray(rgb)))
        return torch.stack(rows)

    def encode_documents(self, docs: Sequence[Any]) -> torch.Tensor:
        raise NotImplementedError("not needed by the evaluation metrics")


def solid(rgb: tuple[int, int, int], size: int = 8):
    from PIL import Image

    return Image.new("RGB", (size, size), rgb)


class TwoRankSync:
    """``dist_sync_fn`` for rank 0 of a simulated 2-rank job: returns [own, partner's]."""

    def __init__(self) -> None:
        self.partner: list[torch.Tensor] = []

    def __call__(self, tensor: torch.Tensor, group: Any = None) -> list[torch.Tensor]:
        return [tensor, self.partner.pop(0)]

    def load_partner(self, metric: Any) -> None:
        """Record what rank 1 (``metric``) would send, in torchmetrics' own order."""
        sent: list[torch.Tensor] = []

        def record(tensor: torch.Tensor, group: Any = None) -> list[torch.Tensor]:
            sent.append(tensor.clone())
            return [tensor]

        copy.deepcopy(metric)._sync_dist(record)
        self.partner = sent


def two_rank_compute(
    make: Callable[..., Any], feed0: Callable[[Any], None], feed1: Callable[[Any], None]
) -> Any:
    """Compute a metric on rank 0 of a simulated 2-rank job (rank 1's states gathered in)."""
    sync = TwoRankSync()
    rank0 = make(dist_sync_fn=sync, distributed_available_fn=lambda: True)
    rank1 = make()
    feed0(rank0)
    feed1(rank1)
    sync.load_partner(rank1)
    return rank0.compute()
