"""benchmarks/gpu.sh and benchmarks/gpu.py: the GPU check, smoke-tested on the CPU.

The slow test runs every part in smoke mode (tiny shapes, CPU, in this process: five
fresh interpreters took over 15 minutes on the shared 2 cores) and checks the JSON; the
fast ones run the shell script with a stub interpreter (a failing part is reported, the
others survive, the limits fit the 8 minutes), and check the peak detection by name.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "tflops", "bandwidth"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0, 3350.0),
        ("NVIDIA H200", 989.0, 4800.0),
        ("NVIDIA A100-SXM4-80GB", 312.0, 2000.0),
        ("NVIDIA H100 PCIe", None, None),  # not the SXM part: needs --peak-tflops
        ("NVIDIA L4", None, None),
    ],
)
def test_peak_is_detected_from_the_device_name(monkeypatch, name, tflops, bandwidth) -> None:
    gpu = _module()
    monkeypatch.setattr(gpu.torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(gpu.torch.cuda, "device_count", lambda: 1)
    info = gpu.device_info(gpu._args(["--device", "cuda", "--part", "mfu"]))
    assert info["device_name"] == name
    assert info["peak_tflops"] == (pytest.approx(tflops) if tflops else None)
    assert info["peak_bandwidth_gb_s"] == (pytest.approx(bandwidth) if bandwidth else None)
    if tflops is None:
        assert "--peak-tflops" in info["peak_source"]
        given = gpu.device_info(gpu._args(["--device", "cuda", "--peak-tflops", "756"]))
        assert given["peak_tflops"] == pytest.approx(756.0)
        assert given["peak_source"] == "--peak-tflops"


def test_combine_reports_failed_parts_and_keeps_the_others(tmp_path: Path) -> None:
    gpu = _module()
    (tmp_path / "parts").write_text("mfu_350m\ndecode_7b\nfsdp_760m\n")
    part = {"benchmark": "gpu", "part": "mfu", "mfu": 0.41, "host_info": {"device": "cuda"}}
    (tmp_path / "mfu_350m.json").write_text(json.dumps(part))
    for name, rc, limit in (("mfu_350m", 0, 110), ("decode_7b", 124, 120), ("fsdp_760m", 1, 90)):
        (tmp_path / f"{name}.rc").write_text(f"{rc}\n")
        (tmp_path / f"{name}.limit").write_text(f"{limit}\n")
    (tmp_path / "fsdp_760m.log").write_text("line\nRuntimeError: CUDA out of memory\n")
    merged = gpu.combine(tmp_path)
    assert merged["host"] == {"device": "cuda"}
    assert merged["parts"]["mfu_350m"]["mfu"] == 0.41
    assert merged["parts"]["decode_7b"] == {"error": "timed out after 120 s", "log_tail": []}
    assert merged["parts"]["fsdp_760m"]["error"] == "exit status 1"
    assert merged["parts"]["fsdp_760m"]["log_tail"][-1] == "RuntimeError: CUDA out of memory"
    assert merged["ok"] is False


_STUB = """#!/usr/bin/env bash
# Stands in for `uv run python`: the parts answer at once (decode fails); --combine is real.
case " $* " in
  *" --combine "*) exec "$REAL_PYTHON" "$@" ;;
  *" --part decode "*) echo "RuntimeError: CUDA out of memory (stub)" >&2; exit 1 ;;
esac
case " $* " in *" --peak-tflops 756 "*) args_ok=true ;; *) args_ok=false ;; esac
while [ $# -gt 0 ]; do
  case $1 in --output) out=$2; shift ;; --preset) preset=$2; shift ;; esac
  shift
done
printf '{"part": "stub", "preset": "%s", "args_ok": %s, "host_info": {"device": "cuda"}}' \
  "$preset" "$args_ok" > "$out"
"""


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and coreutils timeout")
def test_gpu_sh_runs_each_part_and_survives_a_failing_one(tmp_path: Path) -> None:
    stub = tmp_path / "python"
    stub.write_text(_STUB)
    stub.chmod(0o755)
    env = {**os.environ, "GPU_PYTHON": str(stub), "REAL_PYTHON": sys.executable,
           "GPU_KEEP": str(tmp_path / "keep")}  # fmt: skip
    proc = subprocess.run(["bash", str(SCRIPT), "--peak-tflops", "756"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert list(report["parts"]) == ["mfu_350m", "mfu_760m", "decode_7b", "fsdp_760m"]
    assert report["parts"]["mfu_350m"]["preset"] == "cm3leon_350m"
    assert report["parts"]["fsdp_760m"]["preset"] == "cm3leon_760m"
    assert report["parts"]["mfu_760m"]["args_ok"] is True  # extra arguments reach every part
    assert report["parts"]["decode_7b"]["error"] == "exit status 1"
    assert "CUDA out of memory (stub)" in report["parts"]["decode_7b"]["log_tail"][-1]
    assert report["host"] == {"device": "cuda"} and report["ok"] is False
    limits = {n: int((tmp_path / "keep" / f"{n}.limit").read_text()) for n in report["parts"]}
    assert sum(limits.values()) <= 8 * 60 - 30  # the 8-minute budget, with room for start-up


@pytest.mark.slow
def test_smoke_mode_runs_every_part_and_prints_sane_json(tmp_path: Path) -> None:
    gpu = _module()
    report = gpu.main(["--smoke", "--peak-tflops", "1", "--output", str(tmp_path / "gpu.json")])
    assert json.loads((tmp_path / "gpu.json").read_text()) == report
    parts = report["parts"]
    assert list(parts) == ["mfu", "decode", "fsdp"]
    assert report["host"]["device"] == "cpu" and report["host"]["tiny"] is True
    small = gpu.main(["--smoke", "--peak-tflops", "1", "--part", "mfu", "--preset", "cm3leon_350m"])
    for mfu in (parts["mfu"], small):
        assert mfu["shapes"] == "tiny stand-in"
        assert mfu["tokens_per_s"] > 0 and math.isfinite(mfu["loss"])
        assert mfu["seq_len"] == 128 and mfu["documents_per_row"] > 1  # packed rows
        # The CPU has no FlexAttention backward: the fallback is reported with its reason.
        assert mfu["attention_kernel"] == "sdpa" and "CUDA" in mfu["attention_reason"]
        tflops = mfu["tokens_per_s"] * mfu["flops_per_token"] / 1e12
        assert mfu["achieved_tflops"] == pytest.approx(tflops)
        assert mfu["mfu"] == pytest.approx(tflops / 1.0)  # --peak-tflops 1
        assert 0 < mfu["mfu_llm_foundry_convention"] < mfu["mfu"]
    assert parts["mfu"]["preset"] == "cm3leon_760m" and parts["mfu"]["mfu_goal"] == 0.45
    assert small["preset"] == "cm3leon_350m" and small["mfu_goal"] is None and small["batch_size"] == 8
    decode = parts["decode"]
    assert decode["preset"] == "cm3leon_7b"
    assert decode["generated"] == decode["image_tokens"] == 16
    assert decode["streams"] == ["cond", "uncond"] and decode["dtype"] == "bfloat16"
    assert 0 < decode["decode_seconds"] <= decode["seconds_per_image"]
    assert decode["meets_goal"] is None  # only judged on an H200
    fsdp = parts["fsdp"]
    assert fsdp["parameter_type"] == "DTensor" and fsdp["backend"] == "gloo"
    assert fsdp["loss_finite"] and fsdp["losses"][-1] < fsdp["losses"][0]
    assert fsdp["tokens_per_s"] > 0
