"""benchmarks/generate.py runs end to end (slow: it times Hugging Face generate too)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

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
        assert row["bf16_tokens_per_s"] > 0 and row["bf16_bandwidth_fraction"] > 0  # bf16 beside fp32
        assert row["bf16_decode_bytes"] < row["ours_decode_bytes"]
    assert 0 < b1["bf16_token_agreement"] <= 1
    # the probe uses every core (the old single-threaded copy under-read the bus: fractions > 1)
    assert report["bandwidth_probe"]["threads"] == (os.cpu_count() or 1)
    threads = torch.get_num_threads()
    module.measure_bandwidth(1 << 20, repeats=1)
    assert torch.get_num_threads() == threads  # restored
