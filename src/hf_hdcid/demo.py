"""``make demo``: the whole pipeline on the embedded synthetic benchmark, DCID and H-DCID side by side.

1. writes the synthetic audio-visual-text benchmark (tiny dimensions, prompts embedded by the offline
   MiniLM BERT) as feature shards;
2. pretrains a tiny DCID (1 layer) and a tiny H-DCID (2 layers, layer 2 warm-started) with the
   Accelerate loop of ``scripts/pretrain.py`` (:func:`hf_hdcid.training.pretrain`): checkpoints, JSONL
   and TensorBoard logs, loss curves, TOC channels, a ``save_pretrained`` folder with its model card;
3. draws the TOC heat maps (paper Fig. 2) of each model;
4. reloads each encoder with ``AutoModel`` and measures on the labelled test split how often audio and
   video (and text) of the same second get the same code (chance is about 1 / codebook size), next to
   the same encoder untrained;
5. writes ``results.md`` (the table printed at the end) and ``demo_results.json``, and refreshes each
   model card with the results.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from . import HDCIDConfig

VARIANTS = (("dcid", 1), ("hdcid", 2))


def code_agreement(encoder, batch: dict, a: str = "audio", b: str = "video") -> list[float]:
    """Per layer the fraction of (clip, second) positions where modalities a and b get the same code."""
    with torch.no_grad():
        ia, ib = encoder.encode(a, batch[a]).indices, encoder.encode(b, batch[b]).indices
    return [float((x == y).float().mean()) for x, y in zip(ia, ib)]


def _final(info: dict, key: str) -> float:
    return float(info.get("final_metrics", {}).get(key, float("nan")))


def results_table(rows: list[dict]) -> str:
    """Markdown table of the demo's per-model results (one row per model and layer)."""
    lines = ["| model | layer | a-v code agreement (untrained) | a-t code agreement (untrained) | active codes | "
             "perplexity a / v / t | mean abs cos, all -> TOC channels | final loss | train time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for k in range(row["num_layers"]):
            tag = f"layer{k + 1}"
            agree = [f"{row['agreement'][p][k]:.3f} ({row['untrained_agreement'][p][k]:.3f})"
                     for p in ("audio-video", "audio-text")]
            ppl = " / ".join(f"{row['final'][f'perplexity/{m}/{tag}']:.1f}" for m in ("audio", "video", "text"))
            toc = row["toc"][k]
            lines.append(f"| {row['name']} | {k + 1} | {agree[0]} | {agree[1]} | "
                         f"{row['final'][f'active_codes/{tag}']:.0f} / {row['codebook_size']} | {ppl} | "
                         f"{toc['mean_abs_cosine_before']:.3f} -> {toc['mean_abs_cosine_after']:.3f} | "
                         f"{row['final']['loss']:.3f} | {row['train_time_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def plot_agreement(row: dict, path: Path, chance: float) -> Path:
    """Bar chart of the code agreement per modality pair and layer, trained vs untrained encoder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, trained, untrained = [], [], []
    for pair, values in row["agreement"].items():
        for k, value in enumerate(values):
            labels.append(f"{pair}\nlayer {k + 1}")
            trained.append(value)
            untrained.append(row["untrained_agreement"][pair][k])
    x = range(len(labels))
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 3.6))
    ax.bar([i - 0.2 for i in x], trained, width=0.4, label="pretrained")
    ax.bar([i + 0.2 for i in x], untrained, width=0.4, label="untrained")
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance (1 / codebook size)")
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("same code, same second")
    ax.set_title(f"{row['name']}: cross-modal code agreement on the synthetic test split", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def eval_results(row: dict, dataset: str) -> list[dict]:
    """The demo's measurements as model-card eval results (``hf_hdcid.hub`` format)."""
    results = []
    for pair in ("audio-video", "audio-text"):
        for k, value in enumerate(row["agreement"][pair]):
            results.append({"task_type": "feature-extraction", "task_name": f"cross-modal code agreement ({pair})",
                            "dataset_type": dataset, "dataset_name": "hf-hdcid synthetic AVT benchmark",
                            "dataset_split": "test", "metric_type": "code_agreement",
                            "metric_name": f"{pair} code agreement, layer {k + 1}", "metric_value": round(value, 4)})
    return results


def run_demo(seed: int = 0, batch_size: int = 16, output_dir: str | os.PathLike = "outputs/demo",
             epochs: int = 8, pretrain_clips: int = 512, test_clips: int = 128, club_steps: int = 2) -> dict:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from .data.shards import load_shards
    from .data.synthetic import build_synthetic_shards
    from .data.text import TextFeatureExtractor, default_offline_text_model
    from .hub import write_model_card
    from .toc import cosine_similarity_summary, plot_cosine_heatmaps
    from .training.loop import PretrainConfig, pretrain
    from .training.plots import read_log

    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    out = Path(output_dir)
    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames,
                                     progress=False)
    data_config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    data_dir = build_synthetic_shards(out / "synthetic_avt", data_config, {"pretrain": pretrain_clips, "test": test_clips},
                                      seed=seed, text_extractor=extractor, overwrite=True)
    print(f"1. synthetic benchmark: {pretrain_clips} pretraining + {test_clips} test clips -> {data_dir}")

    warm_start = max(1, epochs // 2)
    rows = []
    for name, num_layers in VARIANTS:
        run_dir = out / name
        cfg = PretrainConfig(data=str(data_dir), preset="tiny", epochs=epochs, batch_size=batch_size, lr=1e-3,
                             club_steps=club_steps, seed=seed, output_dir=str(run_dir), save_every_steps=0,
                             progress=False, model_config={"num_layers": num_layers, "warm_start_epoch": warm_start})
        label = "DCID (1 layer)" if num_layers == 1 else f"H-DCID (2 layers, layer 2 from epoch {warm_start})"
        print(f"2. pretraining a tiny {label}: {epochs} epochs of batch {batch_size} with scripts/pretrain.py's loop")
        model_dir = pretrain(cfg)
        log = read_log(run_dir / "train_log.jsonl")
        for epoch in range(epochs):
            records = [r for r in log if r["epoch"] == epoch]
            layers = "  ".join(f"layer{k + 1} {sum(r[f'total/layer{k + 1}'] for r in records) / len(records):.3f}"
                               for k in range(num_layers) if f"total/layer{k + 1}" in records[0])
            print(f"   epoch {epoch}: mean L_k {layers}  (cpc layer1 "
                  f"{sum(r['cpc/layer1'] for r in records) / len(records):.3f})")

        encoder = AutoModel.from_pretrained(model_dir).eval()
        config = encoder.config
        books = encoder.codebooks()
        plot_cosine_heatmaps(books, config.toc_channels, model_dir / "toc_cosine.png")
        toc = cosine_similarity_summary(books, config.toc_channels)
        print(f"3. TOC: {len(config.toc_channels[0])} of {config.hidden_size} channels per layer; mean |cos| between "
              "codes " + ", ".join(f"layer {r['layer']} {r['mean_abs_cosine_before']:.3f} -> "
                                   f"{r['mean_abs_cosine_after']:.3f}" for r in toc)
              + f"; figure {model_dir / 'toc_cosine.png'}")

        test, test_collate = load_shards(data_dir, config, split="test")
        test_batch = test_collate(test[:])
        torch.manual_seed(seed)
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
            for m in config.modalities:
                enc = encoder.encode(m, test_batch[m][:1], apply_toc=True)
                print(f"   {m:>5} codes " + "  ".join(f"layer{k + 1} {idx[0].tolist()}"
                                                     for k, idx in enumerate(enc.indices))
                      + f"  unified(TOC) {list(enc.unified.shape)}")
        info = json.loads((model_dir / "training_info.json").read_text())
        row = {"name": name.upper().replace("HDCID", "H-DCID"), "model_dir": str(model_dir), "num_layers": num_layers,
               "codebook_size": config.codebook_size, "agreement": agreement, "untrained_agreement": untrained,
               "toc": toc, "channels": config.toc_channels, "final": info["final_metrics"],
               "train_time_s": info["train_time_s"],
               "encoder_parameters": sum(p.numel() for p in encoder.parameters())}
        rows.append(row)
        results = eval_results(row, dataset="synthetic-avt")
        (model_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        plot_agreement(row, model_dir / "results.png", chance=1 / config.codebook_size)
        write_model_card(model_dir)  # now with the TOC figure, the results and their chart

    table = results_table(rows)
    (out / "results.md").write_text("# hf-hdcid demo: DCID vs H-DCID on the synthetic AVT benchmark\n\n"
                                    f"{pretrain_clips} pretraining clips, {epochs} epochs, batch {batch_size}; "
                                    f"code agreement on {test_clips} test clips (untrained encoder in brackets); "
                                    f"chance ~ {1 / rows[0]['codebook_size']:.3f}.\n\n" + table)
    result = {"models": rows, "elapsed_s": round(time.perf_counter() - started, 1)}
    (out / "demo_results.json").write_text(json.dumps(result, indent=2))
    print(f"5. results ({out / 'results.md'}; model cards in " + ", ".join(r["model_dir"] for r in rows) + "):\n")
    print(table)
    print(f"demo finished in {result['elapsed_s']:.0f} s")
    return result
