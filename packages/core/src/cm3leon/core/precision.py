"""Mixed precision that also works on the CPU: one setting for every trainer of the project.

Composer's ``amp_bf16`` autocasts on CUDA (and XLA) only: on a CPU its precision
context is a silent no-op, and its device check rejects anything but ``fp32``.  So the
trainers resolve the configured name here, hand Composer the precision *it* should apply
(:attr:`ResolvedPrecision.composer_precision`: ``fp32`` on the CPU), and enter
:meth:`ResolvedPrecision.autocast` around their own forward pass, which on the CPU is
``torch.autocast("cpu", dtype=torch.bfloat16)``.  Weights, gradients and optimizer state
stay fp32 (mixed precision, not bf16 training); matmuls and convolutions run in bf16.

Names (``precision:`` in the train, VQ and CLIP configs)::

    fp32      no autocast anywhere (the default of the CPU presets)
    amp_bf16  bf16 autocast: Composer's on a GPU, the trainer's own on the CPU.  On a
              CPU without AMX / AVX512-BF16 it still runs, emulated (usually slower)
    amp_fp16  fp16 autocast with loss scaling: GPU only (Composer)
    auto      amp_bf16 where the hardware does bf16 natively (CUDA bf16 support; a CPU
              whose /proc/cpuinfo flags include amx_bf16 or avx512_bf16), else fp32

:func:`resolve_precision` returns the choice with a one-line reason, which each trainer
logs once.  This module imports torch lazily, so config validation stays light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CPU_BF16_FLAGS",
    "PRECISIONS",
    "ResolvedPrecision",
    "cpu_bf16_flags",
    "precision_problem",
    "resolve_precision",
]

#: Every accepted ``precision`` value.
PRECISIONS = ("auto", "fp32", "amp_bf16", "amp_fp16")
#: ``/proc/cpuinfo`` flags of CPUs that compute bf16 matmuls natively (Intel AMX, AVX512-BF16).
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, ...]:
    """The native-bf16 flags (:data:`CPU_BF16_FLAGS`) this CPU reports; ``()`` if none or unknown."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux, or no procfs: assume no native bf16
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return tuple(f for f in CPU_BF16_FLAGS if f in flags)


def precision_problem(precision: str, device: str, *, key: str = "precision") -> str | None:
    """Why ``precision`` cannot run on ``device`` (``cpu``/``gpu``/``auto``), or ``None``.

    ``device="auto"`` is judged as given (no hardware probe): only the name is checked.
    """
    if precision not in PRECISIONS:
        return f"{key}: {precision!r} is not one of {list(PRECISIONS)}"
    if precision == "amp_fp16" and device == "cpu":
        return (f"{key}: 'amp_fp16' is a GPU setting (fp16 needs loss scaling); "
                "CPU runs use fp32, amp_bf16 or auto")
    return None


@dataclass(frozen=True)
class ResolvedPrecision:
    """What runs: ``precision`` (``fp32``/``amp_bf16``/``amp_fp16``) on ``device`` (``cpu``/``gpu``).

    Attributes:
        requested: the configured name (``auto`` included).
        precision: the resolved name.
        device: ``cpu`` or ``gpu``.
        reason: why, in words (hardware flags found or missing).
    """

    requested: str
    precision: str
    device: str
    reason: str

    @property
    def composer_precision(self) -> str:
        """The ``Trainer(precision=)`` value: Composer autocasts on GPUs only, so ``fp32`` on the CPU."""
        return "fp32" if self.device == "cpu" else self.precision

    @property
    def cpu_autocast(self) -> bool:
        """Whether the trainer itself must autocast (bf16 on the CPU)."""
        return self.device == "cpu" and self.precision == "amp_bf16"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast("cpu", dtype=torch.bfloat16)`` when :attr:`cpu_autocast`, else a no-op."""
        return _cpu_bf16_autocast() if self.cpu_autocast else contextlib.nullcontext()

    def describe(self) -> str:
        """The one log line: ``precision amp_bf16 on cpu (requested auto): ...``."""
        return f"precision {self.precision} on {self.device} (requested {self.requested}): {self.reason}"


@contextlib.contextmanager
def _cpu_bf16_autocast() -> Iterator[None]:
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16):
        yield


def _gpu_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve_precision(requested: str, device: str, *, flags: tuple[str, ...] | None = None,
                      gpu_bf16: bool | None = None, key: str = "precision") -> ResolvedPrecision:
    """Resolve a configured precision name for ``device`` (``cpu`` or ``gpu``, already resolved).

    Args:
        requested: one of :data:`PRECISIONS`.
        device: ``cpu`` or ``gpu``.
        flags: the CPU's native-bf16 flags (default: :func:`cpu_bf16_flags`).
        gpu_bf16: whether the GPU does bf16 (default: ``torch.cuda.is_bf16_supported()``).
        key: the config key named in errors.

    Raises:
        ValueError: an unknown name, or ``amp_fp16`` on the CPU (naming ``key``).
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"resolve_precision: device must be 'cpu' or 'gpu', got {device!r}")
    problem = precision_problem(requested, device, key=key)
    if problem:
        raise ValueError(problem)
    if device == "gpu":
        native = _gpu_bf16() if gpu_bf16 is None else gpu_bf16
        if requested == "auto":
            chosen = "amp_bf16" if native else "fp32"
            return ResolvedPrecision(requested, chosen, device,
                                     "the GPU supports bf16" if native else "the GPU lacks bf16 support")
        return ResolvedPrecision(requested, requested, device, "as configured (Composer autocast)")
    found = cpu_bf16_flags() if flags is None else tuple(flags)
    hardware = (f"the CPU has {', '.join(found)}" if found
                else f"the CPU has none of {', '.join(CPU_BF16_FLAGS)}")
    if requested == "auto":
        chosen = "amp_bf16" if found else "fp32"
        return ResolvedPrecision(requested, chosen, device, hardware)
    if requested == "amp_bf16":
        how = "CPU bf16 autocast in the trainer's forward; "
        tail = hardware if found else hardware + " (bf16 is emulated: expect it slower than fp32)"
        return ResolvedPrecision(requested, requested, device, how + tail)
    return ResolvedPrecision(requested, requested, device, "as configured (no autocast)")
