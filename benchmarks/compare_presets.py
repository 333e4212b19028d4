"""Which config options train well? A small, repeatable comparison on a synthetic AVT world.

Every modality is a fixed random projection of one latent event per (sample, time step) plus
noise. A tiny H-DCID (``HDCIDConfig.tiny``, warm start 0) trains for ``--steps`` steps per seed;
then, on a held-out batch of 256 clips, layer-1 codes are scored by

* ``agree_av`` / ``agree_at``: fraction of positions where audio and video (text) get the same code
  (the point of a unified codebook: cross-modal code agreement);
* ``purity``: how well a code predicts the latent event (majority event per code), mean over
  modalities;
* ``codes``: distinct codes used by all modalities together.

Usage: ``python benchmarks/compare_presets.py [--steps 200] [--seeds 6] [--variants default original ...]``
Variants are config overrides on top of ``HDCIDConfig.tiny(warm_start_epoch=0)``.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.training import pretraining_step

NUM_EVENTS = 6
ORIGINAL = dict(video_spatial_pooling="sum", dead_code_reset="stale_ema", use_cmcm=False,
                detach_reconstruction_targets=False, update_upper_codebooks_before_warm_start=True,
                codebook_init_bound=1 / 400)
VARIANTS = {
    "default": {},
    "original": ORIGINAL,
    "original+cmcm": {**ORIGINAL, "use_cmcm": True},
    "default+detach": {"detach_reconstruction_targets": True},
    "default+sum": {"video_spatial_pooling": "sum"},
    "default+stale_ema": {"dead_code_reset": "stale_ema"},
    "default+init1/400": {"codebook_init_bound": 1 / 400},
    "default-cmcm": {"use_cmcm": False},
    "default+init_count1": {"codebook_init_count": 1.0},
}


def synthetic_world(config: HDCIDConfig, seed: int):
    """A sampler of (batch, events) with fixed per-modality projections of the latent events."""
    g = torch.Generator().manual_seed(seed)
    s = config.video_spatial_size
    dims = {"audio": config.audio_feature_dim, "video": s * s * config.video_feature_dim,
            "text": config.text_feature_dim}
    proj = {m: torch.randn(NUM_EVENTS, d, generator=g) for m, d in dims.items()}

    def sample(batch_size: int, generator: torch.Generator):
        events = torch.randint(0, NUM_EVENTS, (batch_size, config.num_frames), generator=generator)
        onehot = torch.nn.functional.one_hot(events, NUM_EVENTS).float()  # [B, T, E]
        batch = {m: onehot @ proj[m] + 0.3 * torch.randn(batch_size, config.num_frames, dims[m], generator=generator)
                 for m in config.modalities}
        batch["video"] = batch["video"].view(batch_size, config.num_frames, s, s, -1).relu()
        return batch, events

    return sample


def train_and_score(config: HDCIDConfig, seed: int, steps: int) -> dict:
    torch.manual_seed(seed)
    sample = synthetic_world(config, 100 + seed)
    g = torch.Generator().manual_seed(seed)
    model = HDCIDForPreTraining(config).train()
    main_opt = torch.optim.Adam(model.main_parameters(), lr=1e-3)
    club_opt = torch.optim.Adam(model.club_parameters(), lr=1e-3)
    for _ in range(steps):
        pretraining_step(model, sample(16, g)[0], 0, main_opt, club_opt, club_steps=2)
    model.eval()
    batch, events = sample(256, torch.Generator().manual_seed(999))
    with torch.no_grad():
        idx = {m: model.hdcid.encode(m, batch[m]).indices[0] for m in config.modalities}
    purity = []
    for m in config.modalities:
        majority = sum(torch.bincount(events[idx[m] == c], minlength=NUM_EVENTS).max().item() for c in idx[m].unique())
        purity.append(majority / events.numel())
    return {
        "agree_av": (idx["audio"] == idx["video"]).float().mean().item(),
        "agree_at": (idx["audio"] == idx["text"]).float().mean().item(),
        "purity": statistics.mean(purity),
        "codes": len(torch.cat([i.flatten() for i in idx.values()]).unique()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'variant':<20} agree_av  agree_at  purity  codes   (mean over {args.seeds} seeds, {args.steps} steps)")
    for name in args.variants:
        runs = [train_and_score(HDCIDConfig.tiny(warm_start_epoch=0, **VARIANTS[name]), seed, args.steps)
                for seed in range(args.seeds)]
        mean = {k: statistics.mean(r[k] for r in runs) for k in runs[0]}
        print(f"{name:<20} {mean['agree_av']:.3f}     {mean['agree_at']:.3f}     {mean['purity']:.3f}   "
              f"{mean['codes']:.1f}", flush=True)


if __name__ == "__main__":
    main()
