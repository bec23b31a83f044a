"""Test helper shared by the CPU bf16 autocast tests of several members."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["output_dtypes"]


@contextlib.contextmanager
def output_dtypes(module_type: type[torch.nn.Module]) -> Iterator[list[torch.dtype]]:
    """Dtypes of every ``module_type`` tensor output computed while the block runs (a global forward hook)."""
    seen: list[torch.dtype] = []

    def hook(module: torch.nn.Module, _inputs: object, output: object) -> None:
        if isinstance(module, module_type) and isinstance(output, torch.Tensor):
            seen.append(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()
