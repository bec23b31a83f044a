"""Wall time of `cm3leon demo` (full and --quick) on this machine, against its budget.

    uv run python benchmarks/demo.py                 # --quick, then the full demo
    uv run python benchmarks/demo.py --only quick    # just the quick preset
    uv run python benchmarks/demo.py --out-root /tmp/demo-bench --keep

Each preset runs from scratch in a fresh directory as a subprocess (`cm3leon demo
--no-progress`), so the time includes interpreter start-up, imports and every stage.
The reference measured in the same run is the budget (issue: full < 15 min, --quick
< 3 min): the JSON reports seconds, the budget, their ratio (< 1 is within budget), the
per-stage seconds from the demo's stage records, the machine's load average before and
after (other processes on a shared machine slow everything down), and the headline
numbers from the demo's summary.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/demo.py` puts benchmarks/ first on sys.path, where a sibling script
# named like a package (benchmarks/tokenizers.py) would shadow the installed one.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

BUDGET_SECONDS = {"quick": 180.0, "full": 900.0}


def _cm3leon() -> list[str]:
    exe = Path(sys.executable).with_name("cm3leon")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cm3leon.core.cli"]


def run_preset(name: str, out: Path) -> dict[str, Any]:
    """Run one preset from scratch; return its timing and headline numbers."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [*_cm3leon(), "demo", "--no-progress", "--out", str(out)] + (["--quick"] if name == "quick" else [])
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "preset": name, "seconds": round(seconds, 1), "budget_seconds": BUDGET_SECONDS[name],
        "ratio_to_budget": round(seconds / BUDGET_SECONDS[name], 3), "exit_status": proc.returncode,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    if proc.returncode != 0:
        result["error"] = (proc.stderr or proc.stdout)[-2000:]
        return result
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    result["stage_seconds"] = {s["name"]: s["seconds"] for s in summary["stages"]}
    result["floors"] = [
        {k: c.get(k) for k in ("name", "value", "baseline", "ratio", "passed")} for c in summary["floors"]
    ]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(BUDGET_SECONDS), default=None)
    parser.add_argument("--out-root", type=Path, default=None, help="Where the runs go (default: a temp dir).")
    parser.add_argument("--keep", action="store_true", help="Keep the run directories.")
    args = parser.parse_args(argv)
    root = args.out_root or Path(tempfile.mkdtemp(prefix="cm3leon-demo-bench-"))
    presets = [args.only] if args.only else ["quick", "full"]
    results = [run_preset(name, root / name) for name in presets]
    print(json.dumps({"benchmark": "demo", "cpus": os.cpu_count(), "runs": results}, indent=2))
    if not args.keep and args.out_root is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r["exit_status"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
