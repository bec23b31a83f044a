#!/usr/bin/env bash
# GPU check (issue 17 item 8): training MFU of cm3leon_350m and cm3leon_760m at seq 4,096
# (bf16, FlexAttention, packed documents), one 7B-shape 1,024-token image with CFG (bf16,
# KV cache, random weights), and one FSDP2 step on one GPU.  Prints one JSON object.
#
#   bash benchmarks/gpu.sh                     # one H100 / H200: <= 8 minutes
#   bash benchmarks/gpu.sh --peak-tflops 756   # a GPU whose peak is not detected (H100 PCIe)
#   bash benchmarks/gpu.sh --smoke             # the same parts, tiny shapes, on the CPU
#
# Each part is its own process under `timeout` (limits below, 450 s in all), so a part that
# fails, runs out of memory or hangs is reported with its exit status and log tail while
# the others' numbers still print.  Extra arguments go to every part (benchmarks/gpu.py
# --help).  GPU_PYTHON overrides the interpreter command (default: the uv environment's).
# GPU_KEEP=DIR keeps the per-part JSON and logs in DIR.  GPU_TIME_SCALE multiplies the
# limits (default 1; 4 with --smoke, whose CPU processes are not held to the GPU budget).
set -u
cd "$(dirname "$0")/.."
if [ -n "${GPU_PYTHON:-}" ]; then
    read -r -a PY <<< "$GPU_PYTHON"
else
    # Sync once, then call the environment's python directly: `timeout` signals the process
    # it started, and a python left behind by a killed `uv run` would keep the GPU's memory.
    if command -v uv > /dev/null; then uv run --quiet python -c "" >&2; fi
    if [ -x .venv/bin/python ]; then PY=(.venv/bin/python); else PY=(uv run python); fi
fi
OUT="${GPU_KEEP:-$(mktemp -d)}"
mkdir -p "$OUT"
: > "$OUT/parts"

SCALE=${GPU_TIME_SCALE:-1}
case " $* " in *" --smoke "*) SCALE=${GPU_TIME_SCALE:-4} ;; esac

run_part() {  # name limit_s args...
    local name=$1 limit=$(( $2 * SCALE ))
    shift 2
    echo "$name" >> "$OUT/parts"
    echo "$limit" > "$OUT/$name.limit"
    echo "[gpu.sh $(date -u +%H:%M:%S)] $name (limit ${limit} s)" >&2
    timeout -k 10 "$limit" "${PY[@]}" benchmarks/gpu.py "$@" --output "$OUT/$name.json" \
        >"$OUT/$name.log" 2>&1
    echo $? > "$OUT/$name.rc"
}

run_part mfu_350m 110 --part mfu --preset cm3leon_350m "$@"
run_part mfu_760m 130 --part mfu --preset cm3leon_760m "$@"
run_part decode_7b 120 --part decode --preset cm3leon_7b "$@"
run_part fsdp_760m 90 --part fsdp --preset cm3leon_760m "$@"
"${PY[@]}" benchmarks/gpu.py --combine "$OUT"
