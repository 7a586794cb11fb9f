#!/usr/bin/env python3
"""PyTorch side of the scaling table (benches/scaling.sh): W1, the MLP 784-H-H-10 (ReLU,
softmax cross-entropy) trained with Adam (lr 1e-3) on MNIST's 60,000 training images for one
epoch at a given batch size B and hidden width H, batch order shuffled, data in memory, as
torch's own defaults (nn.Linear init, Adam's betas and eps).

Usage: torch_scaling.py --mnist DIR --batch B --hidden H [--threads 2] [--epochs 1]
Prints: `scaling torch b<B> h<H> <seconds> s/epoch (epochs ...)` (median of the timed epochs,
after one warm-up epoch).
"""
import argparse
import gzip
import os
import statistics
import time

import numpy as np
import torch


def read_idx(directory, stem):
    """An IDX file of unsigned bytes (gzipped or not) as a numpy array of its shape."""
    for name in (stem + '.gz', stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            opener = gzip.open if name.endswith('.gz') else open
            with opener(path, 'rb') as f:
                raw = f.read()
            rank = raw[3]
            shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(rank)]
            return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(shape)
    raise FileNotFoundError(os.path.join(directory, stem))


def train_set(directory):
    images = read_idx(directory, 'train-images.idx3-ubyte')
    labels = read_idx(directory, 'train-labels.idx1-ubyte')
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255)
    return x, torch.from_numpy(labels.astype(np.int64))


def one_epoch(net, opt, x, y, batch, gen):
    starts = torch.arange(0, len(x), batch)
    order = starts[torch.randperm(len(starts), generator=gen)].tolist()
    loss_fn = torch.nn.CrossEntropyLoss()
    begin = time.perf_counter()
    for s in order:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x[s:s + batch]), y[s:s + batch]).backward()
        opt.step()
    return time.perf_counter() - begin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mnist', required=True)
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--hidden', type=int, default=512)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x, y = train_set(a.mnist)
    h = a.hidden
    net = torch.nn.Sequential(torch.nn.Linear(784, h), torch.nn.ReLU(), torch.nn.Linear(h, h),
                              torch.nn.ReLU(), torch.nn.Linear(h, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    one_epoch(net, opt, x, y, a.batch, gen)  # warm-up
    times = [one_epoch(net, opt, x, y, a.batch, gen) for _ in range(max(1, a.epochs))]
    listed = ', '.join(f'{t:.3f}' for t in times)
    print(f'scaling torch b{a.batch} h{h} {statistics.median(times):.4f} s/epoch (epochs {listed})',
          flush=True)


if __name__ == '__main__':
    main()
