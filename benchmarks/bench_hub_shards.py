"""Feature shards through the (fake) Hub at the paper's dimensions: ``push_shards`` then a cold
``load_shards("org/name")``.

Per clip: video [10, 7, 7, 512] float16, audio [10, 128] float32, text [10, 768] float16 (0.52 MB), so
2,000 clips are about 1 GB. The shard folder is written once (untimed for the figures below); then,
per repeat, with a fresh fake Hub (``tests/fake_hub.py`` with ``publish=False``: it stands for the
online Hub, so nothing is in the cache until downloaded) and a fresh, empty Hub cache:

- ``push_s``: ``push_shards`` (folder checks, card, sha256 of every file for the commit operations,
  the commit: the fake Hub copies every file into its remote tree);
- ``cold_load_s``: ``load_shards("org/name")`` with nothing cached: ``snapshot_download`` (the fake Hub
  copies the remote files into the cache as blobs + snapshot symlinks, as a first download would),
  then the manifest checks and the memory map;
- ``warm_load_s``: ``load_shards("org/name")`` again (real ``snapshot_download`` from the cache);
- ``read_s``: one pass over the loaded rows in batches of 32 collated to float32 (page cache warm).

The fake Hub copies files on the local disk, so the push and the cold load measure this machine's
disk and page cache, not a network. ``local_load_s`` is ``load_shards`` of the folder itself, for
comparison. Prints one JSON line per repeat and a summary line with the medians. Everything is written
under a temporary folder (default under /tmp) that is deleted at the end; check the free space first
(about 3 GB are needed at the peak: the folder, the remote tree and one cache).

Usage: python benchmarks/bench_hub_shards.py [--clips 2000] [--num-shards 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every real Hub call stays local; the fake Hub serves downloads
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # fake_hub

import datasets  # noqa: E402
import torch  # noqa: E402
from huggingface_hub import constants  # noqa: E402

from fake_hub import FakeHub  # noqa: E402
from hf_hdcid import HDCIDConfig  # noqa: E402
from hf_hdcid.data.hub_shards import push_shards  # noqa: E402
from hf_hdcid.data.shards import load_shards, write_shards  # noqa: E402

REPO_ID = "hdcid-bench/paper-size-shards"


def make_records(config: HDCIDConfig, n: int, seed: int = 0):
    """n clips of random features in the stored dtypes, generated lazily (the writer validates each)."""
    g = torch.Generator().manual_seed(seed)
    t, s = config.num_frames, config.video_spatial_size
    for i in range(n):
        yield {"clip_id": f"clip{i:06d}", "split": "train" if i < 0.9 * n else "test", "label": i % 28,
               "video": torch.rand(t, s, s, config.video_feature_dim, generator=g).half().numpy(),
               "audio": torch.randn(t, config.audio_feature_dim, generator=g).numpy(),
               "text": torch.randn(t, config.text_feature_dim, generator=g).half().numpy()}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def read_pass(dataset, collate, batch_size: int) -> float:
    start = time.perf_counter()
    for batch in dataset.iter(batch_size):
        out = collate(batch)
        float(out["video"][:, 0, 0, 0, 0].sum())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--num-shards", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tmp", default="/tmp")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()

    config = HDCIDConfig.hdcid()
    root = Path(tempfile.mkdtemp(prefix="bench_hub_shards-", dir=args.tmp))
    try:
        start = time.perf_counter()
        folder = write_shards(make_records(config, args.clips), root / "shards", config, num_shards=args.num_shards)
        write_s = time.perf_counter() - start
        size = folder_bytes(folder)
        start = time.perf_counter()
        load_shards(folder, config)
        local_load_s = time.perf_counter() - start
        base = {"benchmark": "hub_shards", "clips": args.clips, "num_shards": args.num_shards,
                "folder_mb": round(size / 1e6, 1), "write_s": round(write_s, 2), "local_load_s": round(local_load_s, 3)}
        runs = []
        for repeat in range(args.repeats):
            remote, cache = root / f"remote{repeat}", root / f"cache{repeat}"
            constants.HF_HUB_CACHE = str(cache)  # read by snapshot_download at call time
            hub = FakeHub(root=remote, cache_dir=cache, publish=False)
            with hub.patch():
                start = time.perf_counter()
                commit = push_shards(folder, REPO_ID, token="hf_bench", license="other")
                push_s = time.perf_counter() - start
                assert not cache.exists(), "the online fake Hub must not fill the cache on push"
                start = time.perf_counter()
                dataset, collate = load_shards(REPO_ID, config)
                cold_s = time.perf_counter() - start
                start = time.perf_counter()
                load_shards(REPO_ID, config)
                warm_s = time.perf_counter() - start
                read_s = read_pass(dataset, collate, args.batch_size)
            assert len(dataset) == args.clips and Path(collate.source).is_relative_to(cache)
            run = {**base, "repeat": repeat, "commit": commit.oid[:12], "push_s": round(push_s, 2),
                   "push_mb_per_s": round(size / 1e6 / push_s, 1), "cold_load_s": round(cold_s, 2),
                   "cold_load_mb_per_s": round(size / 1e6 / cold_s, 1), "warm_load_s": round(warm_s, 3),
                   "read_s": round(read_s, 2), "read_clips_per_s": round(args.clips / read_s),
                   "cache_mb": round(folder_bytes(cache) / 1e6, 1)}
            print(json.dumps(run), flush=True)
            runs.append(run)
            del dataset, collate
            shutil.rmtree(remote)
            shutil.rmtree(cache)
        summary = {**base, "summary": f"median of {len(runs)}"}
        for key in ("push_s", "cold_load_s", "warm_load_s", "read_s"):
            summary[key] = round(statistics.median(r[key] for r in runs), 3)
        summary["push_mb_per_s"] = round(size / 1e6 / summary["push_s"], 1)
        summary["cold_load_mb_per_s"] = round(size / 1e6 / summary["cold_load_s"], 1)
        print(json.dumps(summary), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
