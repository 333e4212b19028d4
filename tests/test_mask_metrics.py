"""The AVS-S4 mask metrics (issue 18): mIoU and F-score (beta^2 = 0.3) against hand-computed masks and
against a torch re-statement of AVSBench's per-clip scoring (sigmoid logits, one clip per test batch)."""

import evaluate
import numpy as np
import pytest
import torch

from hf_hdcid.metrics import metric_path
from hf_hdcid.metrics.hdcid_mask_fscore.hdcid_mask_fscore import (THRESHOLDS, fscore_from_curves,
                                                                  frame_fscore_curves, mask_fscore)
from hf_hdcid.metrics.hdcid_mask_miou.hdcid_mask_miou import frame_iou, mask_miou


def test_frame_iou_by_hand_including_an_empty_ground_truth():
    probs = np.array([[[0.9, 0.6], [0.4, 0.1]],    # predicted {(0,0), (0,1)}; truth {(0,0), (1,0)}: 1 / 3
                      [[0.2, 0.2], [0.2, 0.7]],    # empty truth: background agreement 3 of 4 pixels
                      [[0.5, 0.5], [0.5, 0.5]]])   # > 0.5 strictly: nothing predicted; truth 1 pixel: 0
    masks = np.array([[[1, 0], [1, 0]], [[0, 0], [0, 0]], [[0, 1], [0, 0]]])
    iou = frame_iou(probs, masks)
    assert iou == pytest.approx([1 / (3 + 1e-7), 3 / (4 + 1e-7), 0.0], abs=1e-12)
    assert mask_miou(probs, masks)["mIoU"] == pytest.approx(iou.mean())
    # per clip first: clip 0 = frames 0, 1; clip 1 = frame 2
    assert mask_miou(probs, masks, clip_index=[0, 0, 1])["mIoU"] == pytest.approx(((iou[0] + iou[1]) / 2 + iou[2]) / 2)


def test_fscore_by_hand():
    # truth {(0,0), (1,0)}; predicted sets by threshold t: t <= 0.6 -> 3 pixels (P 2/3, R 1, F 0.7222),
    # 0.6 < t <= 0.7 -> {0.9, 0.7} (P 1/2, R 1/2, F 0.5), 0.7 < t <= 0.9 -> {0.9} (P 1, R 1/2, F 0.8125),
    # t > 0.9 -> nothing (F 0); t = 0 predicts all 4 pixels (P 1/2, R 1, F 0.5652)
    probs = np.array([[[0.9, 0.7], [0.6, 0.0]]], dtype=np.float32)
    masks = np.array([[[1, 0], [1, 0]]])
    curves, has = frame_fscore_curves(probs, masks)
    t = THRESHOLDS
    expected = np.select([t == 0, t <= np.float32(0.6), t <= np.float32(0.7), t <= np.float32(0.9)],
                         [1.3 * 0.5 / 1.15, 1.3 * (2 / 3) / 1.2, 0.5, 0.8125], 0.0)
    assert has.tolist() == [True]
    assert curves[0] == pytest.approx(expected, rel=1e-9)
    assert mask_fscore(probs, masks)["F-score"] == pytest.approx(0.8125)
    # a second clip with only an empty truth scores 0 (AVSBench's zero curve), and is averaged in
    probs2 = np.concatenate([probs, np.full((1, 2, 2), 0.3, dtype=np.float32)])
    masks2 = np.concatenate([masks, np.zeros((1, 2, 2), dtype=int)])
    assert mask_fscore(probs2, masks2, clip_index=[0, 1])["F-score"] == pytest.approx(0.8125 / 2)
    assert mask_fscore(probs2, masks2)["F-score"] == pytest.approx(0.8125)  # one group: the empty frame skipped
    assert THRESHOLDS[0] == 0.0 and THRESHOLDS[-1] == 1.0 and THRESHOLDS.dtype == np.float32


def _avsbench_clip_scores(logits: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    """AVSBench's S4 test scoring of one clip (its test batch), re-stated: sigmoid, IoU at > 0.5 with the
    empty-truth rule and a 1e-7 union epsilon; F over 255 float32 thresholds, frames with empty truth
    skipped, max of the mean curve."""
    probs = torch.sigmoid(logits)
    pred = (probs > 0.5).int()
    inter = (pred * masks).sum((1, 2)).float()
    union = torch.max(pred, masks).sum((1, 2)).float()
    empty = masks.sum((1, 2)) == 0
    inter[empty] = ((1 - masks) * (1 - pred)).sum((1, 2)).float()[empty]
    union[empty] = float(masks.shape[1] * masks.shape[2])
    miou = float((inter / (union + 1e-7)).sum() / len(masks))
    thresholds = torch.linspace(0, 1 - 1e-10, 255)
    total, count = torch.zeros(255), 0
    for p, g in zip(probs, masks.float()):
        if g.mean() == 0:
            continue
        prec, rec = torch.zeros(255), torch.zeros(255)
        for i, th in enumerate(thresholds):
            hit = (p >= th).float()
            tp = (hit * g).sum()
            prec[i], rec[i] = tp / (hit.sum() + 1e-20), tp / (g.sum() + 1e-20)
        f = 1.3 * prec * rec / (0.3 * prec + rec)
        total += torch.nan_to_num(f, nan=0.0)
        count += 1
    return miou, float((total / max(count, 1)).max())


def test_metrics_equal_avsbench_scoring_on_random_clips_and_through_evaluate():
    g = torch.Generator().manual_seed(0)
    clips, frames, size = 3, 5, 12
    logits = torch.randn(clips * frames, size, size, generator=g) * 3
    masks = (torch.rand(clips * frames, size, size, generator=g) < 0.3).int()
    masks[7] = 0  # one frame without the object
    ref = [_avsbench_clip_scores(logits[c * frames:(c + 1) * frames], masks[c * frames:(c + 1) * frames])
           for c in range(clips)]
    probs, clip_index = torch.sigmoid(logits).numpy(), np.repeat(np.arange(clips), frames)
    assert mask_miou(probs, masks.numpy(), clip_index)["mIoU"] == pytest.approx(np.mean([r[0] for r in ref]), rel=1e-6)
    assert mask_fscore(probs, masks.numpy(), clip_index)["F-score"] == pytest.approx(np.mean([r[1] for r in ref]),
                                                                                     rel=1e-5)
    curves, has = frame_fscore_curves(probs, masks.numpy())
    assert fscore_from_curves(curves, has, clip_index) == pytest.approx(mask_fscore(probs, masks.numpy(), clip_index)["F-score"])
    for name, fn, key in (("hdcid_mask_miou", mask_miou, "mIoU"), ("hdcid_mask_fscore", mask_fscore, "F-score")):
        module = evaluate.load(metric_path(name))
        got = module.compute(predictions=probs[:5], references=masks.numpy()[:5].astype(np.int8), clip_index=[0] * 5)
        assert got[key] == pytest.approx(fn(probs[:5], masks.numpy()[:5], [0] * 5)[key], rel=1e-6)


@pytest.mark.parametrize("fn", [mask_miou, mask_fscore])
def test_mask_metrics_refuse_bad_input(fn):
    ok = np.zeros((2, 3, 3))
    with pytest.raises(ValueError, match=r"expected two arrays \[N, H, W\] of one shape"):
        fn(ok, np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        fn(ok + 2.0, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="0/1 masks"):
        fn(ok, np.full((2, 3, 3), 2))
    with pytest.raises(ValueError, match="clip_index: expected one clip per frame"):
        fn(ok, np.zeros((2, 3, 3)), clip_index=[0, 0, 1])
