"""The CM3Leon transformer (§2.3): a decoder-only, OPT-style, pre-LayerNorm transformer.

Compared with OPT (Zhang et al., 2022) the paper removes every bias term, dropout and
the learnable LayerNorm parameters, and uses 4096 positions.  Concretely, per block::

    x = x + W_o · attn(LN(x) · W_qkv)        # causal (or block-diagonal causal) SDPA
    x = x + W_2 · act(LN(x) · W_1)           # act = ReLU (OPT)

with ``LN(x) = (x - mean) / sqrt(var + eps)`` (no weight, no bias), then a final LN
and the output projection (the token embedding when tied).  Inputs are token
embeddings plus *learned absolute* position embeddings (no embedding scaling, as OPT).

Initialisation (§2.3): every weight from a normal(0, 0.006) truncated at ±3 std; the
position table from normal(0, 0.0002) truncated at ±3 std; the "output layers" --
each block's attention output projection ``W_o`` and feed-forward output ``W_2`` --
are zero, so every block starts as the identity.  An *untied* LM head is an output
layer too and is also initialised to zero (the first logits are then uniform, the
first loss exactly ``ln V``); the tied head is the embedding.

Forward API (the trainer and the decoder rely on exactly this)::

    logits = model(input_ids,                 # (B, T) long, ids in [0, vocab_size)
                   position_ids=None,         # (B, T); default below
                   doc_ids=None,              # (B, T); packed documents
                   attention_mask=None)       # (B, T) bool; True = real token
    # logits: (B, T, vocab_size)

* ``doc_ids`` (packing): a token attends only to earlier tokens with the *same* doc id
  (block-diagonal causal mask).  Give every packed document its own id.  The kernel is
  ``config.attention``'s: FlexAttention with a block mask (no dense mask; ``"auto"`` on
  CUDA) or SDPA with a dense ``(B, 1, T, T)`` mask (:mod:`cm3leon.core.model.attention`).
* ``attention_mask`` (left-padded prompts): padding is never attended to; a padding
  query attends to itself only, so its (meaningless) output stays finite.
* ``position_ids`` default: :func:`positions_from_doc_ids` when ``doc_ids`` is given
  (restart at 0 per document), else :func:`positions_from_mask` when
  ``attention_mask`` is given (count real tokens), else ``0..T-1``.

Incremental decoding uses :meth:`CM3LeonTransformer.new_cache` and
:meth:`CM3LeonTransformer.forward_cached` over a preallocated
:class:`~cm3leon.core.model.kv_cache.KVCache`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cm3leon.core.model.attention import (
    document_block_mask,
    flex_attend,
    is_block_mask,
    log_choice,
    resolve_attention,
)
from cm3leon.core.model.config import TransformerConfig
from cm3leon.core.model.kv_cache import KVCache

__all__ = [
    "Attention",
    "Block",
    "CM3LeonTransformer",
    "MLP",
    "positions_from_doc_ids",
    "positions_from_mask",
]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
}


def positions_from_doc_ids(doc_ids: torch.Tensor) -> torch.Tensor:
    """Position ids restarting at 0 wherever the doc id changes along a row.

    Args:
        doc_ids: ``(B, T)`` integer tensor; each packed document is a contiguous run.

    Returns:
        ``(B, T)`` long tensor, e.g. ``[7, 7, 7, 9, 9] -> [0, 1, 2, 0, 1]``.
    """
    if doc_ids.ndim != 2:
        raise ValueError(f"doc_ids must have shape (B, T), got {tuple(doc_ids.shape)}")
    B, T = doc_ids.shape
    idx = torch.arange(T, device=doc_ids.device).expand(B, T)  # (B, T)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    run_start = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # (B, T)
    return idx - run_start


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting real tokens: ``cumsum(mask) - 1`` clamped at 0.

    A left-padded row ``[F, F, T, T, T]`` gets ``[0, 0, 0, 1, 2]``: its first real
    token is at position 0, exactly as if it had not been padded.
    """
    return (attention_mask.long().cumsum(dim=1) - 1).clamp_(min=0)


def _norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm without learnable parameters (§2.3)."""
    return F.layer_norm(x, (x.shape[-1],), weight=None, bias=None, eps=eps)


class Attention(nn.Module):
    """Multi-head self-attention without biases.

    Through ``scaled_dot_product_attention``, or compiled FlexAttention when the mask is a
    ``BlockMask`` (packed rows, see :mod:`cm3leon.core.model.attention`).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        is_causal: bool = False,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """Attend over ``x`` (and, with ``kv``, over the cached keys/values).

        Args:
            x: ``(B, T, D)`` normalised input.
            mask: bool, broadcastable to ``(B, 1, T, T_k)``, True = may attend; or a
                FlexAttention ``BlockMask`` (no ``kv``); or None.
            is_causal: let SDPA apply a plain causal mask (only when ``mask`` is None).
            kv: this layer's cache buffers ``(B, H, T_max, Dh)``; the new keys/values are
                written at ``[start, start + T)`` and attention runs over ``[0, start + T)``.
            start: first cache slot of ``x``.
        """
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if kv is not None:  # q, k, v: (B, H, T, Dh)
            k_cache, v_cache = kv
            end = start + T
            k_cache[:, :, start:end] = k
            v_cache[:, :, start:end] = v
            k, v = k_cache[:, :, :end], v_cache[:, :, :end]  # (B, H, end, Dh)
        if is_block_mask(mask):  # packed rows under FlexAttention
            y = flex_attend(q, k, v, mask)  # (B, H, T, Dh)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class MLP(nn.Module):
    """Feed-forward layer ``W_2 · act(W_1 · x)`` without biases."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.fc2 = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.act = _ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block (the unit to wrap for FSDP / activation checkpointing)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.eps = config.norm_eps
        self.attn = Attention(config)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        is_causal: bool = False,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        x = x + self.attn(_norm(x, self.eps), mask, is_causal=is_causal, kv=kv, start=start)
        return x + self.mlp(_norm(x, self.eps))


class CM3LeonTransformer(nn.Module):
    """Decoder-only CM3Leon transformer; see the module docstring for the API.

    Args:
        config: the architecture.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_seq_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.head = (
            None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        )
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise as §2.3: truncated normals, zero output projections (and untied head)."""
        for name, fill in self.init_steps():
            fill(self.get_parameter(name))

    def init_steps(self) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        """:meth:`reset_parameters` as data: ``(parameter name, in-place fill)`` in RNG order.

        Every Linear/Embedding weight gets a truncated normal(0, ``init_std``) in module
        order, then the position table a truncated normal(0, ``pos_init_std``), then the
        output layers zeros.  :mod:`cm3leon.core.model.meta_init` replays exactly this
        list to materialise a meta-device model one parameter at a time.
        """
        std, pos_std = self.config.init_std, self.config.pos_init_std
        trunc = partial(nn.init.trunc_normal_, mean=0.0, std=std, a=-3 * std, b=3 * std)
        steps: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
            (f"{name}.weight", trunc)
            for name, module in self.named_modules()
            if isinstance(module, (nn.Linear, nn.Embedding))
        ]
        pos = partial(nn.init.trunc_normal_, mean=0.0, std=pos_std, a=-3 * pos_std, b=3 * pos_std)
        steps.append(("pos_emb.weight", pos))
        for i in range(len(self.blocks)):
            steps += [(f"blocks.{i}.attn.out.weight", nn.init.zeros_),
                      (f"blocks.{i}.mlp.fc2.weight", nn.init.zeros_)]
        if self.head is not None:
            steps.append(("head.weight", nn.init.zeros_))
        return steps

    def num_parameters(self, *, exclude_embeddings: bool = False) -> int:
        """Number of parameters (tied weights counted once)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.tok_emb.weight.numel() + self.pos_emb.weight.numel()
        return n

    # --------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits of every position.

        Args:
            input_ids: ``(B, T)`` token ids.
            position_ids: ``(B, T)``; default: see the module docstring.
            doc_ids: ``(B, T)`` packed-document ids (block-diagonal causal attention).
            attention_mask: ``(B, T)`` bool, False for padding.
            return_hidden: also return the final (normalised) hidden states.

        Returns:
            ``logits (B, T, V)``, or ``(logits, hidden (B, T, D))`` with ``return_hidden``.

        Raises:
            ValueError: ids out of ``[0, vocab_size)`` (naming row and position), a
                sequence longer than ``max_seq_len``, positions outside the position
                table, or mismatched shapes -- all before any tensor work.
        """
        B, T = self._check_ids(input_ids, "input_ids")
        if self.config.max_seq_len < T:
            raise ValueError(
                f"sequence length {T} exceeds max_seq_len {self.config.max_seq_len} "
                "(the position table of this model)"
            )
        for name, t in (("doc_ids", doc_ids), ("attention_mask", attention_mask)):
            _check_shape(t, name, (B, T))
        if attention_mask is not None:
            attention_mask = attention_mask.bool()
        if position_ids is None:
            if doc_ids is not None:
                position_ids = positions_from_doc_ids(doc_ids)
            elif attention_mask is not None:
                position_ids = positions_from_mask(attention_mask)
        if position_ids is not None:
            _check_shape(position_ids, "position_ids", (B, T))
            self._check_positions(position_ids)
            pos = self.pos_emb(position_ids)  # (B, T, D)
        else:
            pos = self.pos_emb.weight[:T]  # (T, D)

        h = self.tok_emb(input_ids) + pos  # (B, T, D)
        mask = self._mask(T, doc_ids, attention_mask, h)
        for block in self.blocks:
            h = block(h, mask, is_causal=mask is None)
        h = _norm(h, self.config.norm_eps)
        logits = self.logits(h)  # (B, T, V)
        return (logits, h) if return_hidden else logits

    def _mask(
        self, T: int, doc_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, h: torch.Tensor
    ) -> torch.Tensor | object | None:
        """The mask of :meth:`forward`: None (plain causal), a dense tensor or a ``BlockMask``."""
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        if doc_ids is None and attention_mask is None:
            return None
        requires_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        kernel, reason = resolve_attention(self.config.attention, h.device, requires_grad=requires_grad)
        log_choice(self, kernel, reason, h.device)
        if kernel == "flex":
            return document_block_mask(doc_ids, attention_mask, T, h.device)
        return _full_mask(T, doc_ids, attention_mask, h.device)

    def logits(self, hidden: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """Output projection of final hidden states ``(..., D) -> (..., V)``.

        ``rows`` computes only that contiguous slice of the vocabulary (e.g. the image
        block during an image span): ``(..., D) -> (..., len(rows))``, a view of the
        weight, no copy.
        """
        weight = self.tok_emb.weight if self.head is None else self.head.weight
        return F.linear(hidden, weight if rows is None else weight[rows])

    # ------------------------------------------------------ cached decoding
    def new_cache(
        self,
        batch_size: int,
        max_len: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> KVCache:
        """Allocate an empty :class:`KVCache` for ``batch_size`` streams of ``max_len`` slots.

        ``dtype``/``device`` default to those of the model's weights.
        """
        weight = self.tok_emb.weight
        return KVCache.allocate(
            n_layers=self.config.n_layers,
            batch_size=batch_size,
            n_heads=self.config.n_heads,
            head_dim=self.config.head_dim,
            max_len=max_len,
            dtype=dtype or weight.dtype,
            device=device if device is not None else weight.device,
        )

    @torch.no_grad()
    def forward_cached(
        self,
        input_ids: torch.Tensor,
        cache: KVCache,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        last_only: bool = False,
        return_hidden: bool = False,
        logits_rows: slice | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Run ``t`` new tokens per row against ``cache``, writing their keys/values in place.

        Works for prefill (``t > 1``, e.g. a left-padded prompt batch) and single-token
        steps.  Runs without autograd.

        Args:
            input_ids: ``(B, t)`` new tokens; ``B == cache.batch_size``.
            cache: from :meth:`new_cache`; ``cache.length`` advances by ``t``.
            position_ids: ``(B, t)``; default: each row's next real-token positions
                (``cache.next_pos`` onwards, padding does not advance them).
            attention_mask: ``(B, cache.length + t)`` bool over the cached slots and the
                new tokens, False for padding; default: the cached mask, new tokens real.
            last_only: compute logits for the last new token only (``(B, 1, V)``).
            return_hidden: also return the final hidden states of the new tokens.
            logits_rows: compute only this contiguous slice of the vocabulary
                (``V' = len(rows)`` columns; see :meth:`logits`).

        Returns:
            ``logits (B, t, V)`` (or ``(B, 1, V)``), or ``(logits, hidden)``.
        """
        B, t = self._check_ids(input_ids, "input_ids")
        start, end = cache.length, cache.length + t
        if cache.batch_size != B:
            raise ValueError(f"input_ids has batch size {B} but the cache holds {cache.batch_size} rows")
        if end > cache.max_len:
            raise ValueError(
                f"cache overflow: {cache.length} cached + {t} new tokens > cache max_len {cache.max_len}"
            )
        if attention_mask is not None:
            _check_shape(attention_mask, "attention_mask", (B, end), "(B, cache.length + t)")
            new_valid = attention_mask[:, start:].bool()  # (B, t)
        else:
            new_valid = torch.ones(B, t, dtype=torch.bool, device=input_ids.device)
        if position_ids is None:
            position_ids = (cache.next_pos[:, None] + new_valid.long().cumsum(dim=1) - 1).clamp_(min=0)
        _check_shape(position_ids, "position_ids", (B, t))
        self._check_positions(position_ids)

        # Commit the padding state, then build the mask for the t queries over end keys.
        if attention_mask is not None:
            cache.valid[:, :end] = attention_mask.bool()
            cache.has_padding = cache.has_padding or not bool(attention_mask.all())
        else:
            cache.valid[:, start:end] = True
        last = torch.where(new_valid, position_ids + 1, 0).amax(dim=1)  # (B,)
        torch.maximum(cache.next_pos, last, out=cache.next_pos)
        mask = _cached_mask(cache, start, end, input_ids.device)

        h = self.tok_emb(input_ids) + self.pos_emb(position_ids)  # (B, t, D)
        for i, block in enumerate(self.blocks):
            h = block(h, mask, is_causal=mask is None and start == 0 and t > 1,
                      kv=(cache.k[i], cache.v[i]), start=start)
        cache.length = end
        if last_only:
            h = h[:, -1:]
        h = _norm(h, self.config.norm_eps)
        logits = self.logits(h, logits_rows)  # (B, t or 1, V or V')
        return (logits, h) if return_hidden else logits

    # ------------------------------------------------------------ checking
    def _check_ids(self, ids: torch.Tensor, name: str) -> tuple[int, int]:
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"{name} must have shape (B, T) with T >= 1, got {tuple(ids.shape)}")
        bad = (ids < 0) | (ids >= self.config.vocab_size)
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name}[{row}, {col}] = {int(ids[row, col])} is out of range "
                f"[0, {self.config.vocab_size}) (vocab_size of this model)"
            )
        return int(ids.shape[0]), int(ids.shape[1])

    def _check_positions(self, position_ids: torch.Tensor) -> None:
        limit = self.config.max_seq_len
        bad = (position_ids < 0) | (position_ids >= limit)
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"position_ids[{row}, {col}] = {int(position_ids[row, col])} is outside the "
                f"position table [0, {limit}) (max_seq_len)"
            )


def _check_shape(
    t: torch.Tensor | None, name: str, shape: tuple[int, int], expected: str = "(B, T)"
) -> None:
    if t is not None and tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {expected} = {shape}, got {tuple(t.shape)}")


def _full_mask(
    T: int, doc_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor | None:
    """``(B, 1, T, T)`` bool mask (True = attend), or None for plain causal attention."""
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None
    if doc_ids is None and attention_mask is None:
        return None
    idx = torch.arange(T, device=device)
    allowed = (idx[None, :] <= idx[:, None])[None]  # (1, T, T) key <= query
    if doc_ids is not None:
        allowed = allowed & (doc_ids[:, :, None] == doc_ids[:, None, :])  # (B, T, T)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, :]
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=device)  # padding sees itself
    return allowed[:, None]  # (B, 1, T, T)


def _cached_mask(cache: KVCache, start: int, end: int, device: torch.device) -> torch.Tensor | None:
    """Mask of the queries in slots ``[start, end)`` over keys ``[0, end)``, or None."""
    t = end - start
    if not cache.has_padding and (t == 1 or start == 0):
        return None  # a single query sees every cached key; a fresh prefill is plain causal
    q = torch.arange(start, end, device=device)[:, None]  # (t, 1)
    k = torch.arange(end, device=device)[None, :]  # (1, end)
    allowed = (k <= q)[None]  # (1, t, end)
    if cache.has_padding:
        allowed = (allowed & cache.valid[:, None, :end]) | (k == q)  # (B, t, end)
    return allowed[:, None]  # (B or 1, 1, t, end)
