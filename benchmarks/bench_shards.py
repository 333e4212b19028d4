"""Write and read throughput of feature shards at the paper's dimensions (HDCIDConfig.hdcid()).

Per clip: video [10, 7, 7, 512] float16, audio [10, 128] float32, text [10, 768] float16 (0.52 MB),
so 2,000 clips are about 1 GB. The random data is made before any timing. The shard folder goes to
a temporary directory (default under /tmp) that is deleted at the end.

Timed:
- write: ``write_shards`` (validation, ``Dataset.from_generator``, ``save_to_disk``, atomic rename);
- load: ``load_shards`` (manifest and schema checks, memory map);
- read, page cache warm (the data was just written; one untimed pass of every reader first), batches
  of 32 through ``HDCIDCollator`` to float32 tensors, DataLoaders with workers=0:
  ``sequential`` = ``dataset.iter(32)``;
  ``sequential_view`` = DataLoader over ``ArrowBatchView`` in order (public API:
  ``dataset.with_format("arrow")[indices]``);
  ``shuffled`` = the same with ``shuffle=True`` (what ``make_dataloader(shuffle=True)`` builds);
  ``shuffled_mapped`` = ``shuffled`` over ``dataset.shuffle()`` (rows read through an indices mapping);
  ``*_private`` = the same readers over ``PrivateArrowBatchView``, a copy of the view before issue 16
  (it read ``dataset._indices`` and ``dataset.data.table``), kept here only for comparison;
  ``*_gather`` = the shuffled readers without the collator (the view's batch tables only);
  ``shuffled_datasets`` = ``DataLoader(dataset, shuffle=True)`` (datasets' own torch-formatted random
  access, one decode per row).
  The readers take turns within each repeat (so load on a shared machine hits all of them alike);
  each reports the median (and the best) of ``--repeats`` passes, and ``ratio_*`` is public / private
  of the medians. ``other_cpu_cores`` / ``steal_cpu_cores``: CPU that other processes (or the
  hypervisor) took while the reads were timed, in cores (``/proc/stat``); 0 on an idle machine.

Prints one JSON line. Usage: python benchmarks/bench_shards.py [--clips 2000] [--num-shards 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time

import datasets
import pyarrow as pa
import torch
from torch.utils.data import DataLoader

from hf_hdcid import HDCIDConfig
from hf_hdcid.data.shards import ArrowBatchView, load_shards, write_shards


class PrivateArrowBatchView(torch.utils.data.Dataset):
    """ArrowBatchView as it was before issue 16 (private datasets internals); for comparison only."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def _rows(self, indices) -> list[int]:
        mapping = getattr(self.dataset, "_indices", None)  # set by a non-contiguous select/shuffle
        if mapping is None:
            return [int(i) for i in indices]
        column = mapping.column(0)
        return [column[int(i)].as_py() for i in indices]

    def __getitems__(self, indices) -> pa.Table:
        n = len(self)
        if any(not -n <= int(i) < n for i in indices):
            raise IndexError(f"indices out of range for a dataset of {n} rows: {list(indices)}")
        table = self.dataset.data.table
        return pa.concat_tables([table.slice(r, 1) for r in self._rows(int(i) % n for i in indices)]).combine_chunks()


def make_records(config: HDCIDConfig, n: int, seed: int = 0) -> list[dict]:
    """n clips of random features, already in the stored dtypes (numpy views of torch tensors)."""
    g = torch.Generator().manual_seed(seed)
    t, s = config.num_frames, config.video_spatial_size
    video = torch.rand(n, t, s, s, config.video_feature_dim, generator=g, dtype=torch.float16)
    audio = torch.randn(n, t, config.audio_feature_dim, generator=g)
    text = torch.randn(n, t, config.text_feature_dim, generator=g).half()
    return [{"clip_id": f"clip{i:06d}", "split": "train" if i < 0.9 * n else "test", "label": i % 28,
             "video": video[i].numpy(), "audio": audio[i].numpy(), "text": text[i].numpy()} for i in range(n)]


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat (0, 0 if unreadable)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_pass(batches, consume) -> tuple[float, int]:
    """Seconds and clips for one pass; ``consume(batch)`` returns the batch's number of clips."""
    start, clips = time.perf_counter(), 0
    for batch in batches:
        clips += consume(batch)
    return time.perf_counter() - start, clips


def collated(collate):
    """Consumer: collate to float32 and touch the result."""
    def consume(batch) -> int:
        out = collate(batch)
        float(out["video"][:, 0, 0, 0, 0].sum())  # forces nothing lazy to be skipped
        return out["video"].shape[0]
    return consume


def gathered(table: pa.Table) -> int:
    """Consumer of the view alone: the batch table (its combine_chunks already copied every column)."""
    return table.num_rows


def check_same_rows(public, private, collate, indices) -> None:
    """The public and the private view read the same rows for ``indices``."""
    a, b = collate(public.__getitems__(indices)), collate(private.__getitems__(indices))
    assert a["clip_id"] == b["clip_id"] and torch.equal(a["video"], b["video"]), "public and private views differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--num-shards", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="timed read passes per reader (median reported)")
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
              "num_shards": args.num_shards, "batch_size": args.batch_size, "threads": args.threads,
              "repeats": args.repeats, "datasets": datasets.__version__, "pyarrow": pa.__version__}
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
        del records, by_id

        mapped = dataset.shuffle(seed=0, keep_in_memory=True)  # an indices mapping under the rows
        probe = torch.randperm(args.clips, generator=torch.Generator().manual_seed(1))[:args.batch_size].tolist()
        for ds in (dataset, mapped):
            check_same_rows(ArrowBatchView(ds), PrivateArrowBatchView(ds), collate, probe)

        bs, to_float = args.batch_size, collated(collate)

        def loader(view, ds, shuffle):
            return lambda: DataLoader(view(ds), batch_size=bs, shuffle=shuffle, collate_fn=lambda b: b)

        readers = {"sequential": (lambda: dataset.iter(batch_size=bs), to_float)}  # name: (make batches, consume)
        for suffix, view in {"": ArrowBatchView, "_private": PrivateArrowBatchView}.items():
            readers[f"sequential_view{suffix}"] = (loader(view, dataset, False), to_float)
            readers[f"shuffled{suffix}"] = (loader(view, dataset, True), to_float)
            readers[f"shuffled_mapped{suffix}"] = (loader(view, mapped, True), to_float)
            readers[f"shuffled_gather{suffix}"] = (loader(view, dataset, True), gathered)  # no collate
            readers[f"shuffled_mapped_gather{suffix}"] = (loader(view, mapped, True), gathered)
        readers["shuffled_datasets"] = (lambda: DataLoader(dataset, batch_size=bs, shuffle=True,
                                                           collate_fn=lambda b: b), to_float)

        for make, consume in readers.values():
            timed_pass(make(), consume)  # warm-up: page cache and lazy initialisation
        rates: dict[str, list[float]] = {name: [] for name in readers}
        (busy0, steal0), own0, wall0 = machine_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        for _ in range(args.repeats):
            for name, (make, consume) in readers.items():
                seconds, clips = timed_pass(make(), consume)
                assert clips == args.clips, (name, clips)
                rates[name].append(clips / seconds)
        (busy1, steal1), own1, wall1 = machine_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        wall = wall1 - wall0  # other processes' CPU use while the reads were timed (0 on an idle machine)
        result.update(reads_wall_s=round(wall, 1), own_cpu_cores=round((own1 - own0) / wall, 2),
                      other_cpu_cores=round(max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, 2),
                      steal_cpu_cores=round((steal1 - steal0) / wall, 2))
        for name, values in rates.items():
            result[f"read_{name}_clips_per_s"] = round(statistics.median(values))
            result[f"read_{name}_best_clips_per_s"] = round(max(values))
        for name in ("sequential_view", "shuffled", "shuffled_mapped", "shuffled_gather", "shuffled_mapped_gather"):
            result[f"ratio_{name}_public_over_private"] = round(
                statistics.median(rates[name]) / statistics.median(rates[f"{name}_private"]), 3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
