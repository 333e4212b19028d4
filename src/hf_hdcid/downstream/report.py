"""Aggregate downstream runs: the paper's Table 1 layout (rows: model x TOC, columns: task / direction,
average), a grouped bar chart, and model-card eval results."""

from __future__ import annotations

import json
import os
from pathlib import Path

ARROWS = {"v2a": "V→A", "a2v": "A→V"}


def load_records(paths) -> list[dict]:
    """Run records from JSON files or folders of them (``*.json``)."""
    records = []
    for path in paths:
        path = Path(path)
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for file in files:
            try:
                record = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"{file}: not a downstream result JSON: {err}") from err
            if not isinstance(record, dict) or "task" not in record or "score" not in record:
                continue  # other JSON files in a results folder
            records.append(record)
    if not records:
        raise ValueError(f"results: no downstream result JSON found in {[str(p) for p in paths]}")
    return records


def row_label(record: dict) -> str:
    label = record["model_name"] + ("+TOC" if record["toc"]["enabled"] else "")
    if len(record["layers"]) != record["num_layers"]:
        label += " (layer " + ",".join(map(str, record["layers"])) + ")"
    return label


def column_label(record: dict) -> str:
    return f"{record['task']} {ARROWS.get(record['direction'], record['direction'])}"


def _table_cells(records: list[dict]):
    protocols = sorted({r["protocol"] for r in records})
    if len(protocols) > 1:
        raise ValueError(f"results: one table per protocol; these runs mix {protocols}")
    rows: dict[str, dict[str, dict]] = {}
    columns: list[str] = []
    for r in records:
        col = column_label(r)
        if col not in columns:
            columns.append(col)
        rows.setdefault(row_label(r), {})[col] = r
    # canonical order whatever the order of the runs: tasks as in TASKS, V->A before A->V; rows by
    # model then without / with TOC
    from .tasks import TASKS

    task_order, direction_order = list(TASKS), list(ARROWS)

    def column_key(col):
        r = next(r for row in rows.values() for c, r in row.items() if c == col)
        return (task_order.index(r["task"]) if r["task"] in task_order else len(task_order), r["task"],
                direction_order.index(r["direction"]) if r["direction"] in direction_order else 2)

    def row_key(label):
        r = next(iter(rows[label].values()))
        return (r["num_layers"], r["model_name"], r["toc"]["enabled"], label)

    columns.sort(key=column_key)
    rows = {label: rows[label] for label in sorted(rows, key=row_key)}
    return protocols[0], rows, columns


def results_table(records: list[dict]) -> str:
    """Markdown: one row per model x TOC setting, one column per task / direction, then the average of
    the row's means; cells are mean ± std over seeds of the run's main metric, in %."""
    protocol, rows, columns = _table_cells(records)
    metrics = {c: next(r for row in rows.values() for cc, r in row.items() if cc == c)["main_metric"] for c in columns}
    head = "| model | " + " | ".join(f"{c} ({metrics[c]})" for c in columns) + " | average |"
    lines = [f"Protocol: **{protocol}** (see `hf_hdcid.downstream.tasks`); mean ± std over seeds, %.", "",
             head, "|---|" + "---|" * (len(columns) + 1)]
    for label, cells in rows.items():
        values, parts = [], []
        for c in columns:
            r = cells.get(c)
            if r is None:
                parts.append("–")
                continue
            mean, std = 100 * r["score"]["mean"], 100 * r["score"]["std"]
            values.append(mean)
            parts.append(f"{mean:.1f} ± {std:.1f}" if len(r["seeds"]) > 1 else f"{mean:.1f}")
        average = f"{sum(values) / len(values):.1f}" if len(values) == len(columns) else "–"
        lines.append(f"| {label} | " + " | ".join(parts) + f" | {average} |")
    return "\n".join(lines) + "\n"


def plot_results(records: list[dict], path: str | os.PathLike, title: str | None = None) -> Path:
    """Grouped bars: one group per task / direction, one bar per model x TOC row, error bars = std."""
    from ..figures import pyplot, save_figure

    plt = pyplot()

    protocol, rows, columns = _table_cells(records)
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(columns) + 2), 4.0))
    for i, (label, cells) in enumerate(rows.items()):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(columns))]
        means = [100 * cells[c]["score"]["mean"] if c in cells else 0.0 for c in columns]
        stds = [100 * cells[c]["score"]["std"] if c in cells else 0.0 for c in columns]
        ax.bar(xs, means, width=width, yerr=stds, capsize=2, label=label)
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_title(title or f"cross-modal generalisation ({protocol} protocol)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def eval_results(records: list[dict], dataset_name: str | None = None) -> list[dict]:
    """One ``huggingface_hub.EvalResult`` dict per run and metric (for ``eval_results.json`` and the
    model card's ``model-index``)."""
    results = []
    for r in records:
        data = Path(r["data"]["test"]).name
        for metric, stats in r["metrics"].items():
            results.append({
                "task_type": "feature-extraction",
                "task_name": f"cross-modal generalisation: {r['task']} {ARROWS.get(r['direction'], r['direction'])}"
                             + (" + TOC" if r["toc"]["enabled"] else ""),
                "dataset_type": data, "dataset_name": dataset_name or data, "dataset_split": "test",
                "metric_type": metric, "metric_name": f"{metric} ({r['protocol']} protocol, "
                                                      f"mean of {len(r['seeds'])} seed(s))",
                "metric_value": round(stats["mean"], 4),
            })
    return results


__all__ = ["load_records", "results_table", "plot_results", "eval_results", "row_label", "column_label"]
