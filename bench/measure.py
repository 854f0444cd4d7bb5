"""One measurement for bench.py, in a process of its own (so its peak memory is its own).

    measure.py peak THREADS              matmul GFLOP/s at this model's shapes, fp32 and bf16
    measure.py batches DATA N            make_batch time (exact and fast) and the useful work of
                                         a pretraining batch (non-pad tokens, attention pairs)

Prints one line `RESULT {json}`.
"""
import json
import os
import random
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src'))
from submission.lib.batching import make_batch  # noqa: E402
from submission.dataset import CharCorruptionDataset  # noqa: E402

# (M, K, N) of the pretraining step's matmuls: ~7,700 packed tokens by the
# 256-wide embedding, the 1,024-wide MLP and back.
SHAPES = [(7680, 256, 256), (7680, 256, 1024), (7680, 1024, 256)]


def matmul_peak(threads):
    """Best GFLOP/s over the model's shapes, for fp32 and bf16, with `threads` threads."""
    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (('fp32', torch.float32), ('bf16', torch.bfloat16)):
        best = {}
        for m, k, n in SHAPES:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            for _ in range(3):
                a @ b
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                a @ b
                times.append(time.perf_counter() - t0)
            best[f'{m}x{k}x{n}'] = 2 * m * k * n / statistics.median(times) / 1e9
        out[name] = {'by_shape': best, 'peak': max(best.values())}
    return out


def batch_work(data, n):
    """Per pretraining batch of 128: make_batch time in each mode, non-pad target tokens,
    and attention pairs (each token attends to itself and the tokens before it in its example)."""
    with open(os.path.join(data, 'wiki.txt'), encoding='utf-8') as f:
        ds = CharCorruptionDataset(f.read(), 128)
    random.seed(0)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0)).tolist()
    out = {}
    for exact in (True, False):
        times, targets, pairs = [], [], []
        for i in range(n):
            t0 = time.perf_counter()
            x, y, pos = make_batch(ds, order[i * 128:(i + 1) * 128], exact)
            times.append(time.perf_counter() - t0)
            targets.append(int((y != 0).sum()))
            if pos is not None:
                pairs.append(int(((pos + 1) * (y != 0)).sum()))
        out['exact' if exact else 'fast'] = {'ms': 1000 * statistics.median(times),
                                             'targets': statistics.mean(targets)}
        if pairs:
            out['fast']['attention_pairs'] = statistics.mean(pairs)
    return out


if __name__ == '__main__':
    what = sys.argv[1]
    if what == 'peak':
        result = matmul_peak(int(sys.argv[2]))
    elif what == 'batches':
        torch.set_num_threads(1)
        result = batch_work(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f'unknown measurement {what}')
    print('RESULT ' + json.dumps(result))
