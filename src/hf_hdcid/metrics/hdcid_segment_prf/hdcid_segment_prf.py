"""Segment-level precision / recall / F1 of the event-localisation benchmarks (AVVP, AVE -> AVVP).

Inputs are one row per (clip, segment): 0/1 predictions and references over the label columns, the
LAST column being "background". Two protocols:

* ``heldout`` (default): global (micro) counts over all segments and event columns, background
  excluded: P = TP / predicted positives, R = TP / positives, F1 = 2PR / (P + R) (0 where undefined).
* ``paper``: the original code's figure: per batch (``batch_index``) P_b = TP_b / predicted_b (0 if
  nothing predicted) and R_b = TP_b / positives_b over ALL columns including background; P and R are
  the means of P_b and R_b weighted by the number of segments in each batch; F1 = 2PR / (P + R).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Segment-level precision, recall and F1 of multi-label event localisation (background last column)."
_KWARGS = """
Args:
    predictions (list of list of int): 0/1 per label column for each (clip, segment) row.
    references (list of list of int): 0/1 per label column for each row (same width).
    batch_index (list of int, config "paper" only): the batch each row was scored in.
    protocol (str): "heldout" (default) or "paper"; must match the config name when one was given.
Returns:
    precision, recall, f1 (floats in [0, 1]).
Example:
    >>> metric = evaluate.load("hdcid_segment_prf")
    >>> metric.compute(predictions=[[1, 0, 0], [0, 1, 0]], references=[[1, 0, 0], [1, 0, 0]])
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
"""
_CITATION = """@article{huang2024unlocking,
  title = {Unlocking the Potential of Multimodal Unified Discrete Representation through Training-Free Codebook Optimization and Hierarchical Alignment},
  author = {Huang, Hai and Xia, Yan and Ji, Shengpeng and Wang, Shulei and Wang, Hanting and Zhu, Jieming and Dong, Zhenhua and Zhao, Zhou},
  journal = {arXiv preprint arXiv:2403.05168}, year = {2024}}"""
PROTOCOLS = ("heldout", "paper")


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def segment_prf(predictions, references, protocol: str = "heldout", batch_index=None) -> dict:
    """Precision, recall and F1 as the module docstring says; ValueError for bad shapes or protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    pred = np.asarray(predictions, dtype=np.int64)
    ref = np.asarray(references, dtype=np.int64)
    if pred.ndim != 2 or pred.shape != ref.shape:
        raise ValueError(f"predictions: expected rows x columns equal to references {ref.shape}, got {pred.shape}")
    if pred.shape[0] == 0 or pred.shape[1] < 2:
        raise ValueError(f"predictions: expected at least one row and two columns (events + background), "
                         f"got {pred.shape}")
    if protocol == "heldout":
        p_ev, r_ev = pred[:, :-1] > 0, ref[:, :-1] > 0
        tp = int((p_ev & r_ev).sum())
        precision = tp / int(p_ev.sum()) if p_ev.any() else 0.0
        recall = tp / int(r_ev.sum()) if r_ev.any() else 0.0
        return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}
    if batch_index is None:
        raise ValueError("batch_index: expected the batch of every row for protocol 'paper', got None")
    batches = np.asarray(batch_index, dtype=np.int64).reshape(-1)
    if batches.shape[0] != pred.shape[0]:
        raise ValueError(f"batch_index: expected {pred.shape[0]} values (one per row), got {batches.shape[0]}")
    p_all, r_all = pred > 0, ref > 0
    weights, precisions, recalls = [], [], []
    for b in np.unique(batches):
        rows = batches == b
        tp = int((p_all[rows] & r_all[rows]).sum())
        predicted, positives = int(p_all[rows].sum()), int(r_all[rows].sum())
        precisions.append(tp / predicted if predicted else 0.0)
        recalls.append(tp / positives if positives else 0.0)
        weights.append(int(rows.sum()))
    w = np.asarray(weights, dtype=np.float64) / sum(weights)
    precision, recall = float(np.dot(w, precisions)), float(np.dot(w, recalls))
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


class HdcidSegmentPRF(evaluate.Metric):
    def _info(self):
        features = {"predictions": datasets.Sequence(datasets.Value("int8")),
                    "references": datasets.Sequence(datasets.Value("int8"))}
        if self.config_name == "paper":
            features["batch_index"] = datasets.Value("int64")
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
                                   features=datasets.Features(features))

    def _compute(self, predictions, references, batch_index=None, protocol=None):
        protocol = protocol or ("paper" if self.config_name == "paper" else "heldout")
        if self.config_name == "paper" and protocol != "paper":
            raise ValueError(f"protocol: the metric was loaded with config 'paper', got {protocol!r}")
        return segment_prf(predictions, references, protocol=protocol, batch_index=batch_index)
