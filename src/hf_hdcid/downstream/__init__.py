"""Cross-modal generalisation benchmarks (paper Table 1 and its synthetic counterpart).

    from hf_hdcid.downstream import evaluate_downstream
    record = evaluate_downstream("outputs/demo/hdcid/model", "synthetic_ave", "v2a", "outputs/demo/synthetic_avt",
                                 protocol="heldout", toc=True, seeds=[0, 1, 2])

    from hf_hdcid.downstream import run_task
    record = run_task("outputs/demo/hdcid/model", "retrieval", "a2v", "outputs/demo/synthetic_avt", toc=True)

Tasks, directions and the two protocols: :mod:`hf_hdcid.downstream.tasks`; one run of any task kind:
:func:`run_task` (:mod:`hf_hdcid.downstream.dispatch`). Metrics are ``evaluate`` modules shipped in
:mod:`hf_hdcid.metrics`.
"""

from .codes import CodeCache, CodeSet, extract_codes
from .dispatch import RUNNERS, check_runs, run_task
from .probes import ClipProbe, ExpLogLoss, SegmentProbe
from .report import eval_results, load_records, plot_results, results_table
from .retrieval import RETRIEVAL_DIRECTIONS, evaluate_retrieval
from .runner import evaluate_downstream, train_probe
from .segmentation import evaluate_segmentation
from .tasks import DIRECTIONS, PROTOCOLS, TASKS, default_directions, directions_for, get_task, plan_runs

__all__ = ["evaluate_downstream", "train_probe", "CodeCache", "CodeSet", "extract_codes", "ClipProbe",
           "SegmentProbe", "ExpLogLoss", "results_table", "plot_results", "eval_results", "load_records",
           "TASKS", "DIRECTIONS", "PROTOCOLS", "get_task", "run_task", "check_runs", "RUNNERS", "plan_runs",
           "directions_for", "default_directions", "evaluate_retrieval", "RETRIEVAL_DIRECTIONS",
           "evaluate_segmentation"]
