"""Step time of ``scripts/pretrain.py`` by precision and compilation on this CPU: fp32 eager, bf16
eager, fp32 with ``--dynamo-backend inductor`` (torch.compile through Accelerate), each also with
``--club-update-order after_main`` (whose forward holds the encoder pass too), one process, 2
threads, on synthetic shards of random features at the preset's dimensions (written first, as
``bench_ddp.py`` does). The figure is the median of the logged ``samples_per_s`` over the steps after
the first ``--skip`` (compilation happens in the first steps; its time is reported apart as the
wall time of the run minus steps x median step time). One JSON line per run, then a summary line.

    python benchmarks/bench_precision_compile.py --preset tiny --batch-size 16 --steps 30 --skip 5
    python benchmarks/bench_precision_compile.py --preset dcid --batch-size 4 --steps 6 --skip 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_ddp import write_random_shards  # noqa: E402

VARIANTS = {"fp32 eager": ["--mixed-precision", "no"], "bf16 eager": ["--mixed-precision", "bf16"],
            "fp32 inductor": ["--mixed-precision", "no", "--dynamo-backend", "inductor"],
            # after_main: the encoder pass is inside forward, so the compiled graph covers it too
            "fp32 eager after_main": ["--mixed-precision", "no", "--club-update-order", "after_main"],
            "fp32 inductor after_main": ["--mixed-precision", "no", "--dynamo-backend", "inductor",
                                         "--club-update-order", "after_main"]}


def run(name: str, data: Path, out: Path, preset: str, batch: int, steps: int, skip: int) -> dict:
    command = [sys.executable, str(REPO / "scripts" / "pretrain.py"), "--data", str(data), "--output-dir", str(out),
               "--preset", preset, "--batch-size", str(batch), "--max-steps", str(steps), "--epochs", "1000",
               "--save-every-steps", "0", "--report-to", "none", "--no-plot", "--no-progress", "--toc-num-channels", "0",
               *VARIANTS[name]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in log[skip:]]
    first = [batch / r["samples_per_s"] for r in log[:skip]]
    median = statistics.median(rates)
    return {"run": name, "preset": preset, "batch": batch, "steps_timed": len(rates),
            "samples_per_s_median": round(median, 3), "median_step_s": round(batch / median, 4),
            "first_steps_s": [round(t, 2) for t in first], "final_loss": round(log[-1]["loss"], 4),
            "run_wall_s": round(wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=("tiny", "hdcid", "dcid"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--skip", type=int, default=5, help="first steps not timed (compilation)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_random_shards(tmp / "data", "hdcid" if args.preset == "dcid" else args.preset,
                                   max(4 * args.batch_size, 64))
        rows = {}
        for name in args.variants:
            rows[name] = run(name, data, tmp / name.replace(" ", "_"), args.preset, args.batch_size, args.steps,
                             args.skip)
            print(json.dumps(rows[name]), flush=True)
        base = rows.get("fp32 eager")
        if base:
            print(json.dumps({"summary": args.preset, **{f"{k} / fp32 eager step time": round(
                v["median_step_s"] / base["median_step_s"], 3) for k, v in rows.items() if k != "fp32 eager"}}))


if __name__ == "__main__":
    main()
