"""Cross-modal generalisation benchmarks (paper Table 1 and its synthetic counterpart).

    from hf_hdcid.downstream import evaluate_downstream
    record = evaluate_downstream("outputs/demo/hdcid/model", "synthetic_ave", "v2a", "outputs/demo/synthetic_avt",
                                 protocol="heldout", toc=True, seeds=[0, 1, 2])

Tasks, directions and the two protocols: :mod:`hf_hdcid.downstream.tasks`. Metrics are ``evaluate``
modules shipped in :mod:`hf_hdcid.metrics`.
"""

from .codes import CodeCache, CodeSet, extract_codes
from .probes import ClipProbe, ExpLogLoss, SegmentProbe
from .report import eval_results, load_records, plot_results, results_table
from .runner import evaluate_downstream, train_probe
from .segmentation import SEGMENTATION_DIRECTIONS, SEGMENTATION_TASKS, evaluate_segmentation
from .tasks import DIRECTIONS, PROTOCOLS, TASKS, get_task

__all__ = ["evaluate_downstream", "train_probe", "CodeCache", "CodeSet", "extract_codes", "ClipProbe",
           "SegmentProbe", "ExpLogLoss", "results_table", "plot_results", "eval_results", "load_records",
           "TASKS", "DIRECTIONS", "PROTOCOLS", "get_task", "evaluate_segmentation", "SEGMENTATION_TASKS",
           "SEGMENTATION_DIRECTIONS"]
