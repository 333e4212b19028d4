"""Conversion speed (clips/s) of every original feature layout at the paper's dimensions.

Inputs are generated before any timing, in a temporary folder (default under /tmp, deleted at the
end), as the original stores them (reference §1.3, §1.4): one zip per clip holding a pickled float32
array, audio ``[10, 128]`` and video ``[10, 7, 7, 512]`` (about 1 MB per clip, zips stored without
compression), and for AVE h5 files of float64 features (``[N, 10, 7, 7, 512]``, ``[N, 10, 128]``,
labels ``[N, 10, 29]``). The same zip store serves every zip layout: ``vggsound`` (40K csv),
``vggsound81k`` (``<id>.mp4`` csv), ``avvp`` (per-event csv, two events per video, 25 categories),
``ucf_vggsound`` (the UCF101 video side); ``ave`` reads the h5 files with ``Annotations.txt``-style
checks off (row ids).

Timed: ``convert_features(layout, ...)`` end to end (listing and missing-file check, unpickling,
padding, validation, ``Dataset.from_generator``, ``save_to_disk``, manifest, atomic rename) into a
fresh folder, ``repeats`` times; the inputs were just written, so the page cache is warm. Prints one
JSON line per layout with the median of the repetitions. On a shared machine the figures are
approximate.

Usage: python benchmarks/bench_convert.py [--clips 200] [--repeats 3] [--layouts vggsound,ave,...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from hf_hdcid import HDCIDConfig
from hf_hdcid.data.convert import LAYOUTS, convert_features

AVVP_NAMES = [f"event_{i:02d}" for i in range(25)]


def write_zip(path: Path, array: np.ndarray) -> None:
    with zipfile.ZipFile(path, "w") as archive:  # ZIP_STORED
        archive.writestr(f"{path.stem}.pkl", pickle.dumps(array, protocol=pickle.HIGHEST_PROTOCOL))


def write_csv(path: Path, header: list[str], rows: list, delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_inputs(root: Path, n: int, seed: int = 0) -> dict[str, dict]:
    """The inputs of every layout for n clips; returns layout -> convert_features keyword arguments."""
    g = np.random.default_rng(seed)
    ids = [f"{i:011d}" for i in range(n)]  # 11 characters, as YouTube ids (AVVP takes filename[:11])
    (root / "audio").mkdir()
    (root / "video").mkdir()
    for vid in ids:
        write_zip(root / "audio" / f"{vid}.zip", g.standard_normal((10, 128), dtype=np.float32))
        write_zip(root / "video" / f"{vid}.zip", g.random((10, 7, 7, 512), dtype=np.float32))
    categories = root / "categories.txt"
    categories.write_text("".join(f"class_{i:03d}\n" for i in range(141)))
    avvp_categories = root / "AVVP_Categories.txt"
    avvp_categories.write_text("".join(f"{name}\n" for name in AVVP_NAMES))
    ucf_categories = root / "UCF101sameVGGSound.txt"
    ucf_categories.write_text("".join(f"ucf_{i:02d}\n" for i in range(16)))
    dirs = {"audio_dir": root / "audio", "video_dir": root / "video"}
    inputs = {
        "vggsound": {**dirs, "categories_path": categories,
                     "csv_path": write_csv(root / "vggsound-avel40k.csv", ["category", "video_id", "split"],
                                           [(f"class_{i % 141:03d}", vid, "train") for i, vid in enumerate(ids)])},
        "vggsound81k": {**dirs, "csv_path": write_csv(root / "vggsound81k.csv", ["id"], [(f"{v}.mp4",) for v in ids])},
        "avvp": {**dirs, "categories_path": avvp_categories,
                 "csv_path": write_csv(root / "AVVP_eval_audio.csv", ["filename", "onset", "offset", "event_labels"],
                                       [row for i, vid in enumerate(ids)
                                        for row in ((f"{vid}_0_10", 0, 6, AVVP_NAMES[i % 25]),
                                                    (f"{vid}_0_10", 4, 10, AVVP_NAMES[(i + 3) % 25]))],
                                       delimiter="\t")},
        "ucf_vggsound": {"feature_dir": root / "video", "categories_path": ucf_categories, "modality": "video",
                         "csv_path": write_csv(root / "ucf2vggsound.csv", ["video_id", "category"],
                                               [(vid, f"ucf_{i % 16:02d}") for i, vid in enumerate(ids)])},
        "ave": {"root": root / "ave"},
    }
    import h5py

    (root / "ave").mkdir()
    labels = np.zeros((n, 10, 29))
    labels[np.arange(n), :, np.arange(n) % 28] = 1
    for name, key, data in (("visual_feature.h5", "avadataset", g.random((n, 10, 7, 7, 512))),
                            ("audio_feature.h5", "avadataset", g.standard_normal((n, 10, 128))),
                            ("labels.h5", "avadataset", labels), ("train_order.h5", "order", np.arange(n))):
        with h5py.File(root / "ave" / name, "w") as file:
            file.create_dataset(key, data=data)
    return inputs


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--tmp", default=None, help="parent of the temporary folder (default: the system's)")
    args = parser.parse_args()
    import datasets

    datasets.disable_progress_bars()
    layouts = args.layouts.split(",")
    config = HDCIDConfig.hdcid(modalities=["audio", "video"])
    root = Path(tempfile.mkdtemp(prefix="bench_convert_", dir=args.tmp))
    try:
        inputs = make_inputs(root, args.clips)
        for layout in layouts:
            times = []
            for repeat in range(args.repeats):
                out = root / f"out_{layout}_{repeat}"
                start = time.perf_counter()
                convert_features(layout, out, config, progress=False, **inputs[layout])
                times.append(time.perf_counter() - start)
                size = folder_mb(out)
                shutil.rmtree(out)
            median = statistics.median(times)
            print(json.dumps({"layout": layout, "clips": args.clips, "repeats": args.repeats,
                              "median_s": round(median, 3), "clips_per_s": round(args.clips / median, 1),
                              "times_s": [round(t, 3) for t in times], "shards_mb": round(size, 1),
                              "cpu_count": os.cpu_count()}), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
