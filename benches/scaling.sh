#!/usr/bin/env bash
# Issue 13's scaling table: W1 (MLP 784-H-H-10, Adam, one MNIST epoch, E2E_THREADS threads) at
# batch sizes 32, 128, 512 and hidden widths 256, 512, 1024, ours (`cargo bench --bench e2e`
# with E2E_ONLY=W1 E2E_BATCH E2E_HIDDEN E2E_PROFILE=1) and PyTorch's (benches/torch_scaling.py),
# run interleaved per cell (ours, torch, ours, torch, ...), with the load average (`uptime`)
# beside each run and the GEMMs' share of our epoch (tape::profile, from one extra profiled
# epoch). Prints one markdown table with the CPU model line. Usage, from anywhere in the
# repository:
#
#   benches/scaling.sh [ROUNDS]        # default 1 round; medians over rounds
#
# Each run is one warm-up epoch plus E2E_EPOCHS (default 1) timed ones; one round takes about
# 3-5 minutes on a 2-core machine. Environment: PYTHON (default /tmp/torchvenv/bin/python),
# MNIST_DIR (default ../shared/data/mnist), E2E_EPOCHS, E2E_THREADS (default 2), BATCHES
# (default "32 128 512"), HIDDENS (default "256 512 1024"), LOG (default
# target/scaling-<time>.log), E2E_BIN (an already built e2e bench binary to run instead of
# `cargo bench --bench e2e`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
PYTHON=${PYTHON:-/tmp/torchvenv/bin/python}
MNIST_DIR=${MNIST_DIR:-$(cd .. && pwd)/shared/data/mnist}
EPOCHS=${E2E_EPOCHS:-1}
THREADS=${E2E_THREADS:-2}
BATCHES=${BATCHES:-32 128 512}
HIDDENS=${HIDDENS:-256 512 1024}
LOG=${LOG:-target/scaling-$(date -u +%Y%m%dT%H%M%S).log}
export MNIST_DIR E2E_EPOCHS=$EPOCHS E2E_THREADS=$THREADS
mkdir -p "$(dirname "$LOG")"
: > "$LOG"

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "torch is not importable with $PYTHON" >&2
    exit 1
fi
if [ -n "${E2E_BIN:-}" ]; then
    ours() { "$E2E_BIN" --bench; }
else
    echo "building the e2e bench..." >&2
    cargo bench --bench e2e --no-run >&2
    ours() { cargo bench --bench e2e 2>/dev/null; }
fi

# The three load averages, as `uptime` prints them.
load() { uptime | sed 's/.*load average: //; s/,//g'; }

for r in $(seq 1 "$ROUNDS"); do
    for h in $HIDDENS; do
        for b in $BATCHES; do
            echo "round $r/$ROUNDS: batch $b hidden $h" >&2
            echo "== ours b$b h$h load $(load)" >> "$LOG"
            E2E_ONLY=W1 E2E_BATCH=$b E2E_HIDDEN=$h E2E_PROFILE=1 \
                ours | grep '^e2e W1 ' >> "$LOG"
            echo "== torch b$b h$h load $(load)" >> "$LOG"
            "$PYTHON" benches/torch_scaling.py --mnist "$MNIST_DIR" --threads "$THREADS" \
                --epochs "$EPOCHS" --batch "$b" --hidden "$h" >> "$LOG"
        done
    done
done

MODEL=$(lscpu | grep 'Model name' | sed 's/Model name: *//')
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+dirty")
TORCH=$("$PYTHON" -c 'import torch; print(torch.__version__)')
python3 - "$LOG" "$MODEL" "$COMMIT" "$TORCH" "$THREADS" "$EPOCHS" <<'PY'
import datetime, os, re, statistics, sys
log, model, commit, torch, threads, epochs = sys.argv[1:]
ours, torch_s, share, loads = {}, {}, {}, {}
cell = side = None
for line in open(log):
    m = re.match(r'== (ours|torch) b(\d+) h(\d+) load (.*)', line)
    if m:
        side, cell = m.group(1), (int(m.group(2)), int(m.group(3)))
        loads.setdefault((side, cell), []).append(m.group(4).split()[0])
        continue
    m = re.match(r'e2e W1 ([\d.]+) s/epoch', line)
    if m:
        ours.setdefault(cell, []).append(float(m.group(1)))
        continue
    m = re.match(r'e2e W1 gemm-share ([\d.]+)', line)
    if m:
        share.setdefault(cell, []).append(float(m.group(1)))
        continue
    m = re.match(r'scaling torch b(\d+) h(\d+) ([\d.]+) s/epoch', line)
    if m:
        torch_s.setdefault((int(m.group(1)), int(m.group(2))), []).append(float(m.group(3)))
print(f'CPU: {model}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; '
      f'commit {commit}; torch {torch}; {threads} threads; W1 Adam, one warm-up + {epochs} '
      f'timed epoch(s) per run, medians over runs')
cores = os.cpu_count() or 1
if any(float(l) > cores for runs in loads.values() for l in runs):
    # Oversubscribed cores slow torch's OpenMP (spinning barriers) far more than our pool.
    print(f'WARNING: load average above the {cores} cores during the runs: other processes '
          'competed, the figures are unreliable (OpenMP suffers most); rerun on a quiet machine')
print()
print('| batch | hidden | ours s/epoch | PyTorch s/epoch | ours/torch | GEMM share of our epoch | load (1 min) ours / torch |')
print('|---|---|---|---|---|---|---|')
fmt = lambda v: f'{statistics.median(v):.3f}' if v else '–'
for cell in sorted(set(ours) | set(torch_s), key=lambda c: (c[1], c[0])):
    o, t, g = ours.get(cell, []), torch_s.get(cell, []), share.get(cell, [])
    ratio = f'{statistics.median(o) / statistics.median(t):.2f}×' if o and t else '–'
    gs = f'{100 * statistics.median(g):.0f}%' if g else '–'
    lo = ' '.join(loads.get(('ours', cell), [])) or '–'
    lt = ' '.join(loads.get(('torch', cell), [])) or '–'
    print(f'| {cell[0]} | {cell[1]} | {fmt(o)} | {fmt(t)} | {ratio} | {gs} | {lo} / {lt} |')
PY
echo "raw log: $LOG" >&2
