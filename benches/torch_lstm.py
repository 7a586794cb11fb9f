#!/usr/bin/env python3
"""PyTorch CPU peer for the LSTM benchmark of issue 14: one nn.LSTM layer 128 -> 256 over
(batch 32, T 100) sequences, a linear read-out of every step to 10 values and a mean squared
error against (batch, T, 10) targets; one training step = forward + backward + Adam update
(lr 1e-3). Random data, fixed seed. The same workload as `cargo bench --bench lstm`, except that
nn.LSTM has no peepholes (ours adds three elementwise products per step) and two bias vectors,
initialised U(-1/16, 1/16) like the weights (ours: weights N(0, 1/sqrt(fan_in + fan_out)) per
gate block, std 0.051 and 0.044 against torch's 0.036, zero bias, peepholes N(0, 1)).

Prints the median time per step over --repeats timed blocks of --steps steps each, after warm-up.
Usage: benches/torch_lstm.py [--threads 1] [--steps 20] [--repeats 5]
(torch from the venv of /work/shared/bench/README.md: /tmp/torchvenv/bin/python)."""
import argparse, statistics, time
import torch

ap = argparse.ArgumentParser()
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--steps', type=int, default=20)
ap.add_argument('--repeats', type=int, default=5)
ap.add_argument('--batch', type=int, default=32)
ap.add_argument('--time', type=int, default=100)
ap.add_argument('--inputs', type=int, default=128)
ap.add_argument('--hidden', type=int, default=256)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
lstm = torch.nn.LSTM(a.inputs, a.hidden, batch_first=True)
out = torch.nn.Linear(a.hidden, 10)
params = list(lstm.parameters()) + list(out.parameters())
opt = torch.optim.Adam(params, 1e-3)
x = torch.randn(a.batch, a.time, a.inputs)
y = torch.randn(a.batch, a.time, 10)


def step():
    opt.zero_grad(set_to_none=True)
    h, _ = lstm(x)
    loss = torch.nn.functional.mse_loss(out(h), y)
    loss.backward()
    opt.step()
    return loss.item()


for _ in range(3):
    step()
times = []
for _ in range(a.repeats):
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    times.append((time.perf_counter() - t) / a.steps)
print(f'torch {torch.__version__} threads {a.threads}: lstm {a.inputs}->{a.hidden} batch {a.batch} '
      f'T {a.time} adam: {statistics.median(times) * 1e3:.2f} ms/step')
