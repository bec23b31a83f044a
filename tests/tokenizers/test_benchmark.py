"""Smoke test of benchmarks/tokenizers.py (the numbers themselves are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tokenizers.py"


@pytest.mark.slow
def test_benchmark_prints_json_with_reference(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--presets", "small_32", "--batches", "2", "--repeats", "1",
         "--output", str(out)],
        capture_output=True, text=True, check=True, timeout=600,
    )
    report = json.loads(run.stdout)
    assert report == json.loads(out.read_text())
    (row,) = report["results"]
    assert row["preset"] == "small_32" and row["batch"] == 2 and row["tokens"] == 64
    for key in ("encode_images_per_s", "decode_images_per_s", "reference_chameleon_encode_images_per_s",
                "encode_ratio_vs_chameleon_encoder"):
        assert row[key] > 0
