"""Mask F-score of audio-visual segmentation, as AVSBench scores AVS-S4 (Zhou et al., ECCV 2022).

For every frame whose ground truth is not empty, precision and recall of the probability map at 255
thresholds ``linspace(0, 1 - 1e-10, 255)`` computed in float32 (so the last threshold is exactly 1.0),
a pixel predicted when its probability is >= the threshold; P = TP / (|pred| + 1e-20), R = TP / (|G| +
1e-20); F_beta = (1 + beta^2) P R / (beta^2 P + R) with beta^2 = 0.3, NaN (P = R = 0) -> 0. The curves are
averaged over the frames and the best threshold's value is the F-score. Frames with an empty ground
truth are skipped (a group with none scores 0, as AVSBench's zero-initialised curve).

AVSBench computes this per test batch of one clip (five frames) and averages the per-clip maxima; with
``clip_index`` this module does the same (the max is taken per clip); without it all frames form one group.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Mask F-score (beta^2 = 0.3, best of 255 thresholds) of binary segmentation maps, AVSBench's rule."
_KWARGS = """
Args:
    predictions (list of [H, W] float): per frame, the predicted probability of the object at every pixel.
    references (list of [H, W] int): per frame, the 0/1 ground-truth mask.
    clip_index (list of int, optional): the clip of every frame: the best threshold is chosen per clip
        and the clips' F-scores are averaged (AVSBench); without it, one choice over all frames.
Returns:
    F-score (float) in [0, 1].
"""
_CITATION = """@inproceedings{zhou2022avs,
  title = {Audio-Visual Segmentation}, author = {Zhou, Jinxing and Wang, Jianyuan and Zhang, Jiayi and Sun, Weixuan
  and Zhang, Jing and Birchfield, Stan and Guo, Dan and Kong, Lingpeng and Wang, Meng and Zhong, Yiran},
  booktitle = {ECCV}, year = {2022}}"""

BETA2 = 0.3
NUM_THRESHOLDS = 255


def avsbench_thresholds(num: int = NUM_THRESHOLDS) -> np.ndarray:
    """``torch.linspace(0, 1 - 1e-10, num)`` in float32, value for value (1 - 1e-10 rounds to 1.0 in
    float32; torch steps up from 0 for the first half and down from the end for the rest, each value
    rounded once), without importing torch."""
    step = np.float64(np.float32(1.0) / np.float32(num - 1))
    half = num // 2
    values = [i * step if i < half else 1.0 - step * (num - 1 - i) for i in range(num)]
    return np.asarray(values, dtype=np.float64).astype(np.float32)


THRESHOLDS = avsbench_thresholds()  # [255] float32, THRESHOLDS[-1] == 1.0


def _check(probabilities, masks):
    p, g = np.asarray(probabilities, dtype=np.float32), np.asarray(masks)
    if p.ndim != 3 or p.shape != g.shape:
        raise ValueError(f"predictions / references: expected two arrays [N, H, W] of one shape, got "
                         f"{list(p.shape)} and {list(g.shape)}")
    if p.shape[0] == 0:
        raise ValueError("predictions: expected at least one frame, got none")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError("predictions: expected finite probabilities in [0, 1] (apply the sigmoid to logits)")
    if not np.isin(g, (0, 1)).all():
        raise ValueError(f"references: expected 0/1 masks, got values {sorted(np.unique(g).tolist())[:5]}")
    return p, g.astype(bool)


def frame_fscore_curves(probabilities, masks) -> tuple[np.ndarray, np.ndarray]:
    """(curves [N, 255] F_beta of every frame at every threshold, has_object [N]); rows of frames without
    an object are zero and must be skipped (``has_object`` False)."""
    p, g = _check(probabilities, masks)
    n = p.shape[0]
    flat_p, flat_g = p.reshape(n, -1), g.reshape(n, -1)
    positives = flat_g.sum(axis=1).astype(np.float64)  # [N]
    # histogram the probabilities against the thresholds: predicted at threshold i <=> p >= THRESHOLDS[i]
    bins = np.searchsorted(THRESHOLDS, flat_p, side="right")  # [N, P]: number of thresholds <= p
    curves = np.zeros((n, NUM_THRESHOLDS))
    for k in range(n):
        predicted_at = np.bincount(bins[k], minlength=NUM_THRESHOLDS + 1)[::-1].cumsum()[::-1]  # >= bin
        true_at = np.bincount(bins[k][flat_g[k]], minlength=NUM_THRESHOLDS + 1)[::-1].cumsum()[::-1]
        pred_count, tp = predicted_at[1:].astype(np.float64), true_at[1:].astype(np.float64)  # [255]
        precision, recall = tp / (pred_count + 1e-20), tp / (positives[k] + 1e-20)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall)
        curves[k] = np.nan_to_num(f, nan=0.0)
    has_object = positives > 0
    curves[~has_object] = 0.0
    return curves, has_object


def fscore_from_curves(curves, has_object, clip_index=None) -> float:
    """The F-score of per-frame ``curves`` [N, 255] (module docstring), per clip with ``clip_index``."""
    curves, has_object = np.asarray(curves, dtype=np.float64), np.asarray(has_object, dtype=bool).reshape(-1)
    if curves.ndim != 2 or curves.shape != (has_object.size, NUM_THRESHOLDS):
        raise ValueError(f"curves: expected [{has_object.size}, {NUM_THRESHOLDS}], got {list(curves.shape)}")
    groups = np.zeros(has_object.size, dtype=np.int64) if clip_index is None else np.asarray(clip_index).reshape(-1)
    if groups.shape != has_object.shape:
        raise ValueError(f"clip_index: expected one clip per frame ({has_object.size}), got {groups.size}")
    scores = []
    for clip in np.unique(groups):
        rows = (groups == clip) & has_object
        scores.append(float(curves[rows].mean(axis=0).max()) if rows.any() else 0.0)
    return float(np.mean(scores))


def mask_fscore(probabilities, masks, clip_index=None) -> dict:
    """{"F-score": ...} of ``probabilities`` [N, H, W] against 0/1 ``masks`` (module docstring)."""
    curves, has_object = frame_fscore_curves(probabilities, masks)
    return {"F-score": fscore_from_curves(curves, has_object, clip_index)}


class HdcidMaskFscore(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                                        "references": datasets.Sequence(datasets.Sequence(datasets.Value("int8")))}))

    def _compute(self, predictions, references, clip_index=None):
        return mask_fscore(np.asarray(predictions), np.asarray(references), clip_index)
