#!/usr/bin/env bash
# The GPU benchmark, prepared for one run on a CUDA machine (written for the H200 lent
# through the device tool: no network, its own Python with CUDA PyTorch and Triton).
# Installs nothing. Writes into $OUT (default: results/benchmarks/gpu-run):
#   env.txt          nvidia-smi, torch / CUDA / Triton versions
#   bench.json       leviathan-explore bench --device cuda (eager)
#   bench.log        its printed report, the ratios table last
#   bench-compile.*  the same with --compile (decoder layers through torch.compile), if time allows
# Usage, from the repository root:  bash benchmarks/gpu_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/benchmarks/gpu-run}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

{
    date -u
    nvidia-smi || true
    "$PY" -c "import torch, platform; print('python', platform.python_version()); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0))"
    "$PY" -c "import triton; print('triton', triton.__version__)" || echo "triton: not importable"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# The command's parser builds every subcommand; should one of their imports fail on this
# machine, benchmarks/bench.py runs the same bench with only its own parser.
if "$PY" -c "from leviathan_explore.cli import build_parser; build_parser()" >/dev/null 2>&1; then
    BENCH=("$PY" -m leviathan_explore.cli bench)
else
    echo "leviathan_explore.cli does not load here; using benchmarks/bench.py" | tee -a "$OUT/env.txt"
    BENCH=("$PY" benchmarks/bench.py)
fi

# The main measurement: eager PyTorch, every comparison, the ratios table last.
timeout "${BENCH_TIMEOUT:-420}" "${BENCH[@]}" --device cuda --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
status=${PIPESTATUS[0]}

# Optional: the same with torch.compile on the decoder layers (skip with COMPILE=0).
if [ "${COMPILE:-1}" = 1 ] && [ "$status" = 0 ]; then
    timeout "${COMPILE_TIMEOUT:-240}" "${BENCH[@]}" --device cuda --compile --json "$OUT/bench-compile.json" \
        2>&1 | tee "$OUT/bench-compile.log"
fi
exit "$status"
