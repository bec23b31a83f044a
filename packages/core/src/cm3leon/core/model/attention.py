"""Attention kernels for packed rows: FlexAttention with a document block mask, or dense SDPA.

A packed row holds several documents; a token attends to earlier tokens of its own
document only (``doc_ids[q] == doc_ids[k] and k <= q``; the packer gives the padding run
its own id).  Two ways to compute that:

* ``"sdpa"`` -- build the dense ``(B, 1, T, T)`` bool mask and pass it to
  ``F.scaled_dot_product_attention``.  Works everywhere, but an arbitrary mask rules out
  the flash kernels on GPU and costs ``B * T * T`` bytes per step.
* ``"flex"`` -- ``torch.nn.attention.flex_attention`` (compiled with ``torch.compile``)
  with a :class:`BlockMask` built from the document ids: blocks that lie entirely in
  another document are skipped, the rest are masked inside the kernel, and no dense mask
  exists.

The :class:`~cm3leon.core.model.config.TransformerConfig` field ``attention`` chooses:
``"sdpa"``, ``"flex"`` (an error where FlexAttention cannot run) or ``"auto"`` (the
default): FlexAttention on CUDA when Triton and ``torch.compile`` are available, dense
SDPA otherwise.  Why ``"auto"`` keeps SDPA on the CPU: torch's FlexAttention has no CPU
backward (``NotImplementedError: FlexAttention does not support backward on CPU``, torch
2.14), so it cannot train there, and for inference its first compile (20-35 s on 2 cores)
costs more than the CPU demo spends in attention altogether.  Plain causal rows (no
``doc_ids``, no padding) always use SDPA's ``is_causal`` kernels, which need no mask.
The KV-cached decoding path always uses dense SDPA.

Which path runs is logged once per model and path (``cm3leon.core.model.attention``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any

import torch

from cm3leon.core.model.config import ATTENTION_CHOICES

__all__ = [
    "ATTENTION_CHOICES",
    "document_block_mask",
    "flex_attend",
    "flex_unavailable_reason",
    "is_block_mask",
    "log_choice",
    "resolve_attention",
]

log = logging.getLogger(__name__)

_FLEX_MODULE = "torch.nn.attention.flex_attention"


@functools.cache
def _flex() -> Any:
    """``torch.nn.attention.flex_attention`` (imported on first use: ~1 s), or None (torch 2.4)."""
    try:
        return importlib.import_module(_FLEX_MODULE)
    except ImportError:  # pragma: no cover - torch < 2.5
        return None


def is_block_mask(mask: Any) -> bool:
    """Whether ``mask`` is a FlexAttention ``BlockMask`` (not a dense tensor or None)."""
    module = sys.modules.get(_FLEX_MODULE)  # no BlockMask exists before it is imported
    return module is not None and isinstance(mask, module.BlockMask)


def flex_unavailable_reason(device: torch.device, *, requires_grad: bool) -> str | None:
    """Why FlexAttention cannot run on ``device`` here, or None when it can.

    Args:
        device: where the activations live.
        requires_grad: whether the attention inputs need gradients (training).
    """
    if _flex() is None:
        return f"torch {torch.__version__} has no torch.nn.attention.flex_attention (needs >= 2.5)"
    import torch._dynamo as dynamo  # ~1-4 s, so only where a masked forward asks

    if not dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this platform / Python"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (FlexAttention compiles to Triton on CUDA)"
    if device.type == "cpu":
        if requires_grad:
            return f"torch {torch.__version__}'s FlexAttention has no CPU backward"
        return None
    return f"FlexAttention is not wired for device {device.type!r}"


def resolve_attention(choice: str, device: torch.device, *, requires_grad: bool) -> tuple[str, str]:
    """The kernel for masked (packed or padded) attention: ``("flex" | "sdpa", reason)``.

    Raises:
        RuntimeError: ``choice == "flex"`` where FlexAttention cannot run (the reason named).
    """
    if choice == "sdpa":
        return "sdpa", "attention='sdpa'"
    if choice == "auto" and device.type != "cuda":  # before importing anything
        return "sdpa", f"attention='auto' uses FlexAttention on CUDA only (device {device.type})"
    reason = flex_unavailable_reason(device, requires_grad=requires_grad)
    if choice == "flex":
        if reason is not None:
            raise RuntimeError(
                f"TransformerConfig.attention='flex' cannot run on {device.type}: {reason}; "
                "use attention='auto' (falls back to dense SDPA) or 'sdpa'"
            )
        return "flex", "attention='flex'"
    if reason is not None:
        return "sdpa", f"attention='auto': {reason}"
    return "flex", "attention='auto' on CUDA"


def log_choice(owner: Any, kernel: str, reason: str, device: torch.device) -> None:
    """Log the masked-attention kernel once per ``owner`` (a model) and kernel."""
    seen: set[str] = owner.__dict__.setdefault("_attention_logged", set())
    if kernel in seen:
        return
    seen.add(kernel)
    what = (
        "flex_attention (compiled) with a block mask from doc_ids"
        if kernel == "flex"
        else "scaled_dot_product_attention with a dense (B, 1, T, T) mask"
    )
    log.info("masked attention on %s: %s [%s]", device.type, what, reason)


def document_block_mask(
    doc_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, T: int, device: torch.device
) -> Any:
    """FlexAttention ``BlockMask`` equal to the dense packed/padded mask.

    ``allowed(q, k) = (k <= q and doc[q] == doc[k] and valid[k]) or k == q`` -- exactly the
    dense mask of the SDPA path (a padding query sees itself, so its output stays finite).

    Args:
        doc_ids: ``(B, T)`` document ids, or None (one document per row).
        attention_mask: ``(B, T)`` bool, False = padding, or None.
    """
    B = (doc_ids if doc_ids is not None else attention_mask).shape[0]
    mask_mod = _mask_mod(doc_ids, attention_mask)
    return _block_mask_fn(device.type)(mask_mod, B, None, T, T, device=device)


@functools.cache
def _block_mask_fn(device_type: str) -> Callable[..., Any]:
    """``create_block_mask``; compiled on CUDA (as torchtitan does).

    Eager, it evaluates ``mask_mod`` into a dense ``(B, 1, T, T)`` bool tensor before
    reducing it to blocks; compiled, the two fuse and no dense mask exists.  On the CPU
    compiling it measured no faster (56 vs 58 ms at B4 T512), so it stays eager there.
    """
    create = _flex().create_block_mask
    return torch.compile(create) if device_type == "cuda" else create


def _mask_mod(doc_ids: torch.Tensor | None, valid: torch.Tensor | None) -> Callable[..., torch.Tensor]:
    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        allowed = k <= q
        if doc_ids is not None:
            allowed = allowed & (doc_ids[b, q] == doc_ids[b, k])
        if valid is not None:
            allowed = (allowed & valid[b, k]) | (k == q)
        return allowed

    return mask_mod


@functools.cache
def _compiled_flex() -> Callable[..., torch.Tensor]:
    return torch.compile(_flex().flex_attention)


def flex_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: Any) -> torch.Tensor:
    """Compiled FlexAttention of ``q, k, v`` ``(B, H, T, Dh)`` under ``block_mask``."""
    return _compiled_flex()(q, k, v, block_mask=block_mask)  # (B, H, T, Dh)
