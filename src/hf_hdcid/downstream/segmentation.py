"""Cross-modal audio-visual segmentation (AVS-S4, paper Table 4): train the AVSBench segmenter with one
modality's unified codes as the TPAVI query, test it with the other's.

    from hf_hdcid.downstream.segmentation import evaluate_segmentation
    record = evaluate_segmentation("outputs/demo/hdcid/model", "synthetic_avs", "a2t", "outputs/demo/synthetic_avs")

Directions (:data:`SEGMENTATION_DIRECTIONS`): ``a2t`` trains with the audio's codes as the query and
tests with the text's (the class prompt's), ``t2a`` the reverse, ``a2a`` is the reference row: the raw
audio features as the query in training and test (AVSBench's own audio-queried model).

Protocols (both test once, on the ``test`` split, with the TEST modality, at the selected epoch):

* ``paper``: the CMG scripts' selection. ``train_at.py`` / ``train_ta.py``
  (``CMG:code/AVSBench_dowmstream/avs_scripts/avs_s4``) score the ``val`` split after every epoch
  with the query of the OTHER modality (A2T: text codes, ``train_at.py`` l. 246-289; T2A: audio) and
  keep the epoch of the best val mIoU; ``test_at.py`` / ``test_ta.py`` then score ``split = 'test'``
  (l. 147) in batches of 4 clips (``test.sh --test_batch_size 4``, as AVSBench's ``test.sh``): mIoU and
  F-score are computed per batch of 4 clips (the F-score's best threshold per batch) and averaged over
  batches. The selection therefore sees labelled clips in the test modality (the val split, not the
  test split itself). For ``a2a`` it is AVSBench's own ``train.py`` (l. 208-245: best val mIoU, audio).
* ``heldout``: the epoch is selected on the ``val`` split with the TRAINING modality (no label is
  ever seen through the test modality's query); test scores per clip (``test.py``'s default batch of
  one clip). For ``a2a`` the two protocols differ only in that grouping.

Metrics: ``hf_hdcid.metrics.hdcid_mask_miou`` / ``hdcid_mask_fscore`` (AVSBench's per-frame rules),
streamed per batch and averaged per clip, over the annotated frames (``mask_valid``). Training:
Adam (AVSBench: lr 1e-4, batch 4, 15 epochs, no weight decay) on
:func:`~hf_hdcid.modeling.segmentation_hdcid.annotated_frame_bce` (AVSBench S4's loss: BCE of the
annotated first frame of a train clip; the "IoU loss" of its code is a BCE).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .runner import (_carve, _mean_std, _split_rows, check_modalities, check_toc_num_channels, layer_channels,
                     load_encoder, resolve_layers, run_filename, with_toc)

#: direction -> (training modality, test modality, query source)
SEGMENTATION_DIRECTIONS = {"a2t": ("audio", "text", "codes"), "t2a": ("text", "audio", "codes"),
                           "a2a": ("audio", "audio", "features")}
SEGMENTATION_PROTOCOLS = ("paper", "heldout")
SEGMENTATION_METRICS = ("mIoU", "F-score")
#: clips per test batch in AVSBench's and CMG's ``test.sh`` (``--test_batch_size 4``): the paper protocol scores
#: per batch of 4 test clips (the F-score's best threshold is chosen per batch), heldout per clip
PAPER_TEST_BATCH = 4
REQUIRED_COLUMNS = ("frames", "masks", "mask_valid", "split", "clip_id")


def tiny_pvt_v2_config(**overrides) -> dict:
    """A few-thousand-parameter PVT-v2 (one block per stage, widths 16/24/32/48) for the synthetic
    benchmark, tests and the demo."""
    values = dict(model_type="pvt_v2", depths=[1, 1, 1, 1], hidden_sizes=[16, 24, 32, 48],
                  num_attention_heads=[1, 1, 2, 2], mlp_ratios=[2, 2, 2, 2], sr_ratios=[4, 2, 1, 1],
                  out_features=["stage1", "stage2", "stage3", "stage4"])
    values.update(overrides)
    return values


@dataclass(frozen=True)
class SegmentationTaskSpec:
    """The segmenter of a segmentation task (its training defaults, epochs / batch_size / lr, are the
    task's :class:`hf_hdcid.downstream.tasks.TaskSpec`): backbone_config / decoder_channels /
    head_channels (avs_s4: PVT-v2-b5, 256 and 128/32 as AVSBench); default_backbone: where the
    backbone's weights come from when none is given (avs_s4: the ImageNet PVT-v2-b5 the paper uses,
    from the Hub; synthetic_avs: None, a random tiny PVT-v2)."""

    name: str
    decoder_channels: int
    backbone_config: dict = field(default_factory=dict)
    head_channels: tuple = (128, 32)
    default_backbone: str | None = None


#: the visual backbone of the paper (AVSBench's pvt_v2_b5.pth: ImageNet-1k PVT-v2-b5), in transformers' format
PAPER_BACKBONE = "OpenGVLab/pvt_v2_b5"
#: ``backbone=RANDOM_BACKBONE``: a randomly initialised backbone of the task's architecture
RANDOM_BACKBONE = "random"


def _paper_backbone() -> dict:
    from ..modeling.segmentation_hdcid import pvt_v2_b5_config

    return pvt_v2_b5_config()


SEGMENTATION_TASKS = {
    "avs_s4": SegmentationTaskSpec("avs_s4", decoder_channels=256, backbone_config=_paper_backbone(),
                                   default_backbone=PAPER_BACKBONE),
    "synthetic_avs": SegmentationTaskSpec("synthetic_avs", decoder_channels=32, backbone_config=tiny_pvt_v2_config(),
                                          head_channels=(16, 8)),
}


def get_segmentation_task(name: str) -> SegmentationTaskSpec:
    if name not in SEGMENTATION_TASKS:
        raise ValueError(f"task: expected one of {sorted(SEGMENTATION_TASKS)}, got {name!r}")
    return SEGMENTATION_TASKS[name]


def segmentation_rows(dataset, split_seed: int = 0, val_fraction: float = 0.2) -> dict:
    """Row indices {"train", "val", "test"} from the ``split`` column (AVSBench's own splits); without a
    ``val`` split a seeded ``val_fraction`` of the train clips (``carved`` says so)."""
    if hasattr(dataset, "with_format"):  # a datasets.Dataset: read the column without the torch format
        splits = _split_rows(dataset)
    else:  # any table whose ``dataset["split"]`` is the column
        column = np.asarray(list(dataset["split"]))
        splits = {name: np.flatnonzero(column == name) for name in dict.fromkeys(column.tolist())}
    missing = [s for s in ("train", "test") if s not in splits]
    if missing:
        raise ValueError(f"data: expected 'train' and 'test' splits (AVSBench's), missing {missing} "
                         f"(splits: { {k: len(v) for k, v in splits.items()} })")
    if "val" in splits:
        return {"train": splits["train"], "val": splits["val"], "test": splits["test"], "carved": False}
    train, val = _carve(splits["train"], val_fraction, split_seed)
    return {"train": train, "val": val, "test": splits["test"], "carved": True}


def _open_data(data):
    """(dataset, collate, description) of a shard folder / Hub id, or of a (dataset, collate) pair: any
    dataset with ``len``, ``column_names``, ``dataset[list of rows]`` (what ``collate`` takes) and
    ``dataset["split"]``, e.g. a ``datasets.Dataset``."""
    if isinstance(data, (str, os.PathLike)):
        from ..data.shards import load_shards

        dataset, collate = load_shards(data)
        return dataset, collate, str(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and callable(data[1]):
        return data[0], data[1], f"<{type(data[0]).__name__} of {len(data[0])} clips>"
    raise ValueError(f"data: expected a shard folder, a Hub dataset id or a (dataset, collate) pair, got "
                     f"{type(data).__name__}")


def _batches(rows: np.ndarray, batch_size: int):
    for start in range(0, len(rows), batch_size):
        yield rows[start:start + batch_size]


@torch.no_grad()
def score_segmentation(model, dataset, collate, rows: np.ndarray, modality: str, batch_size: int,
                       fscore: bool = True, clips_per_group: int = 1) -> dict:
    """mIoU (and F-score) of ``model`` queried by ``modality`` on the annotated frames of ``rows``,
    streamed per batch; averaged per group of ``clips_per_group`` consecutive clips, then over groups
    (1: per clip, AVSBench's ``test.py`` default batch of one clip; 4: the ``--test_batch_size 4`` of
    AVSBench's and CMG's ``test.sh``, whose F-score takes the best threshold per batch of 4 clips)."""
    from ..metrics.hdcid_mask_fscore.hdcid_mask_fscore import fscore_from_curves, frame_fscore_curves
    from ..metrics.hdcid_mask_miou.hdcid_mask_miou import frame_iou, per_clip_mean

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ious, curves, has_object, clips = [], [], [], []
    positions = np.arange(len(rows)) // clips_per_group  # the scoring group of every clip
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            batch = collate(dataset[chunk.tolist()])
            logits = model(batch["frames"].to(device), batch[modality].to(device), modality).logits
            valid = batch["mask_valid"].bool()  # [B, F]
            probs = torch.sigmoid(logits.float()).cpu()[valid].numpy()  # [K, H, W]
            masks = batch["masks"][valid].numpy()
            ious.append(frame_iou(probs, masks))
            clips.append(np.repeat(positions[start:start + batch_size], valid.sum(dim=1).numpy()))
            if fscore:
                c, h = frame_fscore_curves(probs, masks)
                curves.append(c)
                has_object.append(h)
    finally:
        model.train(was_training)
    clip_index = np.concatenate(clips)
    out = {"mIoU": per_clip_mean(np.concatenate(ious), clip_index)}
    if fscore:
        out["F-score"] = fscore_from_curves(np.concatenate(curves), np.concatenate(has_object), clip_index)
    return out


def train_segmenter(model, dataset, collate, train_rows, val_rows, *, train_modality: str, select_modality: str,
                    epochs: int, batch_size: int, lr: float, seed: int = 0) -> dict:
    """Adam on the annotated-frame BCE for ``epochs``; after every epoch the val mIoU with the
    ``select_modality`` query; the best epoch's trainable state is loaded back into ``model``.
    Returns best_epoch, selection_score, curve (val mIoU per epoch) and train_loss (mean per epoch)."""
    device = next(model.parameters()).device
    params = model.trainable_parameters()  # never the frozen encoder's
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    curve, losses, best = [], [], None
    model.train()
    for epoch in range(epochs):
        order = np.asarray(train_rows)[torch.randperm(len(train_rows), generator=generator).numpy()]
        total, steps = 0.0, 0
        for chunk in _batches(order, batch_size):
            batch = collate(dataset[chunk.tolist()])
            out = model(batch["frames"].to(device), batch[train_modality].to(device), train_modality,
                        masks=batch["masks"].to(device), mask_valid=batch["mask_valid"].to(device))
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            total, steps = total + float(out.loss.detach()), steps + 1
        losses.append(total / max(steps, 1))
        value = score_segmentation(model, dataset, collate, val_rows, select_modality, batch_size, fscore=False)["mIoU"]
        curve.append(value)
        if best is None or value > best["selection_score"]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
            best = {"best_epoch": epoch, "selection_score": value, "state": state}
    model.load_state_dict(best.pop("state"), strict=False)
    return {**best, "curve": curve, "train_loss": losses}


def evaluate_segmentation(model, task: str, direction: str, data, *, protocol: str = "heldout", toc: bool = False,
                          toc_num_channels: int | None = None, layers="both", seeds=(0,), epochs: int | None = None,
                          batch_size: int | None = None, lr: float | None = None, backbone: str | None = None,
                          backbone_config=None, out_dir: str | os.PathLike | None = None,
                          model_name: str | None = None, max_train_clips: int | None = None,
                          split_seed: int = 0, val_fraction: float = 0.2, device=None) -> dict:
    """Train and test the segmenter for one task / direction / protocol / TOC setting, for every seed;
    returns the run record (JSON in ``out_dir`` when given). Every setting is checked before training.

    model: the frozen H-DCID / DCID encoder (model, folder or Hub id). data: a segmentation shard
    folder / Hub id, or a ``(dataset, collate)`` pair (a ``datasets.Dataset`` with a ``split`` column and
    a collate giving ``frames`` / ``masks`` / ``mask_valid`` / the query modalities, as ``load_shards``).
    toc / toc_num_channels / layers: the query codes, as :func:`hf_hdcid.downstream.evaluate_downstream`
    (not for ``a2a``, whose query is the raw audio). backbone: a Hub id or folder the visual backbone's
    weights come from; None: the task's default (avs_s4: ``OpenGVLab/pvt_v2_b5``, the paper's ImageNet
    PVT-v2-b5, downloaded once; synthetic_avs: random); ``"random"``: a random backbone of
    ``backbone_config`` (default: the task's architecture). max_train_clips: train on the first N train
    clips only. Training defaults (epochs, batch size, lr): the task's (:data:`hf_hdcid.downstream.TASKS`)."""
    from ..modeling.segmentation_hdcid import HDCIDForAudioVisualSegmentation

    from .tasks import get_task

    started = time.perf_counter()
    spec = get_segmentation_task(task)
    defaults = get_task(task)  # epochs / batch_size / lr / description
    if direction not in SEGMENTATION_DIRECTIONS:
        raise ValueError(f"direction: expected one of {sorted(SEGMENTATION_DIRECTIONS)}, got {direction!r}")
    train_modality, test_modality, source = SEGMENTATION_DIRECTIONS[direction]
    if protocol not in SEGMENTATION_PROTOCOLS:
        raise ValueError(f"protocol: expected one of {SEGMENTATION_PROTOCOLS}, got {protocol!r}")
    seeds = [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]
    if not seeds:
        raise ValueError("seeds: expected at least one seed, got none")
    epochs = defaults.epochs if epochs is None else epochs
    batch_size = defaults.batch_size if batch_size is None else batch_size
    lr = defaults.lr if lr is None else float(lr)
    if backbone is None:
        backbone = spec.default_backbone
    elif backbone == RANDOM_BACKBONE:
        backbone = None
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if not (math.isfinite(lr) and 0 < lr <= 1):
        raise ValueError(f"lr: expected a finite learning rate in (0, 1], got {lr}")
    if max_train_clips is not None and (isinstance(max_train_clips, bool) or not isinstance(max_train_clips, int)
                                        or max_train_clips < 1):
        raise ValueError(f"max_train_clips: expected None or a positive int, got {max_train_clips!r}")
    if source == "features" and (toc or toc_num_channels is not None):
        raise ValueError(f"toc: direction {direction!r} queries with the raw audio features, which have no TOC "
                         "channels; use toc=False and toc_num_channels=None")
    if out_dir is not None:
        from ..folders import check_writable_folder

        check_writable_folder(out_dir, "out_dir")
    encoder = load_encoder(model)
    config = encoder.config
    check_toc_num_channels(config, toc_num_channels)
    check_modalities(config, direction, (train_modality, test_modality))
    chosen = resolve_layers(config, layers)
    encoder, toc = with_toc(encoder, toc_num_channels, toc)
    channels = layer_channels(encoder.config, chosen, toc) if source == "codes" else [None for _ in chosen]
    backbone_config = spec.backbone_config if backbone_config is None and backbone is None else backbone_config
    device = torch.device(device) if device is not None else (torch.device("cuda") if torch.cuda.is_available()
                                                                else encoder.device)

    dataset, collate, description = _open_data(data)
    missing = [c for c in (*REQUIRED_COLUMNS, train_modality, test_modality) if c not in dataset.column_names]
    if missing:
        raise ValueError(f"data: {description} has no {missing} columns, which segmentation needs (columns: "
                         f"{sorted(dataset.column_names)})")
    rows = segmentation_rows(dataset, split_seed=split_seed, val_fraction=val_fraction)
    train_rows = rows["train"][:max_train_clips] if max_train_clips is not None else rows["train"]
    select_modality = test_modality if protocol == "paper" else train_modality
    clips_per_group = PAPER_TEST_BATCH if protocol == "paper" else 1
    first = collate(dataset[[int(train_rows[0])]])
    num_frames, frame_size = int(first["frames"].shape[1]), list(first["frames"].shape[-2:])
    settings = dict(backbone_config=backbone_config, decoder_channels=spec.decoder_channels,
                    head_channels=list(spec.head_channels), query_source=source,
                    query_layers=[k + 1 for k in chosen] if source == "codes" else None,
                    query_toc=bool(toc) and source == "codes", num_frames=num_frames)
    # the first seed's segmenter is built here, before any training: its config validates every setting;
    # its random layers (and a random backbone) are drawn from the seed, the encoder is the given one
    torch.manual_seed(seeds[0])
    segmenter = HDCIDForAudioVisualSegmentation.from_encoder(encoder, backbone=backbone, **settings)
    resolved_backbone_config = segmenter.config.backbone_config

    per_seed, collected = [], {}
    for i, seed in enumerate(seeds):
        if i > 0:
            torch.manual_seed(seed)
            segmenter = HDCIDForAudioVisualSegmentation.from_encoder(encoder, backbone=backbone, **settings)
        segmenter = segmenter.to(device)
        best = train_segmenter(segmenter, dataset, collate, train_rows, rows["val"], train_modality=train_modality,
                               select_modality=select_modality, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        metrics = score_segmentation(segmenter, dataset, collate, rows["test"], test_modality, batch_size,
                                     clips_per_group=clips_per_group)
        per_seed.append({"seed": seed, "best_epoch": best["best_epoch"], "selection_score": best["selection_score"],
                         "test": metrics, "curve": best["curve"], "train_loss": best["train_loss"]})
        for name, value in metrics.items():
            collected.setdefault(name, []).append(value)
    name = model_name or ("H-DCID" if config.num_layers > 1 else "DCID")
    record = {
        "model": str(model) if isinstance(model, (str, os.PathLike)) else name,
        "model_name": name, "num_layers": config.num_layers, "layers": [k + 1 for k in chosen],
        "task": task, "task_description": defaults.description, "direction": direction,
        "train_modality": train_modality, "test_modality": test_modality, "query_source": source,
        "protocol": protocol,
        "selection": {"split": "val" if not rows["carved"] else f"{val_fraction:.0%} of train (no val split)",
                      "modality": select_modality, "metric": "mIoU"},
        "test_scoring": {"split": "test", "modality": test_modality, "clips_per_group": clips_per_group},
        "toc": {"enabled": bool(toc) and source == "codes",
                "channels_per_layer": [len(c) if c is not None else config.hidden_size for c in channels],
                "settings": (encoder.config.toc_settings if toc and source == "codes" else None)},
        "data": {"train": description, "test": description, "path": description, "clips": {"train": int(len(train_rows)), "val": int(len(rows["val"])),
                                                "test": int(len(rows["test"]))},
                 "num_frames": num_frames, "frame_size": frame_size},
        "backbone": {"hub_id": backbone, "model_type": resolved_backbone_config.get("model_type"),
                     "pretrained": backbone is not None},
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "Adam", "seeds": seeds,
        "split_seed": split_seed, "main_metric": "mIoU", "score": _mean_std(collected["mIoU"]),
        "metrics": {k: _mean_std(v) for k, v in collected.items()}, "per_seed": per_seed,
        "time_s": round(time.perf_counter() - started, 3),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / run_filename(record)
        path.write_text(json.dumps(record, indent=2) + "\n")
        record["path"] = str(path)
    return record


__all__ = ["evaluate_segmentation", "train_segmenter", "score_segmentation", "segmentation_rows",
           "SEGMENTATION_TASKS", "SEGMENTATION_DIRECTIONS", "SEGMENTATION_PROTOCOLS", "SegmentationTaskSpec",
           "get_segmentation_task", "tiny_pvt_v2_config"]
