"""Fraction of the machine's measured matmul throughput that a training step achieves (MFU).

FLOPs of one step (encoder pass, CLUB steps, losses, backward) are counted by
``torch.utils.flop_counter.FlopCounterMode`` from the actual operator shapes (matmuls, convolutions,
attention; elementwise work is not counted, so this is a lower bound of the work done). The step
time is the median of timed steps. The peak is the median throughput of a large square fp32 matmul
(``torch.mm``, N = 4096) with the same number of threads.

Usage: python benchmarks/bench_mfu.py [--preset hdcid] [--batch-size 8] [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.data.synthetic import random_feature_batch
from hf_hdcid.training import pretraining_step


def gemm_peak(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="hdcid", choices=("hdcid", "dcid", "tiny"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epoch", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = getattr(HDCIDConfig, args.preset)()
    model = HDCIDForPreTraining(config).train()
    main_opt = torch.optim.Adam(model.main_parameters(), lr=1e-4)
    club_opt = torch.optim.Adam(model.club_parameters(), lr=1e-4)
    batch = random_feature_batch(config, args.batch_size, torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        pretraining_step(model, batch, args.epoch, main_opt, club_opt, club_steps=5)
    flops = counter.get_total_flops()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        pretraining_step(model, batch, args.epoch, main_opt, club_opt, club_steps=5)
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    peak = gemm_peak()
    result = {"preset": args.preset, "batch_size": args.batch_size, "threads": args.threads,
              "gflop_per_step": round(flops / 1e9, 1), "median_step_s": round(step_s, 3),
              "achieved_gflops": round(flops / step_s / 1e9, 1), "gemm_peak_gflops": round(peak / 1e9, 1),
              "mfu": round(flops / step_s / peak, 3)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
