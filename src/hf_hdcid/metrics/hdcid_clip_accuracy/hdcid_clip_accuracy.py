"""Clip-level accuracy of the cross-modal generalisation benchmarks (AVE, UCF101 <-> VGGSound).

The original code reports the batch-size-weighted mean of per-batch accuracies, which equals the
global accuracy computed here (correct clips / clips), in both protocols.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Clip accuracy: the fraction of clips whose predicted class equals the reference class."
_KWARGS = """
Args:
    predictions (list of int): predicted class per clip.
    references (list of int): reference class per clip.
Returns:
    accuracy (float): correct / clips, in [0, 1].
Example:
    >>> metric.compute(predictions=[0, 2, 1], references=[0, 1, 1])
    {'accuracy': 0.6666666666666666}
"""
_CITATION = """@article{huang2024unlocking,
  title = {Unlocking the Potential of Multimodal Unified Discrete Representation through Training-Free Codebook Optimization and Hierarchical Alignment},
  author = {Huang, Hai and Xia, Yan and Ji, Shengpeng and Wang, Shulei and Wang, Hanting and Zhu, Jieming and Dong, Zhenhua and Zhao, Zhou},
  journal = {arXiv preprint arXiv:2403.05168}, year = {2024}}"""


def clip_accuracy(predictions, references) -> dict:
    """accuracy = mean(predictions == references) over clips; ValueError for empty or unequal inputs."""
    pred, ref = np.asarray(predictions).reshape(-1), np.asarray(references).reshape(-1)
    if pred.shape != ref.shape:
        raise ValueError(f"predictions: expected {ref.size} values (one per reference), got {pred.size}")
    if pred.size == 0:
        raise ValueError("predictions: expected at least one clip, got none")
    return {"accuracy": float((pred == ref).mean())}


class HdcidClipAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        return clip_accuracy(predictions, references)
