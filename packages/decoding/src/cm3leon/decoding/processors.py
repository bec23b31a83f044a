"""Logits processors and token selectors: the small composable pieces of a strategy.

Three kinds, all plain callables (facebookresearch/chameleon ``logits_processor.py`` /
``token_selector.py`` style):

* **guidance** ``(logits (S, B, V), state) -> (B, V)`` combines the ``S`` token streams
  of each candidate (its ``streams`` attribute names them, in order) into one row of
  scores: :class:`NoGuidance`, :class:`ClassifierFreeGuidance` (eq. 2),
  :class:`ContrastiveTopK` (eq. 3), :class:`DualGuidance` (§4.1);
* **processors** ``(logits (B, V), state) -> (B, V)`` rescale or filter one row each:
  :class:`Temperature`, :class:`TopK`, :class:`TopP`;
* **selectors** ``(logits (B, V), generator) -> (B,)`` pick local column indices:
  :class:`Greedy`, :class:`Sample`.

Disallowed columns arrive as ``-inf`` in every stream; guidance maps ``-inf`` combinations
(which are ``nan`` in IEEE arithmetic) back to ``-inf``, so a removed token stays removed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from cm3leon.decoding.options import (
    CDKOptions,
    CFGOptions,
    DualCFGOptions,
    TemperatureOptions,
    TopKOptions,
    TopPOptions,
)

__all__ = [
    "ClassifierFreeGuidance",
    "ContrastiveTopK",
    "DecodeState",
    "DualGuidance",
    "Greedy",
    "Guidance",
    "LogitsProcessor",
    "NoGuidance",
    "Sample",
    "Temperature",
    "TokenSelector",
    "TopK",
    "TopP",
    "cdk_candidates",
    "sort_descending",
]

_NEG_INF = float("-inf")


@dataclass
class DecodeState:
    """What a processor may look at besides the logits.

    Attributes:
        step: index of the token being chosen within the output span (0-based).
        generated: ``(B, step)`` global ids chosen so far for each candidate.
        offset: global id of logits column 0 (the span's vocabulary slice starts there).
    """

    step: int
    generated: torch.Tensor
    offset: int = 0


@runtime_checkable
class Guidance(Protocol):
    """Combines the streams of each candidate: ``(S, B, V) -> (B, V)``."""

    streams: tuple[str, ...]

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor: ...


@runtime_checkable
class LogitsProcessor(Protocol):
    """Per-row scores -> scores: ``(B, V) -> (B, V)``."""

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor: ...


@runtime_checkable
class TokenSelector(Protocol):
    """Scores -> chosen column per row: ``(B, V) -> (B,)`` long."""

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor: ...


def _f32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 or wider (half-precision logits are upcast for softmax/cumsum)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _keep_removed(x: torch.Tensor) -> torch.Tensor:
    """``nan`` (from ``-inf - -inf``) back to ``-inf``; finite values untouched."""
    return torch.nan_to_num_(x, nan=_NEG_INF, posinf=math.inf, neginf=_NEG_INF)


# ------------------------------------------------------------------ guidance
class NoGuidance:
    """Decode the conditional stream only."""

    streams: ClassVar[tuple[str, ...]] = ("cond",)

    def __init__(self, options: object = None) -> None:
        del options

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
        return logits[0]

    def __repr__(self) -> str:
        return "NoGuidance()"


class ClassifierFreeGuidance:
    """Eq. 2: ``logits_cf = logits_uncond + α_c (logits_cond - logits_uncond)``.

    The unconditional stream is the prompt with its conditions replaced by CM3 ``<mask>``
    sentinels (eq. 1); both streams run in the same batch.  Mixing raw logits equals
    mixing log-probabilities (what ``transformers`` does) up to a per-row constant, so
    the two agree after a log-softmax.
    """

    streams: ClassVar[tuple[str, ...]] = ("cond", "uncond")

    def __init__(self, options: CFGOptions | None = None) -> None:
        self.options = options or CFGOptions()

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
        cond, uncond = logits[0], logits[1]  # (B, V) each
        return _keep_removed(torch.lerp(uncond, cond, self.options.scale))

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidance(scale={self.options.scale})"


def cdk_candidates(expert_logp: torch.Tensor, k: int, alpha: float) -> torch.Tensor:
    """Eq. 3's candidate set: ``p_exp(w) >= alpha * kmax_k(p_exp)`` (bool ``(B, V)``).

    Args:
        expert_logp: ``(B, V)`` expert log-probabilities (``-inf`` for removed tokens).
        k: rank of the reference probability (clamped to the number of columns).
        alpha: factor in ``(0, 1]``.
    """
    k = min(int(k), expert_logp.shape[-1])
    kth = expert_logp.topk(k, dim=-1).values[..., -1:]  # (B, 1) k-th largest
    return (expert_logp >= kth + math.log(alpha)) & torch.isfinite(expert_logp)


class ContrastiveTopK:
    """CD-K (eq. 3): score ``log p_exp - log p_ama`` on the candidate set, ``-inf`` elsewhere.

    The expert is the conditional stream, the amateur the unconditional one (§3.1); with
    ``k=1`` this is Li et al.'s contrastive decoding, whose candidate set often holds the
    greedy token only.
    """

    streams: ClassVar[tuple[str, ...]] = ("cond", "uncond")

    def __init__(self, options: CDKOptions | None = None) -> None:
        self.options = options or CDKOptions()

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
        expert = torch.log_softmax(_f32(logits[0]), dim=-1)  # (B, V)
        amateur = torch.log_softmax(_f32(logits[1]), dim=-1)
        keep = cdk_candidates(expert, self.options.k, self.options.alpha)
        return torch.where(keep, expert - amateur, _NEG_INF).to(logits.dtype)

    def __repr__(self) -> str:
        return f"ContrastiveTopK(k={self.options.k}, alpha={self.options.alpha})"


class DualGuidance:
    """Image and text CFG with separate scales (§4.1; Brooks et al. 2023, eq. 3 there).

    ``logits = u + s_I (i - u) + s_T (c - i)`` where ``c`` is the full prompt, ``i`` the
    prompt with its text conditions masked (image conditions kept) and ``u`` the prompt
    with every condition masked.  ``s_I = s_T = α`` reduces to CFG on ``(c, u)``; without
    image conditions ``i == u`` and it is CFG with ``s_T``.
    """

    streams: ClassVar[tuple[str, ...]] = ("cond", "no_text", "uncond")

    def __init__(self, options: DualCFGOptions | None = None) -> None:
        self.options = options or DualCFGOptions()

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
        full, image_only, uncond = logits[0], logits[1], logits[2]  # (B, V) each
        o = self.options
        out = uncond + o.image_scale * (image_only - uncond) + o.text_scale * (full - image_only)
        return _keep_removed(out)

    def __repr__(self) -> str:
        return f"DualGuidance(image_scale={self.options.image_scale}, text_scale={self.options.text_scale})"


# ---------------------------------------------------------------- processors
class Temperature:
    """Divide scores by the temperature."""

    def __init__(self, options: TemperatureOptions | None = None) -> None:
        self.options = options or TemperatureOptions()

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
        t = self.options.temperature
        return logits if t == 1.0 else logits / t

    def __repr__(self) -> str:
        return f"Temperature({self.options.temperature})"


class TopK:
    """Keep the ``k`` highest scores of each row (ties at the k-th value are kept)."""

    def __init__(self, options: TopKOptions | None = None) -> None:
        self.options = options or TopKOptions()

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
        k = min(self.options.k, logits.shape[-1])
        kth = logits.topk(k, dim=-1).values[..., -1:]  # (B, 1)
        return logits.masked_fill(logits < kth, _NEG_INF)

    def __repr__(self) -> str:
        return f"TopK({self.options.k})"


class TopP:
    """Nucleus filtering (Holtzman et al., 2020).

    Keeps, per row, the highest-probability tokens until their mass reaches ``p`` (the
    token that crosses ``p`` is kept), and at least ``min_keep`` tokens; tokens tied with
    the last kept score are kept too, so the result does not depend on a sort's tie order.
    """

    def __init__(self, options: TopPOptions | None = None) -> None:
        self.options = options or TopPOptions()

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
        p, min_keep = self.options.p, self.options.min_keep
        if p >= 1.0:
            return logits
        ranked = sort_descending(logits)  # (B, V) scores, best first
        probs = torch.softmax(_f32(ranked), dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # mass of strictly better ranks
        keep = mass_before < p  # a prefix of the ranking
        keep[..., :min_keep] = True
        count = keep.sum(dim=-1, keepdim=True)  # (B, 1)
        threshold = ranked.gather(-1, count - 1)  # smallest kept score
        return logits.masked_fill(logits < threshold, _NEG_INF)

    def __repr__(self) -> str:
        return f"TopP({self.options.p})"


def sort_descending(x: torch.Tensor) -> torch.Tensor:
    """Values of ``x`` sorted along the last dim, largest first.

    On CPU this goes through numpy: ``torch.sort`` of ``(8, 8192)`` rows takes ~4.5 ms per
    call there against ~0.3 ms for ``numpy.sort`` (measured with torch 2.14, one thread),
    which is a quarter of a decoding step of the small preset with 8 candidates.
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.sort(x.numpy(), axis=-1)).flip(-1)
    return x.sort(dim=-1, descending=True).values


# ----------------------------------------------------------------- selectors
class Greedy:
    """Argmax of each row (the first of equal maxima)."""

    def __init__(self, options: object = None) -> None:
        del options

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def __repr__(self) -> str:
        return "Greedy()"


class Sample:
    """Draw from ``softmax(scores)`` with ``generator`` (deterministic given its seed).

    Inverse-CDF sampling: one uniform per row located in the cumulative distribution
    (``searchsorted``), ~10x cheaper than ``torch.multinomial`` on CPU for 8k columns.
    """

    def __init__(self, options: object = None) -> None:
        del options

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        probs = torch.softmax(_f32(logits), dim=-1)  # (B, V)
        cdf = probs.cumsum(dim=-1)
        u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=probs.dtype)
        idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=probs.shape[-1] - 1)
        # Zero-probability ids have empty CDF intervals; only rounding at the very top can
        # land on one, and then the most likely id is taken instead.
        empty = probs.gather(-1, idx) <= 0
        return torch.where(empty, probs.argmax(dim=-1, keepdim=True), idx).squeeze(-1)

    def __repr__(self) -> str:
        return "Sample()"
