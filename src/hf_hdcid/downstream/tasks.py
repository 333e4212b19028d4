"""The cross-modal generalisation tasks, directions and protocols (reference §5).

A task trains a probe on codes of one modality and tests it on codes of the other:

=================  ========  ==============================  =========================================
task               kind      data                            original counterpart
=================  ========  ==============================  =========================================
``ave``            clip      AVE shards (``label``)          ``ave_va`` / ``ave_av`` (28 classes)
``avvp``           segment   AVVP shards (both label cols)   ``avvp_va`` / ``avvp_av`` (25 + background)
``ave_avvp``       segment   AVE->AVVP train / AVVP test     ``ave_avvp_*`` (12 + background)
``ucf_vggsound``   clip      UCF101 video / VGGSound audio   ``ucfv_vgga`` / ``vgga_ucfv`` (16 classes)
``synthetic_ave``  clip      synthetic shards                the AVE task on the synthetic benchmark
``synthetic_avvp`` segment   synthetic shards                the AVVP task on the synthetic benchmark
=================  ========  ==============================  =========================================

Directions: ``v2a`` trains on video and tests on audio (the original's "va"), ``a2v`` the reverse.

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

DIRECTIONS = {"v2a": ("video", "audio"), "a2v": ("audio", "video")}
PROTOCOLS = ("paper", "heldout")


@dataclass(frozen=True)
class TaskSpec:
    """kind: "clip" (one class per clip, the probe max-pools over time) or "segment" (multi-label per
    one-second segment). two_datasets: training and test clips come from different shard folders
    (``data`` / ``test_data``). paper_split: the split the paper protocol trains and tests on (None:
    every clip). paper_metric: the figure the original selects and reports. epochs / batch_size / lr:
    the probe's defaults: the original's (Adam 4e-4, batch 80) for the real tasks; for the synthetic
    ones (a few hundred clips, ~5x fewer optimiser steps per epoch at batch 80) batch 16 and 1e-3."""

    name: str
    kind: str
    two_datasets: bool
    paper_split: str | None
    paper_metric: str
    epochs: int
    description: str
    batch_size: int = 80
    lr: float = 4e-4


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
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]


def get_direction(name: str) -> tuple[str, str]:
    """(training modality, test modality); accepts the original's "va" / "av" too."""
    aliases = {"va": "v2a", "av": "a2v"}
    key = aliases.get(name, name)
    if key not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {sorted(DIRECTIONS)} (or 'va' / 'av'), got {name!r}")
    return DIRECTIONS[key]


def main_metric(task: TaskSpec, protocol: str) -> str:
    """The figure a run reports and selects on: the original's for ``paper``; F1 (segment) or
    accuracy (clip) for ``heldout``."""
    if protocol == "paper":
        return task.paper_metric
    return "f1" if task.kind == "segment" else "accuracy"


__all__ = ["TASKS", "DIRECTIONS", "PROTOCOLS", "TaskSpec", "get_task", "get_direction", "main_metric"]
