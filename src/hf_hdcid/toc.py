"""TOC: training-free codebook optimisation (paper section 4.1). The maths lives in
``hf_hdcid.modeling.toc_hdcid`` (shipped as remote code); this module adds the figure and the CLI
(:func:`run_toc`, which writes through :func:`hf_hdcid.hub.add_toc`)."""

from __future__ import annotations

from pathlib import Path

import torch

from .modeling.toc_hdcid import (
    cosine_similarity_matrix,
    inter_code_similarity,
    inter_code_variance,
    mean_off_diagonal,
    select_channels,
    toc_scores,
)

__all__ = ["inter_code_similarity", "inter_code_variance", "toc_scores", "select_channels",
           "cosine_similarity_summary", "plot_cosine_heatmaps", "run_toc"]


def cosine_similarity_summary(codebooks, channels) -> list[dict]:
    """Per layer the mean absolute off-diagonal code-to-code cosine similarity before/after selection."""
    rows = []
    for k, (book, idx) in enumerate(zip(codebooks, channels)):
        idx = torch.as_tensor(idx, device=book.device)
        rows.append({"layer": k + 1, "num_channels": int(idx.numel()),
                     "mean_abs_cosine_before": mean_off_diagonal(cosine_similarity_matrix(book)),
                     "mean_abs_cosine_after": mean_off_diagonal(cosine_similarity_matrix(book, idx))})
    return rows


def plot_cosine_heatmaps(codebooks, channels, path, dpi: int = 100) -> Path:
    """The paper's Fig. 2: code-to-code cosine similarity before (all channels) and after TOC, side by
    side, one row per layer; written as PNG."""
    from .figures import pyplot, save_figure

    plt = pyplot()

    n = len(codebooks)
    fig, axes = plt.subplots(n, 2, figsize=(9, 4.2 * n), squeeze=False)
    for k, (book, idx) in enumerate(zip(codebooks, channels)):
        idx = torch.as_tensor(idx, device=book.device)
        for col, (mat, title) in enumerate([(cosine_similarity_matrix(book), f"all {book.shape[1]} channels"),
                                            (cosine_similarity_matrix(book, idx), f"TOC {idx.numel()} channels")]):
            ax = axes[k][col]
            image = ax.imshow(mat.cpu().numpy(), vmin=-1, vmax=1, cmap="coolwarm")
            ax.set_title(f"layer {k + 1}: {title}\nmean |cos| off-diagonal {mean_off_diagonal(mat):.3f}", fontsize=9)
            ax.set_xlabel("code")
            ax.set_ylabel("code")
        fig.colorbar(image, ax=axes[k].tolist(), shrink=0.8)
    return save_figure(fig, path, dpi=dpi)


def run_toc(model_path: str, num_channels: int, out_dir: str | None = None, lam: float = 0.7,
            normalize: bool = False, top_bottom=(1, 0), overwrite: bool = False) -> dict:
    """``hf-hdcid toc``: :func:`hf_hdcid.hub.add_toc` (the model with its TOC channels, ``toc_cosine.png``,
    ``toc_summary.json`` and a refreshed card in ``out_dir``, default ``<model>-toc<num_channels>``,
    never the input folder; staged, locked, replaced only with ``overwrite``)."""
    from .hub.folder import add_toc

    top, bottom = top_bottom
    return add_toc(model_path, num_channels, lam=lam, normalize=normalize, top=top, bottom=bottom, out=out_dir,
                   overwrite=overwrite)
