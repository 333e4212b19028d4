"""A grid of downstream runs (models x TOC x tasks x directions) with the aggregate table and chart:
what ``hf-hdcid evaluate`` with several models / tasks / directions and the demo run. Each run goes
through :func:`hf_hdcid.downstream.dispatch.run_task` (the runner of its task's kind); the (task,
direction) pairs follow :func:`hf_hdcid.downstream.tasks.plan_runs` (given directions intersected
with each task's own; none given: each task's defaults)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .codes import CodeCache
from .report import plot_results, results_table
from .dispatch import check_runs, run_task
from .report import format_score
from .runner import load_encoder

TOC_CHOICES = ("off", "on", "both")


def run_grid(models, tasks, data, *, test_data=None, directions=None, toc: str = "both",
             toc_num_channels: int | None = None, protocol: str = "heldout", seeds=(0,), epochs=None,
             batch_size=None, lr=None, layers="both", out_dir: str | os.PathLike = "outputs/downstream", model_names=None,
             progress: bool = True, backbone: str | None = None) -> dict:
    """Every model x TOC setting x task x direction; each model is loaded once and its codes are
    extracted once per clip set. ``toc_num_channels``: the TOC runs compute TOC with this number of
    channels per layer first (instead of reading the stored channels). ``directions``: None runs each
    task's default directions; given ones are intersected with each task's (:func:`plan_runs`: a
    task left with none, or a direction no task has, fails before any work). Writes one JSON per run,
    ``results.md`` and ``results.png`` to ``out_dir``; ``backbone``: of the segmentation tasks (:func:`run_task`); returns {"records", "table", "table_path", "figure_path"}."""
    if toc not in TOC_CHOICES:
        raise ValueError(f"toc: expected one of {TOC_CHOICES}, got {toc!r}")
    models = list(models)
    names = list(model_names) if model_names is not None else [None] * len(models)
    if len(names) != len(models):
        raise ValueError(f"model_names: expected {len(models)} names (one per model), got {len(names)}")
    pairs = check_runs(tasks, directions, test_data, backbone)
    toc_settings = {"off": [False], "on": [True], "both": [False, True]}[toc]
    out = Path(out_dir)
    cache, records = CodeCache(), []
    for model, name in zip(models, names):
        encoder = load_encoder(model)
        for use_toc in toc_settings:
            for task, direction in pairs:
                record = run_task(encoder, task, direction, data, test_data, protocol=protocol, toc=use_toc,
                                  toc_num_channels=toc_num_channels if use_toc else None, layers=layers, seeds=seeds,
                                  epochs=epochs, batch_size=batch_size, lr=lr, out_dir=out, cache=cache,
                                  model_name=name, backbone=backbone)
                if isinstance(model, (str, os.PathLike)):  # the folder / Hub id, as a single run records it
                    record["model"] = str(model)
                    saved = {k: v for k, v in record.items() if k != "path"}
                    Path(record["path"]).write_text(json.dumps(saved, indent=2) + "\n")
                records.append(record)
                if progress:
                    print(f"   {record['model_name']}{'+TOC' if use_toc else ''} {task} {direction}: "
                          f"{record['main_metric']} {format_score(record['main_metric'], record['score'])}", flush=True)
    table = results_table(records)
    (out / "results.md").write_text(table)
    figure = plot_results(records, out / "results.png")
    return {"records": records, "table": table, "table_path": str(out / "results.md"), "figure_path": str(figure)}


__all__ = ["run_grid", "TOC_CHOICES"]
