"""Seconds per training step of the paper-size AVS-S4 segmenter (issue 18), extrapolated to an epoch.

The model: :class:`HDCIDForAudioVisualSegmentation` with PVT-v2-b5's architecture (random init: the
timing does not depend on the weights; nothing is downloaded), 224 x 224 frames, F = 5 frames per
clip, TPAVI at all four stages, 256 decoder channels, the paper-size H-DCID (or DCID) encoder as the
frozen query source (audio codes, A2T training), batch 4 clips = 20 images, Adam 1e-4, the
annotated-frame BCE with frame 0 annotated (AVSBench S4 train). One step = forward, loss, backward,
Adam step. One warm-up step, then ``--steps`` timed steps; the median is reported and multiplied by
the steps of one AVSBench-S4 training epoch (3452 train clips at batch 4 -> 863 steps).

Usage::

    python benchmarks/segmentation_speed.py [--encoder hdcid|dcid] [--backbone pvt|resnet] [--steps 2]
        [--batch-size 4] [--threads N] [--device cpu|cuda]

Prints parameter counts, per-step seconds and one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time

import torch

from hf_hdcid.modeling import HDCIDConfig, HDCIDForAudioVisualSegmentation, HDCIDModel
from hf_hdcid.modeling.segmentation_hdcid import pvt_v2_b5_config, resnet50_config

AVS_S4_TRAIN_CLIPS = 3452  # AVSBench paper (ECCV 2022): S4 = 4932 videos, 3452 / 740 / 740


def cpu_kind() -> str:
    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in info:
                info[key] = value.strip()
            if key == "flags" and "flags" not in info:
                info["flags"] = value.split()
    except OSError:
        return platform.processor()
    flags = info.get("flags", [])
    marks = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{info.get('model name')} family {info.get('cpu family')} model {info.get('model')} ({', '.join(marks)})"


def count(params) -> int:
    return sum(p.numel() for p in params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", choices=("hdcid", "dcid"), default="hdcid")
    parser.add_argument("--backbone", choices=("pvt", "resnet"), default="pvt")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    started = time.perf_counter()
    enc_config = HDCIDConfig.hdcid() if args.encoder == "hdcid" else HDCIDConfig.dcid()
    encoder = HDCIDModel(enc_config).eval()
    backbone_config = pvt_v2_b5_config() if args.backbone == "pvt" else resnet50_config()
    model = HDCIDForAudioVisualSegmentation.from_encoder(encoder, backbone_config=backbone_config,
                                                         tpavi_stages=[0, 1, 2, 3], decoder_channels=256)
    model = model.to(device).train()
    build_s = time.perf_counter() - started
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)
    params = {
        "total": count(model.parameters()), "trainable": count(model.trainable_parameters()),
        "encoder_frozen": count(model.encoder.parameters()), "backbone": count(model.backbone.parameters()),
        "stage_reductions": count(model.reductions.parameters()), "tpavi": count(model.tpavi.parameters()),
        "decoder_and_head": count(model.fusions.parameters()) + count(model.head.parameters()),
    }
    for name, value in params.items():
        print(f"params {name:>17}: {value / 1e6:8.2f} M")

    b, f, s, t = args.batch_size, model.config.num_frames, args.size, enc_config.num_frames
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(b, f, 3, s, s, generator=g).to(device)
    audio = torch.randn(b, t, enc_config.audio_feature_dim, generator=g).to(device)
    masks = (torch.rand(b, f, s, s, generator=g) > 0.5).float().to(device)
    valid = torch.zeros(b, f, dtype=torch.bool, device=device)
    valid[:, 0] = True  # AVSBench S4 train: the first frame annotated

    times = []
    for step in range(args.steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(frames, audio, "audio", masks=masks, mask_valid=valid)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        print(f"step {step}{' (warm-up)' if step == 0 else ''}: {times[-1]:.2f} s, loss {float(out.loss.detach()):.4f}")
    median = statistics.median(times[1:])
    steps_per_epoch = AVS_S4_TRAIN_CLIPS // b
    epoch_s = median * steps_per_epoch
    print(f"median {median:.2f} s/step -> {epoch_s:.0f} s ({epoch_s / 3600:.2f} h) per AVS-S4 epoch "
          f"({steps_per_epoch} steps of {b} clips)")
    record = {
        "benchmark": "segmentation_speed", "encoder": args.encoder, "backbone": args.backbone,
        "batch_size": b, "frames": f, "size": s, "tpavi_stages": [0, 1, 2, 3], "device": str(device),
        "threads": torch.get_num_threads(), "cpu": cpu_kind(), "torch": torch.__version__,
        "params": params, "build_s": round(build_s, 2), "step_s": [round(x, 3) for x in times],
        "median_step_s": round(median, 3), "steps_per_epoch": steps_per_epoch, "epoch_s": round(epoch_s, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "command": "python benchmarks/segmentation_speed.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "pid": os.getpid(),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
