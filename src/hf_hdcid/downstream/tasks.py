"""The cross-modal generalisation tasks, directions and protocols (reference §5).

A probe task trains a probe on codes of one modality and tests it on codes of the other; retrieval
ranks one modality's clips by the other's codes:

=================  =========  ==============================  =========================================
task               kind       data                            original counterpart
=================  =========  ==============================  =========================================
``ave``            clip       AVE shards (``label``)          ``ave_va`` / ``ave_av`` (28 classes)
``avvp``           segment    AVVP shards (both label cols)   ``avvp_va`` / ``avvp_av`` (25 + background)
``ave_avvp``       segment    AVE->AVVP train / AVVP test     ``ave_avvp_*`` (12 + background)
``ucf_vggsound``   clip       UCF101 video / VGGSound audio   ``ucfv_vgga`` / ``vgga_ucfv`` (16 classes)
``synthetic_ave``  clip       synthetic shards                the AVE task on the synthetic benchmark
``synthetic_avvp`` segment    synthetic shards                the AVVP task on the synthetic benchmark
``retrieval``      retrieval  any shards, two modalities      none (issue 18: ranking, no probe)
``avs_s4``         segment.   AVSBench-S4 segmentation shards  CMG ``avs_s4/train_at.py`` / ``train_ta.py``
``synthetic_avs``  segment.   synthetic segmentation shards   AVS-S4 on the synthetic benchmark
=================  =========  ==============================  =========================================

Directions: ``v2a`` trains on video and tests on audio (the original's "va"), ``a2v`` the reverse.
Every task has its own directions (:func:`directions_for`) and defaults (:func:`default_directions`):
the probe tasks ``v2a`` / ``a2v`` (default both), ``retrieval`` any ordered pair of audio, video and
text (``a2v``: audio queries rank the video clips; default ``a2v v2a``).

Directions of a grid (:func:`plan_runs`, used by ``hf-hdcid evaluate`` and
:func:`hf_hdcid.downstream.grid.run_grid`): without given directions every task runs its defaults;
given directions are intersected with each task's own (in the given order), a task left with none is
an error naming the task and its directions, and so is a given direction that no task has.

How a task runs is chosen by its KIND (:data:`hf_hdcid.downstream.dispatch.RUNNERS`): "clip" and
"segment" train a probe (:func:`hf_hdcid.downstream.evaluate_downstream`), "retrieval" ranks the
gallery modality's clips (:func:`hf_hdcid.downstream.retrieval.evaluate_retrieval`), "segmentation" trains
a segmenter queried by the codes (:func:`hf_hdcid.downstream.segmentation.evaluate_segmentation`;
directions ``a2t`` / ``t2a`` / ``a2a``, default ``a2t t2a``). A new kind is one
:class:`TaskSpec` here and one runner there.

Protocols:

* ``paper`` reproduces the original scripts: the probe is tested, every epoch, on the SAME clips it
  was trained on but in the other modality (AVE: the train split; AVVP: the AVVP clips), segment
  scores are batch-averaged precision/recall over all columns including background, and the
  reported figure is the best epoch's test score (model selection on the test set). Comparable with
  the paper's tables, optimistic by construction.
* ``heldout`` is the honest one: disjoint train / validation / test clips (the shards' ``val`` /
  ``test`` splits, else a seeded 20 % carve-out), the epoch is selected on the validation clips of
  the TRAINING modality (no label of the test modality is ever seen), and the test score of that
  epoch is reported; segment scores are global (micro) precision / recall / F1 over event columns,
  background excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the probe tasks' directions: (training modality, test modality)
DIRECTIONS = {"v2a": ("video", "audio"), "a2v": ("audio", "video")}
#: every direction name of any task -> (first modality, second modality): training / test modality of
#: a probe, query / gallery modality of retrieval
DIRECTION_MODALITIES = {**DIRECTIONS, "a2t": ("audio", "text"), "t2a": ("text", "audio"),
                        "v2t": ("video", "text"), "t2v": ("text", "video")}
#: segmentation: a2t trains the segmenter with audio codes as the query and tests with text codes, t2a the
#: reverse, a2a is AVSBench's own reference (raw audio features as the query, no codes)
SEGMENTATION_DIRECTION_NAMES = ("a2t", "t2a", "a2a")
DIRECTION_MODALITIES["a2a"] = ("audio", "audio")
#: the original's spellings
DIRECTION_ALIASES = {"va": "v2a", "av": "a2v"}
PROTOCOLS = ("paper", "heldout")
#: the one protocol of retrieval: no probe is trained and nothing is selected
ZERO_SHOT = "zero-shot"
#: kinds whose runs train a probe (evaluate_downstream)
PROBE_KINDS = ("clip", "segment")


@dataclass(frozen=True)
class TaskSpec:
    """kind: "clip" (one class per clip, the probe max-pools over time) or "segment" (multi-label per
    one-second segment). two_datasets: training and test clips come from different shard folders
    (``data`` / ``test_data``). paper_split: the split the paper protocol trains and tests on (None:
    every clip). paper_metric: the figure the original selects and reports. epochs / batch_size / lr:
    the probe's defaults: the original's (Adam 4e-4, batch 80) for the real tasks; for the synthetic
    ones (a few hundred clips, ~5x fewer optimiser steps per epoch at batch 80) batch 16 and 1e-3.
    directions: the task's directions (names of :data:`DIRECTION_MODALITIES`); default_directions: the
    ones run when none is given (None: all of ``directions``). protocols: the protocols its records
    carry (a task with one protocol does not name it in its model-index entries). metrics: the metrics
    of its own table (None: the probe tasks' Table 1 layout of the main metric)."""

    name: str
    kind: str
    two_datasets: bool
    paper_split: str | None
    paper_metric: str
    epochs: int
    description: str
    batch_size: int = 80
    lr: float = 4e-4
    directions: tuple = ("v2a", "a2v")
    default_directions: tuple | None = None
    protocols: tuple = PROTOCOLS
    metrics: tuple | None = None


TASKS = {
    "ave": TaskSpec("ave", "clip", False, "train", "accuracy", 50, "AVE event classification (28 classes)"),
    "avvp": TaskSpec("avvp", "segment", False, None, "precision", 100,
                     "AVVP segment-level event localisation (25 classes + background)"),
    "ave_avvp": TaskSpec("ave_avvp", "segment", True, None, "f1", 100,
                         "AVE -> AVVP segment localisation over the 12 shared classes"),
    "ucf_vggsound": TaskSpec("ucf_vggsound", "clip", True, None, "accuracy", 100,
                             "UCF101 (video) <-> VGGSound (audio) classification (16 classes)"),
    "synthetic_ave": TaskSpec("synthetic_ave", "clip", False, "train", "accuracy", 40,
                              "synthetic benchmark: primary-event classification", batch_size=16, lr=1e-3),
    "synthetic_avvp": TaskSpec("synthetic_avvp", "segment", False, "train", "precision", 40,
                               "synthetic benchmark: per-segment event localisation (modality-specific labels)",
                               batch_size=16, lr=1e-3),
    # no probe: epochs / batch_size / lr are unused; main metric mAP
    "retrieval": TaskSpec("retrieval", "retrieval", False, None, "mAP", 0,
                          "cross-modal retrieval on pooled unified codes (same class = relevant)",
                          directions=("a2v", "v2a", "a2t", "t2a", "v2t", "t2v"), default_directions=("a2v", "v2a"),
                          protocols=(ZERO_SHOT,), metrics=("recall@1", "recall@5", "recall@10", "median_rank", "mAP")),
    # a segmenter (visual backbone + TPAVI + decoder) queried by the frozen encoder's codes: AVSBench's
    # 15 epochs, batch 4, Adam 1e-4 for avs_s4; the synthetic one's fast settings (tiny PVT-v2, 32 x 32),
    # 16 epochs: with 8 the segmenter had not yet learned to use the query (BENCHMARKS.md, issue 18)
    "avs_s4": TaskSpec("avs_s4", "segmentation", False, None, "mIoU", 15,
                       "AVSBench-S4 single-source audio-visual segmentation (mIoU, F-score)", batch_size=4, lr=1e-4,
                       directions=SEGMENTATION_DIRECTION_NAMES, default_directions=("a2t", "t2a"),
                       metrics=("mIoU", "F-score")),
    "synthetic_avs": TaskSpec("synthetic_avs", "segmentation", False, None, "mIoU", 16,
                              "synthetic benchmark: segment the sounding object (mIoU, F-score)", batch_size=4,
                              lr=3e-3, directions=SEGMENTATION_DIRECTION_NAMES, default_directions=("a2t", "t2a"),
                              metrics=("mIoU", "F-score")),
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]


def get_direction(name: str, task: str | None = None) -> tuple[str, str]:
    """(training modality, test modality) of a probe direction (``task``: of that task's directions);
    accepts the original's "va" / "av" too."""
    key = DIRECTION_ALIASES.get(name, name)
    allowed = DIRECTIONS if task is None else {d: DIRECTION_MODALITIES[d] for d in get_task(task).directions}
    if key not in allowed:
        raise ValueError(f"direction: expected one of {sorted(allowed)} (or 'va' / 'av'), got {name!r}")
    return allowed[key]


def directions_for(task: str) -> tuple:
    """The directions task ``task`` can run."""
    return get_task(task).directions


def default_directions(task: str) -> tuple:
    """The directions task ``task`` runs when none is given."""
    spec = get_task(task)
    return spec.default_directions or spec.directions


def plan_runs(tasks, directions=None) -> list[tuple[str, str]]:
    """The (task, direction) pairs of a grid, checked before any work (module docstring): each task's
    defaults without ``directions``; else the given directions (aliases "va" / "av" resolved) that the
    task has. ValueError (one line) for a task left with none or a direction that no task has."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("task: expected at least one task, got none")
    for t in tasks:
        get_task(t)
    if directions is None:
        return [(t, d) for t in tasks for d in default_directions(t)]
    given = list(dict.fromkeys(DIRECTION_ALIASES.get(d, d) for d in directions))
    if not given:
        raise ValueError("direction: expected at least one direction, got none")
    pairs = []
    for t in tasks:
        mine = [d for d in given if d in directions_for(t)]
        if not mine:
            raise ValueError(f"direction: task {t!r} has the directions {list(directions_for(t))}, got {given}")
        pairs += [(t, d) for d in mine]
    unused = [d for d in given if all(d not in directions_for(t) for t in tasks)]
    if unused:
        raise ValueError(f"direction: {unused} fit none of the tasks {tasks} "
                         f"(their directions: { {t: list(directions_for(t)) for t in tasks} })")
    return pairs


def main_metric(task: TaskSpec, protocol: str) -> str:
    """The figure a run reports and selects on: the original's for ``paper``; F1 (segment) or
    accuracy (clip) for ``heldout``; the task's ``paper_metric`` for a task that trains no probe."""
    if task.kind not in PROBE_KINDS:
        return task.paper_metric
    if protocol == "paper":
        return task.paper_metric
    return "f1" if task.kind == "segment" else "accuracy"


__all__ = ["TASKS", "DIRECTIONS", "DIRECTION_MODALITIES", "DIRECTION_ALIASES", "PROTOCOLS", "ZERO_SHOT",
           "PROBE_KINDS", "TaskSpec", "get_task", "get_direction", "directions_for", "default_directions",
           "plan_runs", "main_metric"]
