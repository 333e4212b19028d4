"""``make demo``: the whole pipeline that exists today, on the embedded default, in about a minute.

1. writes the synthetic audio-visual-text benchmark (tiny dimensions, prompts embedded by the
   offline MiniLM BERT) as feature shards;
2. pretrains a tiny H-DCID on the unlabelled split for a few epochs (one encoder pass + CLUB steps
   per batch, layer 2 warm-started);
3. computes TOC channels, saves the model with them and writes the Fig. 2 style heat maps;
4. reloads the encoder with ``AutoModel`` and reports, on the labelled test split, how often audio
   and video of the same second get the same code (chance is about 1 / codebook size), plus the
   codes of one clip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from . import HDCIDConfig, HDCIDForPreTraining
from .training import pretraining_step


def code_agreement(encoder, batch: dict, a: str = "audio", b: str = "video") -> list[float]:
    """Per layer the fraction of (clip, second) positions where modalities a and b get the same code."""
    with torch.no_grad():
        ia, ib = encoder.encode(a, batch[a]).indices, encoder.encode(b, batch[b]).indices
    return [float((x == y).float().mean()) for x, y in zip(ia, ib)]


def run_demo(seed: int = 0, batch_size: int = 16, output_dir: str | os.PathLike = "outputs/demo",
             epochs: int = 8, pretrain_clips: int = 512, test_clips: int = 128, club_steps: int = 2) -> dict:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from .data.shards import load_shards, make_dataloader
    from .data.synthetic import build_synthetic_shards
    from .data.text import TextFeatureExtractor, default_offline_text_model
    from .toc import cosine_similarity_summary, plot_cosine_heatmaps

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    out = Path(output_dir)
    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames,
                                     progress=False)
    config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size, warm_start_epoch=max(1, epochs // 2))
    data_dir = build_synthetic_shards(out / "data", config, {"pretrain": pretrain_clips, "test": test_clips},
                                      seed=seed, text_extractor=extractor, overwrite=True)
    print(f"1. synthetic benchmark: {pretrain_clips} pretraining + {test_clips} test clips -> {data_dir}")

    pretrain, collate = load_shards(data_dir, config, split="pretrain")
    model = HDCIDForPreTraining(config).train()
    main_opt = torch.optim.Adam(model.main_parameters(), lr=1e-3)
    club_opt = torch.optim.Adam(model.club_parameters(), lr=1e-3)
    print(f"2. pretraining a tiny H-DCID ({sum(p.numel() for p in model.hdcid.parameters()):,} encoder parameters, "
          f"D={config.hidden_size}, codebook {config.codebook_size}, layer 2 from epoch {config.warm_start_epoch})")
    loader = make_dataloader(pretrain, collate, batch_size=batch_size, shuffle=True, drop_last=True,
                             generator=torch.Generator().manual_seed(seed))
    for epoch in range(epochs):
        totals: dict[str, list] = {}
        for batch in loader:
            output = pretraining_step(model, collate.model_inputs(batch), epoch, main_opt, club_opt, club_steps)
            for key, value in output.losses.items():
                if key.startswith(("total/", "cpc/", "recon/")):
                    totals.setdefault(key, []).append(value.detach())
        means = {k: float(torch.stack(v).mean()) for k, v in totals.items()}
        layers = "  ".join(f"{k.split('/')[1]} {v:.3f}" for k, v in means.items() if k.startswith("total/"))
        recon = sum(v for k, v in means.items() if k.startswith("recon/") and k.endswith("layer1"))
        print(f"   epoch {epoch}: mean L_k {layers}  (layer1: cpc {means['cpc/layer1']:.3f}, recon {recon:.3f})")

    channels = model.compute_toc(num_channels=config.hidden_size // 2)
    model.save_pretrained(out / "model")
    books = model.hdcid.codebooks()
    plot_cosine_heatmaps(books, channels, out / "toc_cosine.png")
    toc = cosine_similarity_summary(books, channels)
    print(f"3. TOC: {len(channels[0])} of {config.hidden_size} channels per layer; mean |cos| between codes "
          + ", ".join(f"layer {r['layer']} {r['mean_abs_cosine_before']:.3f} -> {r['mean_abs_cosine_after']:.3f}"
                      for r in toc) + f"; figure {out / 'toc_cosine.png'}")

    encoder = AutoModel.from_pretrained(out / "model").eval()
    test, test_collate = load_shards(data_dir, config, split="test")
    test_batch = test_collate(test[:])
    untrained_model = type(encoder)(config).eval()
    print(f"4. reloaded as {type(encoder).__name__}; code agreement on {test_clips} test clips "
          f"(chance ~ {1 / config.codebook_size:.3f}):")
    agreement, untrained = {}, {}
    for other in [m for m in config.modalities if m != "audio"]:
        pair = f"audio-{other}"
        agreement[pair] = code_agreement(encoder, test_batch, "audio", other)
        untrained[pair] = code_agreement(untrained_model, test_batch, "audio", other)
        print(f"   {pair}: " + ", ".join(f"layer {k + 1} {a:.3f} (untrained {u:.3f})"
                                        for k, (a, u) in enumerate(zip(agreement[pair], untrained[pair]))))
    with torch.no_grad():
        clip = {m: test_batch[m][:1] for m in config.modalities}
        for m in config.modalities:
            enc = encoder.encode(m, clip[m], apply_toc=True)
            print(f"   {m:>5} codes " + "  ".join(f"layer{k + 1} {idx[0].tolist()}" for k, idx in enumerate(enc.indices))
                  + f"  unified(TOC) {list(enc.unified.shape)}")
    result = {"agreement": agreement, "untrained_agreement": untrained, "toc": toc, "channels": channels}
    (out / "demo_results.json").write_text(json.dumps(result, indent=2))
    return result
