"""Mask mIoU of audio-visual segmentation, as AVSBench scores AVS-S4 (Zhou et al., ECCV 2022).

Per frame, the prediction is the probability map thresholded at > 0.5 (AVSBench applies the sigmoid to
the logits first; give probabilities here). IoU = |P and G| / |P or G|, except for a frame whose ground
truth is empty: then the "intersection" counts the pixels both call background and the union is every
pixel (so an empty prediction of an empty frame scores 1). A 1e-7 is added to the union, as AVSBench.
mIoU = the mean over frames. AVSBench averages per test batch of one clip (five frames each), i.e. per
clip; with ``clip_index`` the mean is taken per clip first and then over clips (equal to the frame mean
when every clip has the same number of frames).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Mask mIoU of binary segmentation maps (AVSBench's per-frame rule, threshold > 0.5)."
_KWARGS = """
Args:
    predictions (list of [H, W] float): per frame, the predicted probability of the object at every pixel.
    references (list of [H, W] int): per frame, the 0/1 ground-truth mask.
    clip_index (list of int, optional): the clip of every frame: the mean is taken per clip, then over clips.
Returns:
    mIoU (float): mean IoU in [0, 1].
Example:
    >>> metric.compute(predictions=[[[0.9, 0.2], [0.1, 0.1]]], references=[[[1, 1], [0, 0]]])
    {'mIoU': 0.49999997500000126}
"""
_CITATION = """@inproceedings{zhou2022avs,
  title = {Audio-Visual Segmentation}, author = {Zhou, Jinxing and Wang, Jianyuan and Zhang, Jiayi and Sun, Weixuan
  and Zhang, Jing and Birchfield, Stan and Guo, Dan and Kong, Lingpeng and Wang, Meng and Zhong, Yiran},
  booktitle = {ECCV}, year = {2022}}"""

EPS = 1e-7


def _check(probabilities, masks):
    p, g = np.asarray(probabilities, dtype=np.float64), np.asarray(masks)
    if p.ndim != 3 or p.shape != g.shape:
        raise ValueError(f"predictions / references: expected two arrays [N, H, W] of one shape, got "
                         f"{list(p.shape)} and {list(g.shape)}")
    if p.shape[0] == 0:
        raise ValueError("predictions: expected at least one frame, got none")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError("predictions: expected probabilities in [0, 1] (apply the sigmoid to logits), got values "
                         f"in [{np.nanmin(p)}, {np.nanmax(p)}]" + (" with NaN/inf" if not np.isfinite(p).all() else ""))
    if not np.isin(g, (0, 1)).all():
        raise ValueError(f"references: expected 0/1 masks, got values {sorted(np.unique(g).tolist())[:5]}")
    return p, g.astype(np.int64)


def frame_iou(probabilities, masks) -> np.ndarray:
    """IoU of every frame [N] (module docstring) of ``probabilities`` [N, H, W] against 0/1 ``masks``."""
    p, g = _check(probabilities, masks)
    pred = (p > 0.5).astype(np.int64)  # [N, H, W]
    inter = (pred * g).sum(axis=(1, 2)).astype(np.float64)
    union = np.maximum(pred, g).sum(axis=(1, 2)).astype(np.float64)
    empty = g.sum(axis=(1, 2)) == 0
    inter[empty] = ((1 - g) * (1 - pred)).sum(axis=(1, 2))[empty]
    union[empty] = g.shape[1] * g.shape[2]
    return inter / (union + EPS)


def per_clip_mean(values, clip_index=None) -> float:
    """Mean of per-frame ``values``; with ``clip_index`` the mean of the per-clip means."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if clip_index is None:
        return float(values.mean())
    clips = np.asarray(clip_index).reshape(-1)
    if clips.shape != values.shape:
        raise ValueError(f"clip_index: expected one clip per frame ({values.size}), got {clips.size}")
    _, inverse = np.unique(clips, return_inverse=True)
    sums, counts = np.bincount(inverse, weights=values), np.bincount(inverse)
    return float((sums / counts).mean())


def mask_miou(probabilities, masks, clip_index=None) -> dict:
    """{"mIoU": mean frame IoU} (per clip first with ``clip_index``)."""
    return {"mIoU": per_clip_mean(frame_iou(probabilities, masks), clip_index)}


class HdcidMaskMiou(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                                        "references": datasets.Sequence(datasets.Sequence(datasets.Value("int8")))}))

    def _compute(self, predictions, references, clip_index=None):
        return mask_miou(np.asarray(predictions), np.asarray(references), clip_index)
