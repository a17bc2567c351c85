#!/usr/bin/env bash
# On a machine with CUDA: the weights job for GPT-2-small-shaped random transcoders
# (12 x 24,576, d_model 768) end to end into the embedded store, a per-prompt attribution
# batch, and the blocked-product benchmark, each writing its section of docs/benchmarks.md
# with the GPU named. Run from the repository root: `make bench-gpu` or `bash bench/gpu.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "bench/gpu.sh: torch sees no CUDA device; nothing run" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -m bench.gpt2_weights --features "${FEATURES:-24576}" --device cuda --write-docs
"$PY" -m bench.attribution --device cuda --write-docs
"$PY" -m bench.weights --device cuda --write-docs
echo "bench/gpu.sh: results in docs/benchmarks.md"
