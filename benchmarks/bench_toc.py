"""Time TOC channel selection (closed forms, O(L D)) against the original procedure's O(L^2) pair loop.

The pair loop below is this project's own re-statement of the original algorithm (a Python double
loop over the L(L-1) ordered code pairs, accumulating float64 products in a float32 buffer), used
only as the timing and agreement reference.

Usage: python benchmarks/bench_toc.py [--repeats 5] [--loop-repeats 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hf_hdcid.toc import select_channels


def pair_loop_selection(codebook: torch.Tensor, num_channels: int, lam: float = 0.7) -> torch.Tensor:
    n, d = codebook.shape
    e = codebook.double()
    sim = torch.zeros(d)  # float32 accumulator, as the original
    for i in range(n):
        for j in range(n):
            if i != j:
                sim += e[i] * e[j]
    sim = sim.double() / (n * (n - 1))
    var = e.var(dim=0)
    score = -lam * sim + (1 - lam) * var
    return torch.topk(score, num_channels).indices


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    small = torch.randn(400, 256, generator=g) / 20
    large = torch.randn(16384, 512, generator=g) / 20
    select_channels(small, 128)  # warm-up
    result = {
        "select_channels_400x256_s": median_time(lambda: select_channels(small, 128), args.repeats),
        "select_channels_16384x512_s": median_time(lambda: select_channels(large, 256), args.repeats),
    }
    loop_idx = pair_loop_selection(small, 128)
    result["pair_loop_400x256_s"] = median_time(lambda: pair_loop_selection(small, 128), args.loop_repeats)
    result["same_channels_400x256"] = loop_idx.tolist() == select_channels(small, 128).tolist()
    result["speedup_400x256"] = result["pair_loop_400x256_s"] / result["select_channels_400x256_s"]
    for key, value in result.items():
        print(f"{key:<32} {value:.6g}" if isinstance(value, float) else f"{key:<32} {value}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
