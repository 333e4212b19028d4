"""Synthetic benchmark generation speed (clips/s) at a preset's dimensions.

Usage: python benchmarks/bench_synthetic.py [--preset hdcid] [--clips 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from hf_hdcid import HDCIDConfig
from hf_hdcid.data.synthetic import SyntheticAVT


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="hdcid", choices=("hdcid", "tiny"))
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    world = SyntheticAVT(getattr(HDCIDConfig, args.preset)(), seed=0)
    world.generate("train", 0, 4)  # warm-up
    t = time.perf_counter()
    for start in range(0, args.clips, 64):
        world.generate("pretrain", start, min(64, args.clips - start))
    seconds = time.perf_counter() - t
    result = {"preset": args.preset, "clips": args.clips, "seconds": round(seconds, 3),
              "clips_per_s": round(args.clips / seconds, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
