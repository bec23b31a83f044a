"""A preallocated key/value cache for incremental decoding.

All buffers are allocated once by :meth:`CM3LeonTransformer.new_cache`; every
decoding step writes its new keys/values in place at ``[length, length + t)`` and
advances ``length``.  Rows of the batch are independent streams (N candidates per
prompt, CFG's conditional and unconditional streams); shorter prompts are
left-padded, which the ``valid`` mask records so padding is never attended to, and
``next_pos`` holds each row's next position id (positions count real tokens only,
so a left-padded row starts at position 0 like an unpadded one).

Row operations (:meth:`select`, :meth:`repeat_interleave`) return a new cache;
they are meant for the few re-arrangements of a generation (after prefill, when
candidates are dropped), not for every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["KVCache"]


@dataclass
class KVCache:
    """Keys, values and padding state of ``B`` decoding streams.

    Attributes:
        k: keys, ``(n_layers, B, n_heads, max_len, head_dim)``.
        v: values, same shape as ``k``.
        valid: ``(B, max_len)`` bool, True where a cached slot holds a real token.
        next_pos: ``(B,)`` long, the position id the next real token of each row gets.
        length: number of filled slots (the same for every row).
        has_padding: whether any filled slot is padding (lets unpadded decoding skip masks).
    """

    k: torch.Tensor
    v: torch.Tensor
    valid: torch.Tensor
    next_pos: torch.Tensor
    length: int = 0
    has_padding: bool = False

    @classmethod
    def allocate(
        cls,
        *,
        n_layers: int,
        batch_size: int,
        n_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str | None,
    ) -> KVCache:
        """Allocate empty buffers (use :meth:`CM3LeonTransformer.new_cache`)."""
        for name, value in (("batch_size", batch_size), ("max_len", max_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"KVCache {name} must be a positive integer, got {value!r}")
        shape = (n_layers, batch_size, n_heads, max_len, head_dim)
        return cls(
            k=torch.zeros(shape, dtype=dtype, device=device),
            v=torch.zeros(shape, dtype=dtype, device=device),
            valid=torch.zeros(batch_size, max_len, dtype=torch.bool, device=device),
            next_pos=torch.zeros(batch_size, dtype=torch.long, device=device),
        )

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def remaining(self) -> int:
        """Free slots left."""
        return self.max_len - self.length

    def reset(self) -> None:
        """Forget every cached token (buffers are kept, not zeroed)."""
        self.length = 0
        self.has_padding = False
        self.valid.zero_()
        self.next_pos.zero_()

    def crop(self, length: int) -> None:
        """Drop every slot at or after ``length`` (e.g. rejected speculative tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"KVCache.crop: length {length} not in [0, {self.length}]")
        self.valid[:, length:] = False
        self.length = length
        valid = self.valid[:, :length]
        self.next_pos.copy_(valid.sum(dim=1))
        self.has_padding = bool((~valid).any()) if length else False

    def select(self, rows: torch.Tensor | list[int]) -> KVCache:
        """A new cache holding ``rows`` of this one, in that order (rows may repeat).

        Only the filled part is copied; the new cache has the same ``max_len``.
        """
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.k.device)
        if idx.ndim != 1:
            raise ValueError(f"KVCache.select: rows must be 1-D, got shape {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.batch_size):
            raise ValueError(
                f"KVCache.select: row index out of range [0, {self.batch_size}): {idx.tolist()}"
            )
        n = self.length
        out = KVCache.allocate(
            n_layers=self.k.shape[0],
            batch_size=int(idx.numel()),
            n_heads=self.k.shape[2],
            head_dim=self.k.shape[4],
            max_len=self.max_len,
            dtype=self.k.dtype,
            device=self.k.device,
        )
        out.k[:, :, :, :n] = self.k[:, idx, :, :n]  # (L, B', H, n, Dh)
        out.v[:, :, :, :n] = self.v[:, idx, :, :n]
        out.valid[:, :n] = self.valid[idx, :n]
        out.next_pos.copy_(self.next_pos[idx])
        out.length = n
        out.has_padding = self.has_padding
        return out

    def repeat_interleave(self, repeats: int) -> KVCache:
        """A new cache with every row repeated ``repeats`` times in place (``[a, a, b, b]``)."""
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"KVCache.repeat_interleave: repeats must be >= 1, got {repeats!r}")
        rows = torch.arange(self.batch_size, device=self.k.device).repeat_interleave(repeats)
        return self.select(rows)

    def nbytes(self) -> int:
        """Memory held by the buffers."""
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.valid, self.next_pos))
