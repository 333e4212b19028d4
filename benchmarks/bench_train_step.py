"""Time one H-DCID pretraining step of hf-hdcid on the CPU (or whatever torch runs on by default).

One step, as in the ``HDCIDForPreTraining`` docstring::

    features = model.extract_features(batch, epoch)        # encoder pass + EMA codebook update
    5 x: club_opt.zero_grad(); model.club_loss(features).backward(); club_opt.step()
    out = model.compute_losses(batch, epoch, features=features)
    main_opt.zero_grad(); out.loss.backward(); main_opt.step()

Usage::

    python benchmarks/bench_train_step.py [--preset hdcid|dcid|tiny|original_hdcid] [--batch-size 8]
        [--steps 5] [--epoch 3] [--dtype float32|float64] [--threads 2]

``--epoch 3`` (default) has both layers of H-DCID in the loss (warm start at epoch 3); ``--epoch 0`` is
the warm-up, where only layer 1 is trained. Prints parameter counts, per-step times (with a split
into phases), the median seconds per step over the steps after one warm-up step, the RSS right after
building the model and the optimisers (Adam state is allocated lazily, at the first step) and the
peak RSS, then one JSON line with every number.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time

import torch

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.data.synthetic import random_feature_batch
from hf_hdcid.modeling import convolution_hdcid
from hf_hdcid.training.setup import adam

PRESETS = ("hdcid", "dcid", "tiny", "original_hdcid")
CLUB_STEPS = 5


def current_rss_mb() -> float:
    """Resident set size of this process now, in MB (Linux /proc; else the peak as a fallback)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size (ru_maxrss: KiB on Linux, bytes on macOS), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def count(params) -> int:
    return sum(p.numel() for p in params)


def parameter_counts(model: HDCIDForPreTraining) -> dict:
    enc = model.hdcid
    counts = {
        "encoder": count(enc.parameters()),
        "encoder.text_bilstm": count(enc.text_encoder.parameters()) if enc.text_encoder is not None else 0,
    }
    for k, layer in enumerate(enc.layers):
        counts[f"encoder.layer{k + 1}.general"] = count(layer.general.parameters())
        counts[f"encoder.layer{k + 1}.specific"] = count(layer.specific.parameters())
    counts.update({
        "decoders": count(model.decoders.parameters()),
        "cpc": count(model.cpc.parameters()),
        "club": count(model.club.parameters()),
        "total": count(model.parameters()),
        "codebook_buffers": sum(b.numel() for layer in enc.layers for b in layer.codebook.buffers()),
    })
    assert counts["encoder"] + counts["decoders"] + counts["cpc"] + counts["club"] == counts["total"]
    return counts


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=PRESETS, default="hdcid")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps including the first (warm-up) step")
    parser.add_argument("--epoch", type=int, default=3, help="3: both layers in the loss; 0: warm-up (layer 1)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--autocast", choices=("none", "bf16"), default="none",
                        help="bf16: forward passes under torch.autocast (codebooks stay fp32)")
    parser.add_argument("--convolution", choices=("auto", "native"), default="auto",
                        help="auto: the model's choice (one GEMM per video convolution on the CPU); "
                             "native: torch's conv kernels (oneDNN on the CPU), for comparison")
    parser.add_argument("--adam", choices=("fused", "loop"), default="fused",
                        help="fused: the pretraining loop's Adam (torch's fused kernel); loop: torch's default")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step is the warm-up)")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.convolution == "native":
        convolution_hdcid.use_gemm_convolution = lambda x: False
    dtype = getattr(torch, args.dtype)
    config = getattr(HDCIDConfig, args.preset)()
    model = HDCIDForPreTraining(config).to(dtype).train()
    main_opt = adam(model.main_parameters(), 1e-4, torch.device("cpu"), fused=args.adam == "fused")
    club_opt = adam(model.club_parameters(), 1e-4, torch.device("cpu"), fused=args.adam == "fused")
    rss_after_build = current_rss_mb()
    counts = parameter_counts(model)
    batch = {m: x.to(dtype) for m, x in
             random_feature_batch(config, args.batch_size, torch.Generator().manual_seed(args.seed)).items()}
    active = model.active_layers(args.epoch)

    print(f"hf-hdcid train step: preset={args.preset} num_layers={config.num_layers} "
          f"layers_in_loss={active} (epoch {args.epoch}, warm start {config.warm_start_epoch}) "
          f"batch={args.batch_size} T={config.num_frames} dtype={args.dtype} autocast={args.autocast} convolution={args.convolution} adam={args.adam} threads={torch.get_num_threads()} "
          f"club_steps={CLUB_STEPS}")
    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print("batch shapes: " + ", ".join(f"{m} {list(x.shape)}" for m, x in batch.items()))
    print("parameters:")
    for name, n in counts.items():
        print(f"  {name:<28} {n:>12,}")
    print(f"RSS after model + optimizer creation: {rss_after_build:.1f} MB")

    def autocast():
        if args.autocast == "bf16":
            return torch.autocast(device_type=batch["audio" if "audio" in batch else config.modalities[0]].device.type,
                                  dtype=torch.bfloat16)
        return contextlib.nullcontext()

    phases = ("extract_features", "club_steps", "compute_losses", "backward", "optimizer_step")
    step_times, phase_times, losses = [], {p: [] for p in phases}, []
    for step in range(args.steps):
        t0 = time.perf_counter()
        with autocast():
            features = model.extract_features(batch, epoch=args.epoch)
        t1 = time.perf_counter()
        for _ in range(CLUB_STEPS):
            club_opt.zero_grad(set_to_none=True)
            with autocast():
                club = model.club_loss(features)
            club.backward()
            club_opt.step()
        t2 = time.perf_counter()
        with autocast():
            out = model.compute_losses(batch, epoch=args.epoch, features=features)
        t3 = time.perf_counter()
        main_opt.zero_grad(set_to_none=True)
        out.loss.backward()
        t4 = time.perf_counter()
        main_opt.step()
        t5 = time.perf_counter()
        del features
        loss = out.loss.item()
        if loss != loss:  # NaN
            raise RuntimeError(f"step {step}: loss is NaN")
        losses.append(loss)
        step_times.append(t5 - t0)
        for p, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            phase_times[p].append(dt)
        print(f"step {step}{' (warm-up)' if step == 0 else ''}: {t5 - t0:.3f} s  loss {loss:.4f}  ["
              + "  ".join(f"{p} {phase_times[p][-1]:.3f}" for p in phases) + "]", flush=True)

    timed = step_times[1:]
    median = statistics.median(timed)
    phase_median = {p: statistics.median(v[1:]) for p, v in phase_times.items()}
    peak = peak_rss_mb()
    print(f"median over steps 1..{args.steps - 1}: {median:.3f} s/step "
          f"({args.batch_size / median:.2f} samples/s); min {min(timed):.3f}, max {max(timed):.3f}")
    print("median per phase: " + "  ".join(f"{p} {t:.3f} s" for p, t in phase_median.items()))
    print(f"peak RSS (ru_maxrss): {peak:.1f} MB")

    result = {
        "preset": args.preset, "batch_size": args.batch_size, "steps": args.steps, "epoch": args.epoch,
        "layers_in_loss": active, "dtype": args.dtype, "autocast": args.autocast, "convolution": args.convolution, "adam": args.adam, "threads": torch.get_num_threads(),
        "club_steps": CLUB_STEPS, "torch": torch.__version__, "params": counts,
        "step_seconds": [round(t, 4) for t in step_times],
        "median_seconds_per_step": round(median, 4),
        "phase_median_seconds": {p: round(t, 4) for p, t in phase_median.items()},
        "losses": [round(v, 5) for v in losses],
        "rss_after_build_mb": round(rss_after_build, 1), "peak_rss_mb": round(peak, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
