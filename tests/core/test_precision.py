"""``cm3leon.core.precision``: resolving ``auto`` / ``amp_bf16`` for CPUs with and without native bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cm3leon.core.precision import cpu_bf16_flags, precision_problem, resolve_precision

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse sse2 avx2 avx512f {extra}
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu vme sse sse2 avx2 avx512f {extra}
"""


def _cpuinfo(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra=extra))
    return path


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    assert cpu_bf16_flags(_cpuinfo(tmp_path, "amx_tile amx_bf16 avx512_bf16")) == ("amx_bf16", "avx512_bf16")
    assert cpu_bf16_flags(_cpuinfo(tmp_path, "avx512_bf16")) == ("avx512_bf16",)
    assert cpu_bf16_flags(_cpuinfo(tmp_path, "avx512_vnni")) == ()
    assert cpu_bf16_flags(tmp_path / "missing") == ()


def test_auto_picks_bf16_only_where_the_cpu_has_it() -> None:
    native = resolve_precision("auto", "cpu", flags=("amx_bf16",))
    assert (native.precision, native.composer_precision, native.cpu_autocast) == ("amp_bf16", "fp32", True)
    assert "amx_bf16" in native.describe() and "requested auto" in native.describe()
    plain = resolve_precision("auto", "cpu", flags=())
    assert (plain.precision, plain.cpu_autocast) == ("fp32", False)
    assert "none of amx_bf16, avx512_bf16" in plain.describe()


def test_amp_bf16_runs_on_any_cpu_and_says_when_it_is_emulated() -> None:
    emulated = resolve_precision("amp_bf16", "cpu", flags=())
    assert emulated.cpu_autocast and emulated.composer_precision == "fp32"
    assert "emulated" in emulated.reason
    assert "emulated" not in resolve_precision("amp_bf16", "cpu", flags=("avx512_bf16",)).reason


def test_gpu_precision_goes_to_composer() -> None:
    gpu = resolve_precision("amp_bf16", "gpu", gpu_bf16=True)
    assert (gpu.composer_precision, gpu.cpu_autocast) == ("amp_bf16", False)
    assert resolve_precision("auto", "gpu", gpu_bf16=True).composer_precision == "amp_bf16"
    assert resolve_precision("auto", "gpu", gpu_bf16=False).composer_precision == "fp32"
    assert resolve_precision("amp_fp16", "gpu", gpu_bf16=False).composer_precision == "amp_fp16"


def test_bad_names_are_errors_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"image.precision: 'amp_fp16' is a GPU setting"):
        resolve_precision("amp_fp16", "cpu", key="image.precision")
    with pytest.raises(ValueError, match=r"precision: 'bf16' is not one of \['auto', 'fp32'"):
        resolve_precision("bf16", "cpu")
    assert precision_problem("amp_fp16", "gpu") is None and precision_problem("amp_bf16", "cpu") is None


def test_autocast_context_makes_cpu_matmuls_bf16() -> None:
    a = torch.randn(4, 8)
    with resolve_precision("amp_bf16", "cpu", flags=()).autocast():
        assert (a @ a.T).dtype == torch.bfloat16
    with resolve_precision("fp32", "cpu").autocast():
        assert (a @ a.T).dtype == torch.float32
