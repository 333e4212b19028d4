"""``make demo``: what the package can do today, on a tiny model, in seconds on a CPU.

Builds a tiny H-DCID, runs a few pretraining steps (one encoder pass + CLUB steps per batch) on
random audio-visual-text features that share a latent event per time step, saves it with
``save_pretrained``, reloads it through ``AutoModel`` and prints the discrete unified codes of each
modality.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from . import HDCIDConfig, HDCIDForPreTraining
from .training import pretraining_step


def synthetic_batch(config: HDCIDConfig, batch_size: int, generator: torch.Generator) -> dict:
    """Features of every modality driven by one shared latent event per (sample, time step)."""
    t, s = config.num_frames, config.video_spatial_size
    events = torch.randint(0, 4, (batch_size, t), generator=generator)
    onehot = torch.nn.functional.one_hot(events, 4).float()  # [B, T, 4]

    def view(dim):
        proj = torch.randn(4, dim, generator=generator)
        return onehot @ proj + 0.1 * torch.randn(batch_size, t, dim, generator=generator)

    video = view(s * s * config.video_feature_dim).view(batch_size, t, s, s, -1).relu()
    return {"audio": view(config.audio_feature_dim), "video": video, "text": view(config.text_feature_dim)}


def run_demo(seed: int = 0, batch_size: int = 4, output_dir: str | os.PathLike = "outputs/demo",
             steps: int = 30, club_steps: int = 2) -> dict:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = HDCIDConfig.tiny(warm_start_epoch=0)
    model = HDCIDForPreTraining(config).train()
    n_params = sum(p.numel() for p in model.hdcid.parameters())
    print(f"tiny H-DCID: {config.num_layers} layers, modalities {config.modalities}, "
          f"D={config.hidden_size}, codebook {config.codebook_size}, {n_params:,} encoder parameters")
    main_opt = torch.optim.Adam(model.main_parameters(), lr=4e-4)
    club_opt = torch.optim.Adam(model.club_parameters(), lr=1e-3)
    batch = synthetic_batch(config, batch_size, generator)
    for step in range(steps):
        out = pretraining_step(model, batch, 0, main_opt, club_opt, club_steps)
        if step % 10 and step != steps - 1:
            continue
        print(f"step {step}: loss {out.loss.item():.4f}  "
              + "  ".join(f"{k} {v.item():.3f}" for k, v in out.losses.items() if k.startswith("total/")))
    out_dir = Path(output_dir)
    model.save_pretrained(out_dir)
    encoder = AutoModel.from_pretrained(out_dir).eval()
    print(f"saved to {out_dir} and reloaded as {type(encoder).__name__}")
    codes = {}
    with torch.no_grad():
        for modality in config.modalities:
            enc = encoder.encode(modality, batch[modality][:1])
            codes[modality] = [idx[0].tolist() for idx in enc.indices]
            print(f"{modality:>5}: unified {list(enc.unified.shape)}  "
                  + "  ".join(f"layer{k + 1} codes {c}" for k, c in enumerate(codes[modality])))
    return codes
