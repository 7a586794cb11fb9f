#!/usr/bin/env bash
# Runs our benchmarks and then the PyTorch peer scripts in one session, so the ratios in
# docs/benchmarks.md come from one machine state. Usage, from the repository root:
#
#   benches/peers.sh                 # machine info, cargo bench gemm + mlp_step, then the peers
#   benches/peers.sh --peers-only    # machine info and the peers only
#
# Environment: PYTHON (default /tmp/torchvenv/bin/python, set up as in
# /work/shared/bench/README.md), PEERS (default /work/shared/bench), COMMIT (printed; default git HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/tmp/torchvenv/bin/python}
PEERS=${PEERS:-/work/shared/bench}

echo "== machine"
date -u '+%Y-%m-%d %H:%M:%S UTC'
lscpu | grep -E 'Model name|^CPU\(s\)'
echo "SIMD: $(grep -o -w -E 'avx2|fma|avx512f|avx512_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
uptime
echo "commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
rustc --version

if [[ "${1:-}" != "--peers-only" ]]; then
    echo "== cargo bench --bench gemm"
    cargo bench --bench gemm
    echo "== cargo bench --bench mlp_step"
    cargo bench --bench mlp_step
fi

echo "== peers ($PYTHON)"
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "torch not importable with $PYTHON: peers not measured"
    exit 0
fi
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "mkldnn", torch.backends.mkldnn.is_available())'
"$PYTHON" "$PEERS/torch_sgemm.py" --threads 1
"$PYTHON" "$PEERS/torch_sgemm.py" --threads 2
"$PYTHON" "$PEERS/torch_digits.py" --threads 1
uptime
