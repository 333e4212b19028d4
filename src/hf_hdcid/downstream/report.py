"""Aggregate downstream runs: the paper's Table 1 layout for the probe tasks (rows: model x TOC,
columns: task / direction, average), one table per other task kind with all its metrics (retrieval:
rows model x TOC x direction, columns Recall@1/5/10, median rank, mAP), a grouped bar chart of every
run's main metric, and model-card eval results."""

from __future__ import annotations

import json
import os
from pathlib import Path

ARROWS = {"v2a": "V→A", "a2v": "A→V", "a2t": "A→T", "t2a": "T→A", "v2t": "V→T", "t2v": "T→V", "a2a": "A→A"}
#: metrics that are not fractions (printed as they are, not in %)
RANK_METRICS = ("median_rank",)
#: column / model-index labels of metrics
METRIC_LABELS = {"recall@1": "R@1", "recall@5": "R@5", "recall@10": "R@10", "median_rank": "median rank"}
#: readable names of the metric entries in model-index entries
METRIC_NAMES = {"recall@1": "Recall@1", "recall@5": "Recall@5", "recall@10": "Recall@10", "median_rank": "median rank"}
#: the heading sentence of a kind's own table (kinds whose TaskSpec lists ``metrics``)
KIND_TITLES = {"retrieval": "Cross-modal retrieval (zero-shot: no probe; each query clip ranks the other modality's "
                            "clips by cosine similarity of pooled unified codes, clips of its class are relevant); "
                            "recall and mAP in %, median rank of the first relevant clip.",
               "segmentation": "Cross-modal segmentation (the segmenter is trained with the first modality's codes as "
                               "its query and tested with the second's; A→A: raw audio features, AVSBench's "
                               "reference); mIoU and F-score (beta² = 0.3) in %, mean ± std over seeds."}


def format_value(metric: str, value: float, digits: int = 1) -> str:
    """A metric value as printed: fractions in % (``digits`` decimals), ranks as they are."""
    return f"{value:.{digits}f}" if metric in RANK_METRICS else f"{100 * value:.{digits}f}"


def format_score(metric: str, stats: dict, digits: int = 1) -> str:
    """``mean ± std`` of {mean, std, values}, with the unit: ``41.5 ± 1.6 %`` or ``3.0 ± 0.0`` (a rank)."""
    unit = "" if metric in RANK_METRICS else " %"
    return f"{format_value(metric, stats['mean'], digits)} ± {format_value(metric, stats['std'], digits)}{unit}"


def _own_table_kind(record: dict) -> str | None:
    """The kind whose own table holds the record (None: the probe tasks' Table 1 layout)."""
    from .tasks import TASKS

    spec = TASKS.get(record["task"])
    return spec.kind if spec is not None and spec.metrics is not None else None


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


def _table_cells(records: list[dict], mixed_protocols: bool = False):
    protocols = sorted({r["protocol"] for r in records})
    if len(protocols) > 1 and not mixed_protocols:
        raise ValueError(f"results: one table per protocol; these runs mix {protocols}")
    rows: dict[str, dict[str, dict]] = {}
    columns: list[str] = []
    for r in records:
        col = column_label(r) + (f" ({r['protocol']})" if len(protocols) > 1 else "")
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
    return ", ".join(protocols), rows, columns


def results_table(records: list[dict]) -> str:
    """Markdown: the probe tasks' table (:func:`probe_table`), then one table per other kind
    (:func:`kind_table`, e.g. retrieval), separated by a blank line."""
    parts = []
    probes = [r for r in records if _own_table_kind(r) is None]
    if probes:
        parts.append(probe_table(probes))
    for kind in dict.fromkeys(_own_table_kind(r) for r in records if _own_table_kind(r) is not None):
        parts.append(kind_table([r for r in records if _own_table_kind(r) == kind]))
    return "\n".join(parts)


def kind_table(records: list[dict]) -> str:
    """Markdown of runs of one kind whose task lists its ``metrics``: one row per model x TOC x task x
    direction, one column per metric (fractions in %, ranks as they are; mean ± std when the runs are
    per seed)."""
    from .tasks import TASKS

    kind = _own_table_kind(records[0])
    metrics = list(dict.fromkeys(m for r in records for m in TASKS[r["task"]].metrics))
    _, rows, columns = _table_cells(records, mixed_protocols=True)
    title = KIND_TITLES.get(kind, f"{kind} (mean ± std over seeds; fractions in %).")
    head = "| model | task | direction | " + " | ".join(METRIC_LABELS.get(m, m) for m in metrics) + " |"
    lines = [title, "", head, "|---|---|---|" + "---|" * len(metrics)]
    for label, cells in rows.items():
        for c in columns:
            r = cells.get(c)
            if r is None:
                continue
            parts = []
            for m in metrics:
                stats = r["metrics"].get(m)
                if stats is None:
                    parts.append("–")
                elif len(r["seeds"]) > 1 and not r.get("deterministic"):
                    parts.append(f"{format_value(m, stats['mean'])} ± {format_value(m, stats['std'])}")
                else:
                    parts.append(format_value(m, stats["mean"]))
            direction = ARROWS.get(r["direction"], r["direction"])
            if _names_protocol(r):  # a kind with several protocols: the row says which
                direction += f" ({r['protocol']})"
            lines.append(f"| {label} | {r['task']} | {direction} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def probe_table(records: list[dict]) -> str:
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
    """Grouped bars: one group per task / direction (and protocol, when the runs mix them), one bar per
    model x TOC row, error bars = std."""
    from ..figures import pyplot, save_figure

    plt = pyplot()

    protocol, rows, columns = _table_cells(records, mixed_protocols=True)
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


#: short names of the tasks in model-index entries and card tables
TASK_LABELS = {"ave": "AVE", "avvp": "AVVP", "ave_avvp": "AVE→AVVP", "ucf_vggsound": "UCF101↔VGGSound",
               "synthetic_ave": "synthetic AVE", "synthetic_avvp": "synthetic AVVP",
               "retrieval": "Cross-modal retrieval", "avs_s4": "AVS-S4 segmentation",
               "synthetic_avs": "synthetic AVS segmentation"}


def _names_protocol(record: dict) -> bool:
    """Whether a run's entry name / config names its protocol: not for a task with a single one."""
    from .tasks import TASKS

    spec = TASKS.get(record["task"])
    return spec is None or len(spec.protocols) > 1


def record_key(record: dict) -> tuple:
    """What one run measured: task, direction, TOC setting (off, or the channels per layer), protocol
    and layers read. Two records with the same key are the same measurement (the newer replaces the
    older in a model folder); records with different keys are different model-index entries."""
    toc = tuple(record["toc"]["channels_per_layer"]) if record["toc"]["enabled"] else None
    return record["task"], record["direction"], toc, record["protocol"], tuple(record["layers"])


def canonical_order(records: list[dict]) -> list[dict]:
    """Records sorted by task (as in TASKS), direction (V->A first), without / with TOC, protocol, layers."""
    from .tasks import TASKS

    tasks, directions = list(TASKS), list(ARROWS)

    def key(r):
        task, direction, toc, protocol, layers = record_key(r)
        return (tasks.index(task) if task in tasks else len(tasks), task,
                directions.index(direction) if direction in directions else 2, direction,
                toc is not None, toc or (), protocol, layers)

    return sorted(records, key=key)


def _toc_text(record: dict) -> str:
    if not record["toc"]["enabled"]:
        return "all channels"
    per_layer = record["toc"]["channels_per_layer"]
    return f"TOC {per_layer[0] if len(set(per_layer)) == 1 else '+'.join(map(str, per_layer))} channels"


def entry_name(record: dict) -> str:
    """The readable name of a run's model-index entry, e.g. ``AVE V→A, TOC 8 channels, paper protocol``
    or ``Cross-modal retrieval A→V, TOC 8 channels`` (a task with one protocol does not name it)."""
    task = TASK_LABELS.get(record["task"], record["task"])
    name = f"{task} {ARROWS.get(record['direction'], record['direction'])}, {_toc_text(record)}"
    if _names_protocol(record):
        name += f", {record['protocol']} protocol"
    if len(record["layers"]) != record["num_layers"]:
        name += ", layer " + "+".join(map(str, record["layers"]))
    return name


def entry_config(record: dict) -> str:
    """The ``dataset_config`` that makes a run its own model-index entry, e.g. ``ave-v2a-toc8-paper``:
    huggingface_hub groups EvalResults by (task type, dataset type, dataset config, split, revision);
    ``retrieval-a2v-toc8`` for a task with one protocol."""
    task, direction, toc, protocol, layers = record_key(record)
    toc_part = "all" if toc is None else "toc" + ("+".join(map(str, toc)) if len(set(toc)) > 1 else str(toc[0]))
    layer_part = "" if len(layers) == record["num_layers"] else "-layer" + "+".join(map(str, layers))
    protocol_part = f"-{protocol}" if _names_protocol(record) else ""
    return f"{task}-{direction}-{toc_part}{protocol_part}{layer_part}"


#: the model-index task type of a kind (default: feature-extraction, the frozen encoder's codes probed)
TASK_TYPES = {"segmentation": "image-segmentation"}


def _dataset_id(path: str) -> str:
    from ..data.hub_shards import shards_repo_id

    return shards_repo_id(path) or Path(path).name


def eval_results(records: list[dict], dataset_name: str | None = None) -> list[dict]:
    """``huggingface_hub.EvalResult`` dicts (for ``eval_results.json`` and the model card's
    ``model-index``): one entry per run (:func:`record_key`), named by :func:`entry_name` and kept
    apart by :func:`entry_config`, holding one metric per metric of the run (the main one first).
    ``dataset_type`` is the test data's Hub id or folder name; ``dataset_name`` defaults to it (or to a
    record's own ``dataset_name``)."""
    results = []
    for r in records:
        data = _dataset_id(r["data"]["test"])
        metrics = sorted(r["metrics"].items(), key=lambda item: item[0] != r["main_metric"])
        n = len(r["seeds"])
        # probe runs test on the test side; a retrieval run names the split it read ("all": every clip)
        split = r["data"]["split"] or "all" if "split" in r["data"] else "test"
        for metric, stats in metrics:
            label = METRIC_NAMES.get(metric, metric)
            # a deterministic run (retrieval) has one value whatever its seeds
            metric_name = label if r.get("deterministic") else f"{label} (mean of {n} seed{'s' if n != 1 else ''})"
            results.append({
                "task_type": TASK_TYPES.get(_own_table_kind(r), "feature-extraction"), "task_name": entry_name(r),
                "dataset_type": data, "dataset_name": dataset_name or r.get("dataset_name") or data,
                "dataset_config": entry_config(r), "dataset_split": split,
                "metric_type": metric, "metric_name": metric_name,
                "metric_value": round(stats["mean"], 4),
            })
    return results


__all__ = ["load_records", "results_table", "probe_table", "kind_table", "plot_results", "eval_results", "row_label",
           "column_label", "record_key", "canonical_order", "entry_name", "entry_config", "format_score", "format_value",
           "TASK_LABELS", "ARROWS", "RANK_METRICS"]
