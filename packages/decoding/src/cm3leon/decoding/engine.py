"""The generation engine: prefill once, then one batched model step per token.

Rows of the batch are laid out stream-major, ``(S, P, N)``: every token stream ``s``
(``cond``, ``uncond``, ...) of every prompt ``p``, times ``N`` candidates.  The ``S x P``
prompts are left-padded to one length and prefilled together (per-row positions count
real tokens only, so padding changes nothing); the KV cache is then repeated ``N``
times per row (:meth:`KVCache.repeat_interleave`) and every step feeds the token chosen
for candidate ``(p, n)`` to all its streams at once::

    logits (S*P*N, V') -> view (S, B=P*N, V') -> pipeline(s) -> token (B,) -> repeat S -> step

Only the vocabulary slice of the span is projected (``SpanSpec.rows``): the image block
during an image span, specials + text during a text span.  That is exactly masking the
other ids to ``-inf`` before the softmax, and it skips most of the output projection.

Image spans have exactly the tokenizer's number of tokens (then the closing ``<break>``,
which needs no model step); text spans stop per candidate at ``<break>``, ``<eos>`` or
an ``<infill:i>`` (or ``max_new_tokens``), and the loop ends when every candidate has.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from cm3leon.core.model import KVCache
from cm3leon.core.vocab import Vocabulary
from cm3leon.decoding.pipeline import Pipeline, split_candidates
from cm3leon.decoding.processors import DecodeState

__all__ = ["DecodeResult", "SpanSpec", "decode"]


@dataclass(frozen=True)
class SpanSpec:
    """The output span: which ids may appear, how many, and what ends it.

    Attributes:
        kind: ``"image"``, ``"text"`` or ``"free"`` (no constraint; reference decoding).
        max_new_tokens: the span length (images: exact) or its limit (text).
        rows: contiguous vocabulary slice whose logits are computed (``None`` = all).
        exact: generate exactly ``max_new_tokens`` tokens (no stop ids).
        stop_ids: ids that end a candidate's span (not part of the output).
        disallowed: ids inside ``rows`` that may never be chosen.
        suffix: ids that close the span without a model step (an image's ``<break>``).
    """

    kind: Literal["image", "text", "free"]
    max_new_tokens: int
    rows: slice | None = None
    exact: bool = False
    stop_ids: tuple[int, ...] = ()
    disallowed: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"SpanSpec.max_new_tokens must be a positive integer, got {n!r}")
        if self.exact and self.stop_ids:
            raise ValueError("SpanSpec: an exact-length span cannot have stop ids")

    @property
    def offset(self) -> int:
        """Global id of logits column 0."""
        return 0 if self.rows is None else int(self.rows.start or 0)

    @classmethod
    def image(cls, vocab: Vocabulary, num_tokens: int, *, close: bool = True) -> SpanSpec:
        """Exactly ``num_tokens`` image ids, then ``<break>`` if ``close``."""
        return cls(
            "image", num_tokens, rows=slice(vocab.image_offset, vocab.size), exact=True,
            suffix=(vocab.break_id,) if close else (),
        )  # fmt: skip

    @classmethod
    def text(cls, vocab: Vocabulary, max_new_tokens: int) -> SpanSpec:
        """Text ids until ``<break>``/``<eos>``/``<infill:i>``; never pad, unk or masks."""
        return cls(
            "text", max_new_tokens, rows=slice(0, vocab.image_offset),
            stop_ids=(vocab.break_id, vocab.eos_id, *vocab.infill_ids),
            disallowed=(vocab.pad_id, vocab.unk_id, *vocab.mask_ids),
        )  # fmt: skip

    @classmethod
    def free(cls, max_new_tokens: int, *, stop_ids: tuple[int, ...] = (Vocabulary.eos_id,)) -> SpanSpec:
        """Any id of the vocabulary until a stop id (plain language-model decoding)."""
        return cls("free", max_new_tokens, stop_ids=tuple(stop_ids))


@dataclass
class DecodeResult:
    """Output of :func:`decode`.

    Attributes:
        tokens: ``(P, N, T)`` global ids of each candidate's span, ``<pad>`` after its end.
        lengths: ``(P, N)`` span length of each candidate (stop id excluded).
        stop: ``(P, N)`` the id that ended each span, ``-1`` when the length did.
        pipeline: pipeline index of each candidate ``n`` (same for every prompt).
        prompt_tokens: real prompt tokens prefilled (all streams).
        steps: model steps after the prefill.
        prefill_seconds, decode_seconds: wall-clock split.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    stop: torch.Tensor
    pipeline: list[int]
    prompt_tokens: int = 0
    steps: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def candidate(self, p: int, n: int) -> list[int]:
        """The span of candidate ``n`` of prompt ``p`` as a list of global ids."""
        return self.tokens[p, n, : int(self.lengths[p, n])].tolist()


class _CachedStepper:
    """Prefill + single-token steps over a preallocated :class:`KVCache`."""

    def __init__(self, model: torch.nn.Module, rows: slice | None, max_len: int) -> None:
        self.model, self.rows, self.max_len = model, rows, max_len
        self.cache: KVCache | None = None

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        self.cache = self.model.new_cache(ids.shape[0], self.max_len)
        out = self.model.forward_cached(
            ids, self.cache, attention_mask=mask, last_only=True, logits_rows=self.rows
        )
        return out[:, 0]  # (R, V')

    def repeat(self, n: int) -> None:
        assert self.cache is not None
        if n > 1:
            self.cache = self.cache.repeat_interleave(n)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        assert self.cache is not None
        return self.model.forward_cached(tokens[:, None], self.cache, logits_rows=self.rows)[:, 0]


class _FullStepper:
    """Reference: re-run the whole (left-padded) sequence every step, no cache."""

    def __init__(self, model: torch.nn.Module, rows: slice | None, max_len: int) -> None:
        self.model, self.rows = model, rows
        self.ids = self.mask = torch.empty(0)

    def _last(self) -> torch.Tensor:
        logits = self.model(self.ids, attention_mask=self.mask)[:, -1]  # (R, V)
        return logits if self.rows is None else logits[:, self.rows]

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        self.ids = ids
        self.mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask
        return self._last()

    def repeat(self, n: int) -> None:
        self.ids = self.ids.repeat_interleave(n, dim=0)
        self.mask = self.mask.repeat_interleave(n, dim=0)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(tokens[:, None], dtype=torch.bool)], dim=1)
        return self._last()


def _left_pad(
    prompts: Sequence[np.ndarray], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(R, L)`` ids and a bool mask (``None`` when nothing is padded)."""
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    ids = np.full((len(prompts), width), pad_id, dtype=np.int64)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = p
    ids_t = torch.from_numpy(ids).to(device)
    if min(lengths) == width:
        return ids_t, None
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, width - n:] = True
    return ids_t, mask.to(device)


def _check_prompts(
    streams: Sequence[Sequence[np.ndarray]],
    stream_names: Sequence[str],
    prompt_ids: Sequence[str],
    span: SpanSpec,
    max_seq_len: int,
) -> None:
    if len(streams) != len(stream_names):
        raise ValueError(f"decode: {len(streams)} streams but {len(stream_names)} stream names")
    num_prompts = len(prompt_ids)
    for name, rows in zip(stream_names, streams, strict=True):
        if len(rows) != num_prompts:
            raise ValueError(f"decode: stream {name!r} has {len(rows)} prompts, expected {num_prompts}")
        for pid, row in zip(prompt_ids, rows, strict=True):
            if len(row) == 0:
                raise ValueError(f"prompt {pid!r} ({name} stream) is empty")
            total = len(row) + span.max_new_tokens + len(span.suffix)
            if total > max_seq_len:
                raise ValueError(
                    f"prompt {pid!r} ({name} stream) is too long for the model's context: "
                    f"{len(row)} prompt tokens + {span.max_new_tokens + len(span.suffix)} to generate "
                    f"= {total} > max_seq_len {max_seq_len}"
                )


@torch.inference_mode()
def decode(
    model: torch.nn.Module,
    streams: Sequence[Sequence[np.ndarray | Sequence[int]]],
    span: SpanSpec,
    pipelines: Sequence[Pipeline],
    *,
    stream_names: Sequence[str],
    prompt_ids: Sequence[str] | None = None,
    num_candidates: int = 1,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> DecodeResult:
    """Decode one span for every prompt: ``num_candidates`` candidates each.

    Args:
        model: a core transformer (``new_cache``/``forward_cached``; see
            :mod:`cm3leon.core.model.testing`).
        streams: ``streams[s][p]`` = token ids of stream ``s`` of prompt ``p``.
        span: what to generate (:class:`SpanSpec`).
        pipelines: strategies; candidate ``n`` uses ``pipelines[split_candidates(...)[n]]``.
        stream_names: name of each stream (``"cond"`` first); must cover every
            pipeline's ``streams``.
        prompt_ids: names used in errors (default ``"0"``, ``"1"``, ...).
        num_candidates: candidates per prompt ``N``.
        generator: the random source of sampling selectors (seed it for determinism).
        use_cache: ``False`` re-runs the full sequence each step (reference path).

    Raises:
        ValueError: a prompt longer than the context (naming it), an empty prompt, a
            pipeline stream missing from ``stream_names``, bad ``num_candidates``.
    """
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates must be a positive integer, got {num_candidates!r}")
    num_prompts = len(streams[0]) if streams else 0
    prompt_ids = [str(i) for i in range(num_prompts)] if prompt_ids is None else list(prompt_ids)
    arrays = [[np.asarray(r, dtype=np.int64) for r in rows] for rows in streams]
    _check_prompts(arrays, stream_names, prompt_ids, span, model.config.max_seq_len)
    device = next(model.parameters()).device
    plan = _Plan.build(span, pipelines, list(stream_names), num_prompts, num_candidates, device)

    flat = [row for rows in arrays for row in rows]  # stream-major (S, P)
    ids, mask = _left_pad(flat, Vocabulary.pad_id, device)
    stepper = (_CachedStepper if use_cache else _FullStepper)(model, span.rows, ids.shape[1] + plan.T)

    t0 = time.perf_counter()
    logits = stepper.prefill(ids, mask)  # (S*P, V')
    if plan.N > 1:
        logits = logits.repeat_interleave(plan.N, dim=0)  # (S*P*N, V')
        stepper.repeat(plan.N)
    t1 = time.perf_counter()
    out, lengths, stop, steps = _generate(plan, stepper, logits, pipelines, generator)
    t2 = time.perf_counter()
    P, N, T = num_prompts, plan.N, plan.T
    return DecodeResult(
        tokens=out.view(P, N, T).cpu(),
        lengths=lengths.view(P, N).cpu(),
        stop=stop.view(P, N).cpu(),
        pipeline=plan.group,
        prompt_tokens=sum(len(r) for r in flat),
        steps=steps,
        prefill_seconds=t1 - t0,
        decode_seconds=t2 - t1,
    )


@dataclass(frozen=True)
class _Plan:
    """The batch layout of one :func:`decode` call: sizes, candidate groups, id masks."""

    S: int  # streams
    B: int  # prompts x candidates
    N: int  # candidates per prompt
    T: int  # max new tokens
    offset: int  # global id of the span's first row
    group: list[int]  # pipeline index of each candidate n
    stream_idx: list[list[int]]  # per pipeline: indices of its streams
    columns: list[torch.Tensor]  # per pipeline: the batch columns it decodes
    disallowed: torch.Tensor | None  # span-local ids that are never chosen
    stop_ids: torch.Tensor | None  # global ids that end a candidate

    @staticmethod
    def build(
        span: SpanSpec,
        pipelines: Sequence[Pipeline],
        names: list[str],
        num_prompts: int,
        num_candidates: int,
        device: torch.device,
    ) -> _Plan:
        for pipe in pipelines:
            missing = [s for s in pipe.streams if s not in names]
            if missing:
                raise ValueError(f"pipeline {pipe.name!r} needs stream(s) {missing}; batch has {names}")
        N = num_candidates
        B = num_prompts * N
        group = split_candidates(N, [p.weight for p in pipelines])
        columns = [torch.tensor([b for b in range(B) if group[b % N] == g], device=device)
                   for g in range(len(pipelines))]  # fmt: skip
        disallowed = (
            torch.tensor([i - span.offset for i in span.disallowed], device=device) if span.disallowed else None
        )
        return _Plan(
            S=len(names), B=B, N=N, T=span.max_new_tokens, offset=span.offset, group=group,
            stream_idx=[[names.index(s) for s in p.streams] for p in pipelines], columns=columns,
            disallowed=disallowed,
            stop_ids=torch.tensor(span.stop_ids, device=device) if span.stop_ids else None,
        )  # fmt: skip


def _generate(
    plan: _Plan,
    stepper: _CachedStepper | _FullStepper,
    logits: torch.Tensor,
    pipelines: Sequence[Pipeline],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The token loop: ``(out (B, T), lengths (B,), stop (B,), model steps)``."""
    S, B, T, device = plan.S, plan.B, plan.T, logits.device
    out = torch.full((B, T), Vocabulary.pad_id, dtype=torch.long, device=device)
    lengths = torch.full((B,), T, dtype=torch.long, device=device)
    stop = torch.full((B,), -1, dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    steps = 0
    for t in range(T):
        # bf16/fp16 weights give half-precision logits: guidance and selection run in fp32
        scores = logits.to(torch.promote_types(logits.dtype, torch.float32)).view(S, B, -1)
        if plan.disallowed is not None:
            scores = scores.index_fill(-1, plan.disallowed, float("-inf"))
        chosen = _select(scores, pipelines, plan.stream_idx, plan.columns, out, t, plan.offset, generator)
        tokens = chosen + plan.offset  # (B,) global ids
        if plan.stop_ids is not None:
            is_stop = torch.isin(tokens, plan.stop_ids) & ~finished
            lengths = torch.where(is_stop, t, lengths)
            stop = torch.where(is_stop, tokens, stop)
            finished |= is_stop
            out[:, t] = tokens.masked_fill(finished, Vocabulary.pad_id)
            if bool(finished.all()):
                break
        else:
            out[:, t] = tokens
        if t == T - 1:
            break
        logits = stepper.step(tokens.repeat(S))  # (S*B, V')
        steps += 1
    return out, lengths, stop, steps


def _select(
    scores: torch.Tensor,
    pipelines: Sequence[Pipeline],
    stream_idx: list[list[int]],
    columns: list[torch.Tensor],
    out: torch.Tensor,
    step: int,
    offset: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Chosen local columns ``(B,)`` from stream scores ``(S, B, V')``."""
    S, B = scores.shape[:2]
    if len(pipelines) == 1:
        idx = stream_idx[0]
        streams = scores if idx == list(range(S)) else scores[idx]
        state = DecodeState(step, out[:, :step], offset)
        return pipelines[0](streams, state, generator)
    chosen = torch.empty(B, dtype=torch.long, device=scores.device)
    for pipe, idx, cols in zip(pipelines, stream_idx, columns, strict=True):
        state = DecodeState(step, out[cols, :step], offset)
        chosen[cols] = pipe(scores[idx][:, cols], state, generator)
    return chosen
