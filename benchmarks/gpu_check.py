"""One command for a GPU machine: the GPU-marked tests, then the paper-configuration pretraining step
at batch 80 in bf16 and in TF32 (s/step, samples/s, peak memory, the fraction of the device's peak),
written to one JSON file.

    python benchmarks/gpu_check.py                          # on a CUDA machine -> gpu_check.json
    python benchmarks/gpu_check.py --device cpu --smoke     # the same code paths on a CPU, in seconds

1. ``pytest -m gpu tests/test_gpu.py`` (codebook update and sync on the device, a bf16 and an fp16 step
   through Accelerate, ``accelerate launch --multi_gpu`` of scripts/pretrain.py); ``--smoke`` runs their
   CPU variants without the launch.
2. For each precision, in a fresh process (clean peak-memory counters, its own Accelerator): the
   paper configuration (``HDCIDConfig.hdcid()``, both layers active, 5 CLUB steps) stepped by
   :class:`hf_hdcid.training.step.PretrainingStep` exactly as the loop does; ``--warmup`` untimed steps,
   the FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions,
   attention: a lower bound of the work), then the median of ``--steps`` timed steps (synchronised).
   The device's peak: the spec-sheet dense peak for known GPUs and the measured throughput of a large
   square matmul of the same precision; the fraction of both is reported. ``--smoke``: tiny preset,
   batch 4, fp32 instead of TF32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# dense (no sparsity) spec-sheet peaks in TFLOP/s: (bf16, tf32)
SPEC_PEAKS = {"H200": (989.4, 494.7), "H100 SXM": (989.4, 494.7), "H100 PCIe": (756.0, 378.0), "H100": (989.4, 494.7),
              "A100": (312.0, 156.0), "L40S": (362.0, 183.0), "L4": (121.0, 60.0), "A10G": (70.0, 35.0)}


def spec_peak(device_name: str, precision: str) -> float | None:
    for key, (bf16, tf32) in SPEC_PEAKS.items():
        if key in device_name:
            return (bf16 if precision == "bf16" else tf32) * 1e12
    return None


def matmul_peak(device, dtype, n: int, repeats: int = 5) -> float:
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times)


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def measure(precision: str, device: str, smoke: bool, batch_size: int, steps: int, warmup: int) -> dict:
    """One precision in this process (see the module docstring) -> its figures."""
    import torch
    from accelerate import Accelerator
    from torch.utils.flop_counter import FlopCounterMode

    from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
    from hf_hdcid.data.synthetic import random_feature_batch
    from hf_hdcid.training.step import CLUBObjective, PretrainingStep

    if device == "cuda":
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision="bf16" if precision == "bf16" else "no")
    torch.manual_seed(0)
    config = HDCIDConfig.tiny() if smoke else HDCIDConfig.hdcid()
    epoch = config.warm_start_epoch  # every layer in the loss
    model = HDCIDForPreTraining(config).train().to(accelerator.device)
    main_opt = torch.optim.Adam(model.main_parameters(), lr=1e-4)
    club_opt = torch.optim.Adam(model.club_parameters(), lr=1e-4)
    main_module, club_module, main_opt = accelerator.prepare(model, CLUBObjective(model), main_opt)
    step = PretrainingStep(model, main_opt, club_opt, club_steps=5, clip=0.5, accelerator=accelerator,
                           main_module=main_module, club_module=club_module)
    batch = {m: x.to(accelerator.device) for m, x in
             random_feature_batch(config, batch_size, torch.Generator().manual_seed(0)).items()}
    for _ in range(warmup):
        step(batch, epoch)
    with FlopCounterMode(display=False) as counter:
        step(batch, epoch)
    flops = counter.get_total_flops()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        _sync(accelerator.device)
        t = time.perf_counter()
        result = step(batch, epoch)
        _sync(accelerator.device)
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    measured = matmul_peak(accelerator.device, dtype, 1024 if smoke else 8192)
    spec = spec_peak(name, precision) if device == "cuda" else None
    achieved = flops / step_s
    return {"precision": precision, "device_name": name, "preset": "tiny" if smoke else "hdcid",
            "batch_size": batch_size, "steps_timed": steps, "median_step_s": round(step_s, 4),
            "samples_per_s": round(batch_size / step_s, 2), "loss_finite": bool(torch.isfinite(result.output.loss)),
            "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if device == "cuda" else None,
            "gflop_per_step": round(flops / 1e9, 2), "achieved_tflops": round(achieved / 1e12, 4),
            "matmul_peak_tflops": round(measured / 1e12, 4), "fraction_of_matmul_peak": round(achieved / measured, 4),
            "spec_peak_tflops": None if spec is None else round(spec / 1e12, 1),
            "fraction_of_spec_peak": None if spec is None else round(achieved / spec, 4)}


def run_tests(device: str, smoke: bool) -> dict:
    marker = "gpu and not launch" if smoke else "gpu"
    env = {**os.environ, "HDCID_TEST_DEVICE": device, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    command = [sys.executable, "-m", "pytest", "-q", "-m", marker, str(REPO / "tests" / "test_gpu.py"),
               "-p", "no:cacheprovider"]
    t = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    return {"command": " ".join(command[1:]), "returncode": result.returncode, "summary": summary,
            "seconds": round(time.perf_counter() - t, 1),
            "output_tail": None if result.returncode == 0 else result.stdout[-4000:] + result.stderr[-2000:]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    parser.add_argument("--smoke", action="store_true", help="tiny preset, batch 4, 2 steps: seconds on a CPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default 80 (smoke: 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5; smoke 2)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: one precision, JSON out
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    batch_size = args.batch_size or (4 if args.smoke else 80)
    steps = args.steps or (2 if args.smoke else 5)
    warmup = min(args.warmup, 1) if args.smoke else args.warmup
    if args.measure:
        print(json.dumps(measure(args.measure, device, args.smoke, batch_size, steps, warmup)))
        return 0
    report = {"device": device, "smoke": args.smoke, "torch": torch.__version__,
              "cuda": torch.version.cuda if device == "cuda" else None}
    if not args.skip_tests:
        report["tests"] = run_tests(device, args.smoke)
        print(f"tests: {report['tests']['summary']}", flush=True)
    report["steps"] = []
    for precision in ("bf16", "tf32" if device == "cuda" else "fp32"):
        command = [sys.executable, __file__, "--measure", precision, "--device", device, "--batch-size",
                   str(batch_size), "--steps", str(steps), "--warmup", str(warmup)] + (["--smoke"] if args.smoke else [])
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if result.returncode != 0:
            report["steps"].append({"precision": precision, "error": result.stderr[-3000:]})
            print(f"{precision}: failed\n{result.stderr[-3000:]}", file=sys.stderr)
            continue
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        report["steps"].append(figures)
        print(f"{precision}: {figures['median_step_s']} s/step, {figures['samples_per_s']} samples/s, "
              f"peak {figures['peak_memory_mb']} MB, {figures['fraction_of_matmul_peak']} of the matmul peak", flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    failed = report.get("tests", {}).get("returncode", 0) != 0 or any("error" in s for s in report["steps"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
