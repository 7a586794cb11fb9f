#!/usr/bin/env bash
# Runs our end-to-end workloads (`cargo bench --bench e2e`) and the PyTorch scripts interleaved
# (ours, torch, ours, torch, ours, torch), records the load average beside each run, and prints
# one markdown table of medians and ratios (ours / torch time; images/s for W4) with the CPU
# model, date and commit. Usage, from anywhere in the repository:
#
#   benches/compare.sh [ROUNDS]        # default 3 rounds
#
# Environment: PYTHON (default /tmp/torchvenv/bin/python), PEERS (default /work/shared/bench),
# MNIST_DIR (default ../shared/data/mnist), E2E_EPOCHS / E2E_THREADS (passed to the bench;
# torch_mlp.py gets the same epochs and threads), LOG (default target/compare-<time>.log).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PYTHON=${PYTHON:-/tmp/torchvenv/bin/python}
PEERS=${PEERS:-/work/shared/bench}
MNIST_DIR=${MNIST_DIR:-$(cd .. && pwd)/shared/data/mnist}
EPOCHS=${E2E_EPOCHS:-3}
THREADS=${E2E_THREADS:-2}
LOG=${LOG:-target/compare-$(date -u +%Y%m%dT%H%M%S).log}
export MNIST_DIR E2E_EPOCHS=$EPOCHS E2E_THREADS=$THREADS
mkdir -p "$(dirname "$LOG")"
: > "$LOG"

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "torch is not importable with $PYTHON (see /work/shared/bench/README.md)" >&2
    exit 1
fi
echo "building the e2e bench..." >&2
cargo bench --bench e2e --no-run >&2

load() { cut -d' ' -f1 /proc/loadavg; }

for r in $(seq 1 "$ROUNDS"); do
    echo "round $r/$ROUNDS: ours" >&2
    echo "== ours round $r load $(load)" >> "$LOG"
    cargo bench --bench e2e 2>/dev/null | grep '^e2e ' >> "$LOG"
    echo "== ours-end round $r load $(load)" >> "$LOG"
    echo "round $r/$ROUNDS: torch" >&2
    echo "== torch round $r load $(load)" >> "$LOG"
    "$PYTHON" "$PEERS/torch_mlp.py" --mnist "$MNIST_DIR" --threads "$THREADS" --epochs "$EPOCHS" >> "$LOG"
    "$PYTHON" "$PEERS/torch_digits.py" --threads 1 >> "$LOG"
    echo "== torch-end round $r load $(load)" >> "$LOG"
done

MODEL=$(lscpu | grep 'Model name' | sed 's/Model name: *//')
FLAGS=$(grep -o -w -E 'avx2|fma|avx512f|avx512vl|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+dirty")
TORCH=$("$PYTHON" -c 'import torch; print(torch.__version__)')
python3 - "$LOG" "$MODEL" "$FLAGS" "$COMMIT" "$TORCH" "$THREADS" <<'EOF'
import datetime, os, re, statistics, sys
log, model, flags, commit, torch, threads = sys.argv[1:]
ours, peer, loads = {}, {}, {'ours': [], 'torch': []}
side = None
torch_names = {'W1 mlp adam': 'W1', 'W1 mlp nag': 'W1n', 'W2 autoencoder adam': 'W2'}
for line in open(log):
    m = re.match(r'== (ours|torch)(-end)? round \d+ load ([\d.]+)', line)
    if m:
        side = m.group(1)
        loads[side].append(m.group(3))
        continue
    m = re.match(r'e2e (\S+) ([\d.]+) (\S+)', line)
    if m and m.group(1) in ('W1', 'W1n', 'W2', 'W3', 'W4'):
        ours.setdefault(m.group(1), []).append(float(m.group(2)))
        continue
    m = re.match(r'(W1 mlp adam|W1 mlp nag|W2 autoencoder adam): ([\d.]+) s/epoch', line)
    if m:
        peer.setdefault(torch_names[m.group(1)], []).append(float(m.group(2)))
        continue
    m = re.match(r'W4 inference: ([\d.]+) images/s', line)
    if m:
        peer.setdefault('W4', []).append(float(m.group(1)))
        continue
    m = re.search(r'digits 64-100-10 adam batch 32: ([\d.]+) us/step', line)
    if m:
        peer.setdefault('W3', []).append(float(m.group(1)))
rows = [
    ('W1', f'MLP 784-512-512-10 Adam b128, one MNIST epoch, {threads} threads', 's/epoch', '≤ 0.5×', 0.5, False),
    ('W1n', 'W1 with SGD + Nesterov', 's/epoch', '≤ 0.5×', 0.5, False),
    ('W2', 'autoencoder 784-256-64-256-784 Adam', 's/epoch', '≤ 0.5×', 0.5, False),
    ('W3', 'digits 64-100-10 Adam b32 per step, 1 thread', 'µs/step', '≤ 1/15× (0.067)', 1 / 15, False),
    ('W4', 'inference of the W1 net, 10k images', 'images/s', '≥ 2× throughput', 2.0, True),
]
print(f'CPU: {model} ({flags.strip()}); {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; commit {commit}; '
      f'torch {torch}; medians of {len(ours.get("W1", ours.get("W3", [])))} interleaved runs')
print(f'load average (1 min) at start/end of each run: ours {" ".join(loads["ours"])}; torch {" ".join(loads["torch"])}')
cores = os.cpu_count() or 1
if any(float(l) > cores for side in loads.values() for l in side):
    # Oversubscribed cores slow torch's OpenMP (spinning barriers) far more than our pool, so
    # ratios measured then flatter us; say so beside the table.
    print(f'WARNING: load average above the {cores} cores during the runs: other processes competed, '
          'ratios are unreliable (OpenMP suffers most); rerun on a quiet machine')
print()
print('| workload | ours | PyTorch | ratio (ours/torch) | target | met |')
print('|---|---|---|---|---|---|')
for key, desc, unit, target, bound, higher in rows:
    if key not in ours or key not in peer:
        print(f'| {key} {desc} | – | – | – | {target} | not measured |')
        continue
    o, p = statistics.median(ours[key]), statistics.median(peer[key])
    ratio = o / p
    met = ratio >= bound if higher else ratio <= bound
    fmt = (lambda v: f'{v:,.0f}') if higher else ((lambda v: f'{v:.1f}') if unit == 'µs/step' else (lambda v: f'{v:.3f}'))
    print(f'| {key} {desc} | {fmt(o)} {unit} | {fmt(p)} {unit} | {ratio:.2f}× | {target} | {"yes" if met else "no"} |')
EOF
echo "raw log: $LOG" >&2
