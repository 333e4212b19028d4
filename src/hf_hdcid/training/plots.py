"""The loss-curve figure of a pretraining run, drawn from its JSONL log (``train_log.jsonl``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

# panel title -> the log keys drawn in it, by family (parse_term_name: recon/audio/layer1 -> recon)
PANELS = (
    ("loss (eq. 14) and L_k per layer", ("loss", "total")),
    ("reconstruction (MSE)", ("recon",)),
    ("commitment", ("commit",)),
    ("CLUB MI term (and raw estimate)", ("mi", "mi_estimate")),
    ("CPC / CMCM", ("cpc", "cmcm")),
    ("codebook: active codes, perplexity", ("active_codes", "perplexity")),
    ("learning rate", ("lr", "club_lr")),
)


def read_log(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL log; ValueError naming the line for a broken one."""
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {number} is not JSON: {err}") from err
    return records


def plot_loss_curves(log_path: str | os.PathLike, out_path: str | os.PathLike, title: str | None = None) -> Path:
    """One panel per loss family (every per-modality / per-layer term a line) against the optimiser step,
    plus codebook health and learning rates; written as a PNG to ``out_path``."""
    from ..figures import pyplot, save_figure
    from ..modeling.modeling_hdcid import parse_term_name

    plt = pyplot()

    records = read_log(log_path)
    if not records:
        raise ValueError(f"{log_path}: the log has no records to plot")
    keys = sorted({k for r in records for k, v in r.items() if isinstance(v, (int, float))})
    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    flat = axes.reshape(-1)
    for ax, (panel, families) in zip(flat, PANELS):
        drawn = 0
        for key in keys:
            if parse_term_name(key).family not in families:
                continue
            points = [(r["step"], r[key]) for r in records if key in r and "step" in r]
            if not points:
                continue
            steps, values = zip(*points)
            ax.plot(steps, values, label=key, linewidth=1.2)
            drawn += 1
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("optimiser step")
        if drawn:
            ax.legend(fontsize=6, ncol=1 + drawn // 7)
        if families == ("lr", "club_lr"):
            ax.set_yscale("log")
    flat[-1].axis("off")
    last = records[-1]
    flat[-1].text(0.0, 0.95, "\n".join([f"steps: {last.get('step')}", f"epochs: {last.get('epoch', 0) + 1}",
                                       f"final loss: {last.get('loss', float('nan')):.4f}",
                                       f"samples/s (last step): {last.get('samples_per_s', float('nan')):.1f}"]),
                  va="top", fontsize=10, family="monospace")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_path)


__all__ = ["plot_loss_curves", "read_log", "PANELS"]
