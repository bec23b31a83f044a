"""benchmarks/model.py runs end to end (slow: it compiles FlexAttention)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "model.py"


def test_model_benchmark_reports_every_kernel(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    report = module.main(["--preset", "cm3leon_tiny", "--batch-size", "2", "--seq-len", "64",
                          "--repeats", "1", "--warmup", "0", "--output", str(out)])  # fmt: skip
    assert out.is_file()
    assert report["max_abs_logit_diff_flex_vs_dense"] < 1e-5
    assert report["max_abs_logit_diff_vs_hf"] == 0.0
    forward, train = report["modes"]["forward"], report["modes"]["train"]
    assert all(v > 0 for v in forward["tokens_per_s"].values())
    assert set(forward["tokens_per_s"]) == {"unpacked", "packed_dense", "packed_flex", "hf_opt"}
    assert forward["ratios_vs_unpacked"]["unpacked"] == 1.0
    # FlexAttention has no CPU backward: reported as skipped, with the reason.
    assert train["tokens_per_s"]["packed_flex"] is None
    assert "no CPU backward" in train["skipped"]["packed_flex"]
    assert train["tokens_per_s"]["packed_dense"] > 0
