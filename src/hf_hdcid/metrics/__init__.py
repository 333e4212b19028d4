"""`evaluate` metric modules of the downstream benchmarks, one folder per metric.

Each folder holds a self-contained script (numpy only) that ``evaluate.load(folder)`` loads offline,
and whose metric class and scoring function can be imported directly::

    import evaluate
    from hf_hdcid.metrics import metric_path
    accuracy = evaluate.load(metric_path("hdcid_clip_accuracy"))
    from hf_hdcid.metrics.hdcid_segment_prf.hdcid_segment_prf import HdcidSegmentPRF, segment_prf
"""

from __future__ import annotations

from pathlib import Path

METRICS = ("hdcid_clip_accuracy", "hdcid_segment_prf", "hdcid_retrieval", "hdcid_mask_miou", "hdcid_mask_fscore")


def metric_path(name: str) -> str:
    """Folder of a shipped metric, for ``evaluate.load``."""
    if name not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {name!r}")
    return str(Path(__file__).resolve().parent / name)


__all__ = ["METRICS", "metric_path"]
