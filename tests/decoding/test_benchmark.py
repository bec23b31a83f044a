"""benchmarks/generate.py runs end to end (slow: it times Hugging Face generate too)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "generate.py"


def test_generate_benchmark_reports_identical_greedy_outputs(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_generate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    report = module.main(["--preset", "cm3leon_small", "--text-size", "512", "--image-size", "256",
                          "--image-tokens", "64", "--candidates", "4", "--repeats", "1", "--output", str(out)])  # fmt: skip
    assert out.is_file() and report["measured_bandwidth_gb_s"] > 0
    b1, many = report["results"]["batch1_greedy"], report["results"]["candidates4_top_p"]
    assert b1["identical_to_hf"] is True
    for row in (b1, many):
        assert row["ours_tokens_per_s"] > 0 and row["hf_tokens_per_s"] > 0 and row["bandwidth_fraction"] > 0
