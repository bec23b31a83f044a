"""benchmarks/retrieval.py: the rate-distortion bound behind the compressed goal (``code_bound``).

Small data model, exact scores from a small bank: the bound's recall must grow with the
bits per vector (its score error fall), and reach the exact ranking when the code is
(nearly) lossless.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_retrieval", ROOT / "benchmarks" / "retrieval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_retrieval"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_code_bound_grows_with_bits_and_is_exact_when_lossless() -> None:
    rb = _module()
    rng = np.random.default_rng(0)
    model = rb.clip_like(32, 16, 0.9, 1.15, 0.6, 0.5, rng)
    base, queries = rb.draw(model, 5000, rng), rb.draw(model, 100, rng)
    scores = -np.sort(-(queries @ base.T), axis=1)[:, :100]
    bounds = [rb.code_bound(model, queries, scores, 10, bits, np.random.default_rng(1)) for bits in (32, 128, 512, 4096)]
    recalls = [b["recall@10"] for b in bounds]
    assert recalls == sorted(recalls) and recalls[0] < 0.9, recalls
    assert recalls[-1] >= 0.99, recalls
    errors = [b["score_error_std"] for b in bounds]
    assert errors == sorted(errors, reverse=True)
    assert bounds[-1]["mse"] < 1e-6  # 128 bits per dimension: (nearly) lossless


def test_disk_rerank_row_reports_ram_disk_and_reads_separately(capsys) -> None:
    # A crude 4-bit PQ index whose whole bank is the shortlist, re-ranked against float32
    # vectors on disk, is exact search: recall 1.0, RAM = the index, disk = 4 d per vector.
    bench = _module()
    n, dim = 2000, 32
    report = bench.main(["--n", str(n), "--dim", str(dim), "--nlist", "8", "--train-per-list", "100", "--topics", "50", "--queries", "40",
                         "--val-queries", "20", "--batch", "20", "--repeats", "1", "--threads", "1",
                         "--rows", f"IVF{{nlist}},PQ4x4|nprobe=8,shortlist={n}|0.99|float32@@IVF{{nlist}},PQ4x4|nprobe=8|0.99"])
    capsys.readouterr()
    disk, plain = report["rows"]
    assert disk["recall@10"] == 1.0 and plain["recall@10"] < 1.0
    assert disk["disk_bytes_per_vector"] == round((n * dim * 4 + 128) / n, 1)
    assert disk["ram_bytes_per_vector"] < plain["ram_bytes_per_vector"]  # no 8-byte direct map
    assert abs(disk["bytes_per_vector"] - disk["ram_bytes_per_vector"] - disk["disk_bytes_per_vector"]) <= 0.15
    assert disk["vectors_read_per_query"] == n and plain["vectors_read_per_query"] is None
    assert report["goals"]["compressed_ram"]["by"] == ["IVF8,PQ4x4 + disk float32"]
    assert "| `IVF8,PQ4x4` + disk float32 |" in report["table"]
