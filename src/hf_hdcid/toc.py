"""TOC: training-free codebook optimisation (paper section 4.1). The maths lives in
``hf_hdcid.modeling.toc_hdcid`` (shipped as remote code); this module adds the figure and the CLI."""

from __future__ import annotations

import json
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
    """Load a model, compute TOC, write the updated model, ``toc_cosine.png`` and ``toc_summary.json``
    to ``out_dir`` (default ``<model>-toc<num_channels>``, never the input folder).

    Checked before anything is computed: the folder's weights against its config
    (:func:`hf_hdcid.loading.check_model_folder`), ``num_channels`` against the model, and ``out_dir``
    (an existing non-empty folder is replaced only with ``overwrite`` and only if it is a model folder).
    The output is written under the folder's lock into a temporary folder and renamed into place."""
    from .folders import exclusive_folder, staged_folder
    from .loading import check_model_folder, load_model, looks_like_local_path
    from .modeling import HDCIDForPreTraining, HDCIDModel

    name = str(model_path)
    if Path(name).is_dir():
        config = check_model_folder(name)
    elif looks_like_local_path(name) or Path(name).exists():
        raise FileNotFoundError(f"{name}: no such model folder")
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(name)
        if getattr(config, "model_type", None) != "hdcid":
            raise ValueError(f"{name}: model_type: expected 'hdcid', got {getattr(config, 'model_type', None)!r}")
    if config.quantizer == "fsq":
        from .modeling.configuration_hdcid import FSQ_NO_TOC

        raise ValueError(f"{name}: TOC needs a codebook; quantizer='fsq' has none ({FSQ_NO_TOC})")
    if isinstance(num_channels, bool) or not isinstance(num_channels, int) or not 1 <= num_channels <= config.hidden_size:
        raise ValueError(f"num_channels: expected an int in [1, {config.hidden_size}] (the code width), "
                         f"got {num_channels!r}")
    out = Path(out_dir) if out_dir else Path(name.rstrip("/") + f"-toc{num_channels}")
    if Path(name).exists() and out.resolve() == Path(name).resolve():
        raise ValueError(f"out_dir: expected a folder other than the input model {name!r}")
    pretraining = any("PreTraining" in a for a in (config.architectures or []))
    with exclusive_folder(out, "hf-hdcid toc"), staged_folder(
            out, overwrite=overwrite, replaceable=lambda p: (p / "config.json").is_file(), what="model folder") as tmp:
        model = load_model(name, HDCIDForPreTraining if pretraining else HDCIDModel)
        channels = model.compute_toc(num_channels, lam=lam, normalize=normalize, top_bottom=top_bottom)
        base = model.hdcid if pretraining else model
        books = base.codebooks()
        summary = {"model": name, "settings": model.config.toc_settings, "channels": channels,
                   "layers": cosine_similarity_summary(books, channels)}
        model.save_pretrained(tmp)
        plot_cosine_heatmaps(books, channels, tmp / "toc_cosine.png")
        (tmp / "toc_summary.json").write_text(json.dumps(summary, indent=2))
    summary["out_dir"] = str(out)
    return summary
