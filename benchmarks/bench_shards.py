"""Write and read throughput of feature shards at the paper's dimensions (HDCIDConfig.hdcid()).

Per clip: video [10, 7, 7, 512] float16, audio [10, 128] float32, text [10, 768] float16 (0.52 MB),
so 2,000 clips are about 1 GB. The random data is made before any timing. The shard folder goes to
a temporary directory (default under /tmp) that is deleted at the end.

Timed:
- write: ``write_shards`` (validation, ``Dataset.from_generator``, ``save_to_disk``, atomic rename);
- load: ``load_shards`` (manifest and schema checks, memory map);
- read, page cache warm (the data was just written; one untimed pass first), batches of 32 through
  ``HDCIDCollator`` to float32 tensors:
  ``sequential`` = ``dataset.iter(32)``;
  ``shuffled`` = ``make_dataloader(shuffle=True)`` (DataLoader over ``ArrowBatchView``, workers=0);
  ``shuffled_datasets`` = ``DataLoader(dataset, shuffle=True)`` (datasets' own random access).

Prints one JSON line. Usage: python benchmarks/bench_shards.py [--clips 2000] [--num-shards 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import datasets
import torch
from torch.utils.data import DataLoader

from hf_hdcid import HDCIDConfig
from hf_hdcid.data.shards import ArrowBatchView, load_shards, write_shards


def make_records(config: HDCIDConfig, n: int, seed: int = 0) -> list[dict]:
    """n clips of random features, already in the stored dtypes (numpy views of torch tensors)."""
    g = torch.Generator().manual_seed(seed)
    t, s = config.num_frames, config.video_spatial_size
    video = torch.rand(n, t, s, s, config.video_feature_dim, generator=g, dtype=torch.float16)
    audio = torch.randn(n, t, config.audio_feature_dim, generator=g)
    text = torch.randn(n, t, config.text_feature_dim, generator=g).half()
    return [{"clip_id": f"clip{i:06d}", "split": "train" if i < 0.9 * n else "test", "label": i % 28,
             "video": video[i].numpy(), "audio": audio[i].numpy(), "text": text[i].numpy()} for i in range(n)]


def timed_pass(batches, collate) -> tuple[float, int]:
    """Seconds and clips for one pass; each batch is collated to float32 and touched."""
    start, clips, checksum = time.perf_counter(), 0, 0.0
    for batch in batches:
        out = collate(batch)
        checksum += float(out["video"][:, 0, 0, 0, 0].sum())  # forces nothing lazy to be skipped
        clips += out["video"].shape[0]
    return time.perf_counter() - start, clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--num-shards", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed read passes (best is reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tmp", default="/tmp")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()

    config = HDCIDConfig.hdcid()
    records = make_records(config, args.clips)
    clip_mb = sum(v.nbytes for k, v in records[0].items() if k in ("video", "audio", "text")) / 1e6
    root = tempfile.mkdtemp(prefix="bench_shards-", dir=args.tmp)
    result = {"benchmark": "shards", "clips": args.clips, "clip_mb": round(clip_mb, 3),
              "num_shards": args.num_shards, "batch_size": args.batch_size, "threads": args.threads}
    try:
        out = os.path.join(root, "shards")
        start = time.perf_counter()
        write_shards(records, out, config, num_shards=args.num_shards)
        write_s = time.perf_counter() - start
        result.update(write_s=round(write_s, 2), write_clips_per_s=round(args.clips / write_s),
                      write_mb_per_s=round(args.clips * clip_mb / write_s),
                      disk_mb=round(sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)) / 1e6))

        start = time.perf_counter()
        dataset, collate = load_shards(out, config, dtype=torch.float32)
        result["load_s"] = round(time.perf_counter() - start, 3)

        first = collate(dataset[:2])
        assert first["video"].dtype == torch.float32 and dataset[0]["video"].dtype == torch.float16
        by_id = {r["clip_id"]: r for r in records}  # rows are grouped by split, so look clips up by id
        expected = torch.stack([torch.from_numpy(by_id[c]["video"]) for c in first["clip_id"]]).float()
        assert torch.equal(first["video"], expected), "round trip changed the video features"

        bs = args.batch_size
        readers = {
            "sequential": lambda: dataset.iter(batch_size=bs),
            "shuffled": lambda: DataLoader(ArrowBatchView(dataset), batch_size=bs, shuffle=True, collate_fn=lambda b: b),
            "shuffled_datasets": lambda: DataLoader(dataset, batch_size=bs, shuffle=True, collate_fn=lambda b: b),
        }
        for name, make in readers.items():
            timed_pass(make(), collate)  # warm-up: page cache and lazy initialisation
            best = min(timed_pass(make(), collate) for _ in range(args.repeats))
            assert best[1] == args.clips, (name, best[1])
            result[f"read_{name}_clips_per_s"] = round(best[1] / best[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
