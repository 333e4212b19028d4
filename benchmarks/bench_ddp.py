"""Pretraining throughput of ``scripts/pretrain.py``: 1 process vs 2 processes (DDP-style, gloo) on CPU.

Every run is a real ``scripts/pretrain.py`` run on synthetic shards written first (random features of
the preset's dimensions, no text model needed): one process (``python scripts/pretrain.py``, 2 torch
threads) at batch B and at batch 2B, and two processes (``accelerate launch --multi_gpu
--num_processes 2``, 1 thread each, batch B per process, so 2B per optimiser step). The figure is
the median over steps (the first ``--skip`` steps dropped) of the logged ``samples_per_s`` (global
samples per optimiser-step wall time), plus the peak RSS of the largest process of the run
(``RUSAGE_CHILDREN`` of a wrapper process per run). Prints one JSON line per run and a summary line.

    python benchmarks/bench_ddp.py --preset tiny --batch-size 16 --steps 40
    python benchmarks/bench_ddp.py --preset hdcid --batch-size 4 --steps 6 --skip 1
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write_random_shards(path: Path, preset: str, clips: int) -> Path:
    import numpy as np

    from hf_hdcid import HDCIDConfig
    from hf_hdcid.data.shards import write_shards

    config = getattr(HDCIDConfig, preset)()
    rng = np.random.default_rng(0)
    t, s = config.num_frames, config.video_spatial_size

    def records():
        for i in range(clips):
            yield {"clip_id": f"clip{i:06d}", "split": "pretrain",
                   "video": rng.random((t, s, s, config.video_feature_dim), dtype=np.float32).astype(np.float16),
                   "audio": rng.standard_normal((t, config.audio_feature_dim), dtype=np.float32),
                   "text": rng.standard_normal((t, config.text_feature_dim), dtype=np.float32).astype(np.float16)}

    return write_shards(records(), path, config)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(kind: str, data: Path, out: Path, preset: str, batch: int, steps: int, skip: int) -> dict:
    script = [str(REPO / "scripts" / "pretrain.py"), "--data", str(data), "--output-dir", str(out), "--preset", preset,
              "--batch-size", str(batch), "--max-steps", str(steps), "--epochs", "1000", "--save-every-steps", "0",
              "--report-to", "none", "--no-plot", "--no-progress", "--toc-num-channels", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if kind == "1proc":
        env["OMP_NUM_THREADS"] = "2"
        command = [sys.executable] + script
    else:
        env["OMP_NUM_THREADS"] = "1"
        command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(_port())] + script
    # a fresh wrapper process per run, so that RUSAGE_CHILDREN (the largest descendant) is this run's
    wrapper = ("import json, resource, subprocess, sys; rc = subprocess.run(json.loads(sys.argv[1])).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", wrapper, json.dumps(command)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    peak_kb = int(done.stdout.strip().splitlines()[-1])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in log[skip:]]
    return {"run": kind, "preset": preset, "batch_per_process": batch,
            "global_batch": batch * (2 if kind == "2proc" else 1), "steps_timed": len(rates),
            "samples_per_s_median": round(statistics.median(rates), 3),
            "peak_rss_mb_max_process": round(peak_kb / 1024, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=("tiny", "hdcid", "dcid"))
    p.add_argument("--batch-size", type=int, default=16, help="B: per process")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--skip", type=int, default=3, help="first steps not timed")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = max(4 * args.batch_size * 2, 64)
        data = write_random_shards(tmp / "data", "hdcid" if args.preset == "dcid" else args.preset, clips)
        rows = []
        for kind, batch in (("2proc", args.batch_size), ("1proc", args.batch_size), ("1proc", 2 * args.batch_size)):
            row = run(kind, data, tmp / f"{kind}_{batch}", args.preset, batch, args.steps, args.skip)
            print(json.dumps(row), flush=True)
            rows.append(row)
        two, one_same, one_global = rows
        print(json.dumps({"summary": args.preset,
                          "2proc_over_1proc_same_global_batch": round(two["samples_per_s_median"]
                                                                      / one_global["samples_per_s_median"], 3),
                          "2proc_over_1proc_same_per_process_batch": round(two["samples_per_s_median"]
                                                                           / one_same["samples_per_s_median"], 3)}))


if __name__ == "__main__":
    main()
