"""One downstream run: frozen encoder -> codes of the training modality -> probe -> scores on the
other modality, for one task, direction, protocol and TOC setting, over one or more seeds."""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .codes import CodeCache, CodeSet, extract_codes, layer_channels
from .probes import ClipProbe, ExpLogLoss, SegmentProbe
from .tasks import PROBE_KINDS, PROTOCOLS, TaskSpec, get_direction, get_task, main_metric

LAYER_CHOICES = ("1", "2", "both")


# ============================================================================================ inputs
def load_encoder(model):
    """An :class:`HDCIDModel` in eval mode: the given one, or loaded from a folder / Hub id (a
    pretraining checkpoint loads its encoder)."""
    from ..loading import load_model
    from ..modeling import HDCIDModel, HDCIDPreTrainedModel

    if isinstance(model, HDCIDPreTrainedModel):
        return model.base_model.eval()
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model: expected an HDCID model, a folder or a Hub id, got {type(model).__name__}")
    return load_model(model, HDCIDModel).eval()


def check_toc_num_channels(config, toc_num_channels) -> None:
    """ValueError unless ``toc_num_channels`` is None or an int in [1, hidden_size] for a model with a
    codebook (fsq has none to select channels of)."""
    if toc_num_channels is None:
        return
    if config.quantizer == "fsq":
        raise ValueError("toc_num_channels: expected None with quantizer='fsq' (no codebook to select channels "
                         f"of), got {toc_num_channels}")
    if (isinstance(toc_num_channels, bool) or not isinstance(toc_num_channels, int)
            or not 1 <= toc_num_channels <= config.hidden_size):
        raise ValueError(f"toc_num_channels: expected an int in [1, {config.hidden_size}], got {toc_num_channels!r}")


def check_modalities(config, direction: str, modalities) -> None:
    """ValueError unless the model encodes every modality ``direction`` needs."""
    for m in modalities:
        if m not in config.modalities:
            raise ValueError(f"model: direction {direction!r} needs {m!r}, which the model does not encode "
                             f"(modalities {list(config.modalities)})")


def with_toc(encoder, toc_num_channels: int | None, toc: bool):
    """(encoder, toc): with ``toc_num_channels``, a copy of the encoder whose TOC channels are computed
    with that many channels per layer (the caller's model is untouched) and ``toc=True``; else as given."""
    if toc_num_channels is None:
        return encoder, toc
    encoder = copy.deepcopy(encoder)
    encoder.compute_toc(num_channels=int(toc_num_channels))
    return encoder, True


def resolve_layers(config, layers) -> list[int]:
    """"1" / "2" / "both" (or an int / list of 1-based layers) -> 0-based layer indices."""
    if layers in (None, "both"):
        return list(range(config.num_layers))
    chosen = [layers] if isinstance(layers, (int, str)) else list(layers)
    try:
        chosen = sorted({int(k) for k in chosen})
    except (TypeError, ValueError):
        raise ValueError(f"layers: expected one of {LAYER_CHOICES} or layer numbers, got {layers!r}") from None
    if not chosen or chosen[0] < 1 or chosen[-1] > config.num_layers:
        raise ValueError(f"layers: expected layer numbers in 1..{config.num_layers} (the model has "
                         f"{config.num_layers}), got {layers!r}")
    return [k - 1 for k in chosen]


def _split_rows(dataset) -> dict[str, np.ndarray]:
    splits = np.asarray(dataset.with_format(None)["split"])
    return {name: np.flatnonzero(splits == name) for name in dict.fromkeys(splits.tolist())}


def _carve(rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, carved): a seeded ``fraction`` of ``rows`` (at least one clip) set aside."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows)
    n = max(1, int(round(len(rows) * fraction)))
    if n >= len(rows):
        raise ValueError(f"data: {len(rows)} clips are too few to set {fraction:.0%} aside for validation")
    return np.sort(order[n:]), np.sort(order[:n])


def resolve_rows(task: TaskSpec, protocol: str, train_ds, test_ds, split_seed: int = 0,
                 val_fraction: float = 0.2) -> dict:
    """Row indices {"train", "val", "test"} (val None for ``paper``) in the train / test datasets."""
    train_splits = _split_rows(train_ds)
    test_splits = _split_rows(test_ds) if test_ds is not train_ds else train_splits
    if protocol == "paper":
        if task.two_datasets:
            return {"train": np.arange(len(train_ds)), "val": None, "test": np.arange(len(test_ds))}
        if task.paper_split is None:
            rows = np.arange(len(train_ds))
        elif task.paper_split in train_splits:
            rows = train_splits[task.paper_split]
        else:
            raise ValueError(f"data: the paper protocol of {task.name} trains and tests on split "
                             f"{task.paper_split!r}, which the shards do not have (splits: {sorted(train_splits)})")
        return {"train": rows, "val": None, "test": rows}
    if task.two_datasets:
        train = train_splits.get("train", np.arange(len(train_ds)))
        if "val" in train_splits:
            val = train_splits["val"]
        else:
            train, val = _carve(train, val_fraction, split_seed)
        test = test_splits.get("test", np.arange(len(test_ds)))
        return {"train": train, "val": val, "test": test}
    if "train" in train_splits and "test" in train_splits:
        train, test = train_splits["train"], train_splits["test"]
        if "val" in train_splits:
            val = train_splits["val"]
        else:
            train, val = _carve(train, val_fraction, split_seed)
        return {"train": train, "val": val, "test": test}
    labelled = np.concatenate([r for name, r in train_splits.items() if name != "pretrain"] or [np.arange(0)])
    if len(labelled) < 5:
        raise ValueError(f"data: the heldout protocol needs train/test splits or at least 5 clips to split "
                         f"(splits: { {k: len(v) for k, v in train_splits.items()} })")
    rest, test = _carve(labelled, val_fraction, split_seed)
    train, val = _carve(rest, val_fraction / (1 - val_fraction), split_seed + 1)
    return {"train": train, "val": val, "test": test}


# ============================================================================================ scoring
@torch.no_grad()
def predict(probe, task: TaskSpec, codes: CodeSet, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions, references, batch index of every row): clip classes [N], or 0/1 segment rows
    [N * T, K] at sigmoid > 0.5, in batches of ``batch_size`` clips (the paper protocol averages per batch)."""
    probe.eval()
    preds, refs, batches = [], [], []
    for b, start in enumerate(range(0, len(codes), batch_size)):
        x = codes.codes[start:start + batch_size]
        y = codes.labels[start:start + batch_size]
        logits = probe(x)
        if task.kind == "clip":
            preds.append(logits.argmax(dim=-1).numpy())
            refs.append(y.numpy())
            batches.append(np.full(len(x), b))
        else:
            k = logits.shape[-1]
            preds.append((torch.sigmoid(logits) > 0.5).reshape(-1, k).to(torch.int8).numpy())
            refs.append(y.reshape(-1, k).to(torch.int8).numpy())
            batches.append(np.full(preds[-1].shape[0], b))
    probe.train()
    return np.concatenate(preds), np.concatenate(refs), np.concatenate(batches)


@functools.lru_cache(maxsize=None)
def _metric(name: str, config_name: str | None = None):
    """The shipped ``evaluate`` metric module ``name`` (loaded once per process)."""
    import evaluate

    from ..metrics import metric_path

    return evaluate.load(metric_path(name), config_name)


def score(task: TaskSpec, protocol: str, predictions, references, batch_index) -> dict:
    """The task's metrics through ``evaluate`` (the metric modules shipped in :mod:`hf_hdcid.metrics`):
    clip accuracy, or segment precision / recall / F1 (paper protocol: averaged per batch of
    ``batch_index``). Used for the epoch selection and for the reported test scores alike;
    ``evaluate`` is imported (~4 s) at the first score, not at import."""
    if task.kind == "clip":
        return _metric("hdcid_clip_accuracy").compute(predictions=predictions.tolist(), references=references.tolist())
    inputs = {"predictions": predictions.tolist(), "references": references.tolist()}
    if protocol == "paper":
        inputs["batch_index"] = batch_index.tolist()
    return _metric("hdcid_segment_prf", "paper" if protocol == "paper" else "default").compute(**inputs)


# ============================================================================================ probe training
def train_probe(task: TaskSpec, protocol: str, train: CodeSet, select: CodeSet, test: CodeSet, *, epochs: int,
                batch_size: int = 80, lr: float = 4e-4, clip: float | None = 0.5, seed: int = 0,
                milestones=(10, 20, 30), gamma: float = 0.5) -> dict:
    """Train the original's probe on ``train`` (Adam, MultiStepLR per epoch, per-module clipping),
    score ``select`` after every epoch, keep the best epoch and score ``test`` with it.

    paper: ``select`` is the test set (the original's model selection). heldout: ``select`` is the
    validation set of the training modality. Returns best_epoch, the selection curve, the selected
    probe state, and the test predictions of the selected epoch."""
    torch.manual_seed(seed)
    metric = main_metric(task, protocol)
    in_dim = train.codes.shape[-1]
    if task.kind == "clip":
        num_classes = int(max(train.labels.max(), test.labels.max(), select.labels.max())) + 1
        probe, aux = ClipProbe(in_dim, num_classes), None
    else:
        if train.labels.shape[-1] != test.labels.shape[-1]:
            raise ValueError(f"test_data: segment labels have {test.labels.shape[-1]} columns, the training "
                             f"data {train.labels.shape[-1]}")
        probe, aux = SegmentProbe(in_dim, train.labels.shape[-1]), ExpLogLoss(train.labels.shape[-1])
    params = list(probe.parameters()) + (list(aux.parameters()) if aux is not None else [])
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    generator = torch.Generator().manual_seed(seed)
    curve, best = [], None
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            rows = order[start:start + batch_size]
            x, y = train.codes[rows], train.labels[rows]
            logits = probe(x)
            if task.kind == "clip":
                loss = torch.nn.functional.cross_entropy(logits, y)
            else:
                flat, target = logits.reshape(-1, logits.shape[-1]), y.reshape(-1, y.shape[-1])
                loss = torch.nn.functional.binary_cross_entropy_with_logits(flat, target) + aux(flat, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(probe.parameters(), clip)
                if aux is not None:
                    torch.nn.utils.clip_grad_norm_(aux.parameters(), clip)
            optimizer.step()
        scheduler.step()
        value = score(task, protocol, *predict(probe, task, select, batch_size))[metric]
        curve.append(value)
        if best is None or value > best["selection_score"]:
            best = {"best_epoch": epoch, "selection_score": value, "state": copy.deepcopy(probe.state_dict())}
    probe.load_state_dict(best["state"])
    best["test_outputs"] = predict(probe, task, test, batch_size)
    best["curve"] = curve
    best["probe"] = probe
    return best


# ============================================================================================ a run
def _mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def evaluate_downstream(model, task: str, direction: str, data, test_data=None, *, protocol: str = "heldout",
                        toc: bool = False, toc_num_channels: int | None = None, layers="both", seeds=(0,),
                        epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                        out_dir: str | os.PathLike | None = None, cache: CodeCache | None = None,
                        split_seed: int = 0, val_fraction: float = 0.2, model_name: str | None = None,
                        toc_channels: int | None = None) -> dict:
    """Run one task / direction / protocol / TOC setting for every seed; returns the result record
    (and writes it as JSON to ``out_dir`` when given). Everything is checked before any probe trains.

    model: an HDCID model, a folder or a Hub id. data: the shard folder of the task (the training
    side for two-dataset tasks, whose test side is ``test_data``). toc: read the stored TOC channels;
    toc_num_channels=Q: compute TOC with Q channels per layer first (paper settings). layers: "1", "2",
    "both". epochs / batch_size / lr of the probe: default the task's (:class:`TaskSpec`).
    ``toc_channels``: the deprecated name of ``toc_num_channels`` (FutureWarning)."""
    from ..data.shards import load_shards

    if toc_channels is not None:
        if toc_num_channels is not None:
            raise ValueError("toc_channels (deprecated) and toc_num_channels are both given; "
                             "keep only toc_num_channels")
        warnings.warn("evaluate_downstream(toc_channels=...) is deprecated and will be removed; use "
                      "toc_num_channels (the same count)", FutureWarning, stacklevel=2)
        toc_num_channels = toc_channels

    started = time.perf_counter()
    spec = get_task(task)
    if spec.kind not in PROBE_KINDS:
        raise ValueError(f"task: {task!r} (kind {spec.kind!r}) trains no probe; run it with "
                         "hf_hdcid.downstream.dispatch.run_task")
    train_modality, test_modality = get_direction(direction, task)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    if spec.two_datasets and test_data is None:
        raise ValueError(f"test_data: task {task!r} trains on one shard folder and tests on another; "
                         "give the test side's folder")
    seeds = [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]
    if not seeds:
        raise ValueError("seeds: expected at least one seed, got none")
    epochs = spec.epochs if epochs is None else int(epochs)
    batch_size = spec.batch_size if batch_size is None else int(batch_size)
    lr = spec.lr if lr is None else float(lr)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs / batch_size: expected positive values, got {epochs} / {batch_size}")
    if not (math.isfinite(lr) and 0 < lr <= 1):
        raise ValueError(f"lr: expected a finite probe learning rate in (0, 1], got {lr}")
    if out_dir is not None:
        from ..folders import check_writable_folder

        check_writable_folder(out_dir, "out_dir")  # before the work, not after it
    encoder = load_encoder(model)
    config = encoder.config
    check_toc_num_channels(config, toc_num_channels)
    check_modalities(config, direction, (train_modality, test_modality))
    chosen = resolve_layers(config, layers)
    encoder, toc = with_toc(encoder, toc_num_channels, toc)
    channels = layer_channels(encoder.config, chosen, toc)

    train_ds, train_collate = load_shards(data)
    test_ds, test_collate = (train_ds, train_collate) if test_data is None else load_shards(test_data)
    rows = resolve_rows(spec, protocol, train_ds, test_ds, split_seed=split_seed, val_fraction=val_fraction)
    cache = cache if cache is not None else CodeCache()

    def codes(ds, collate, path, idx, modality, source):
        key = cache.key(encoder, path, idx, modality, chosen, channels, spec.kind)
        return cache.get(key, lambda: extract_codes(encoder, ds.select(idx.tolist()), collate, modality, chosen,
                                                    channels, spec.kind, source=source))

    test_path = data if test_data is None else test_data
    train_set = codes(train_ds, train_collate, data, rows["train"], train_modality, "data")
    test_set = codes(test_ds, test_collate, test_path, rows["test"], test_modality,
                     "test_data" if test_data is not None else "data")
    select_set = test_set if protocol == "paper" else codes(train_ds, train_collate, data, rows["val"],
                                                            train_modality, "data")
    per_seed, collected = [], {}
    for seed in seeds:
        best = train_probe(spec, protocol, train_set, select_set, test_set, epochs=epochs, batch_size=batch_size,
                           lr=lr, seed=seed)
        metrics = score(spec, protocol, *best["test_outputs"])
        per_seed.append({"seed": seed, "best_epoch": best["best_epoch"], "selection_score": best["selection_score"],
                         "test": metrics, "curve": best["curve"]})
        for name, value in metrics.items():
            collected.setdefault(name, []).append(value)
    metric = main_metric(spec, protocol)
    name = model_name or ("H-DCID" if config.num_layers > 1 else "DCID")
    record = {
        "model": str(model) if isinstance(model, (str, os.PathLike)) else name,
        "model_name": name, "num_layers": config.num_layers, "layers": [k + 1 for k in chosen],
        "task": task, "task_description": spec.description, "direction": direction,
        "train_modality": train_modality, "test_modality": test_modality, "protocol": protocol,
        "toc": {"enabled": bool(toc), "channels_per_layer": [len(c) if c is not None else config.hidden_size
                                                             for c in channels],
                "settings": (encoder.config.toc_settings if toc else None)},
        "data": {"train": str(data), "test": str(test_path),
                 "clips": {k: (int(len(v)) if v is not None else None) for k, v in rows.items()},
                 # clips whose side's modality is not annotated (AVVP public files), left out of that side
                 "unannotated": {side: len(s.unannotated) for side, s in
                                 (("train", train_set), ("val", select_set), ("test", test_set))}},
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seeds": seeds, "split_seed": split_seed,
        "main_metric": metric, "score": _mean_std(collected[metric]),
        "metrics": {k: _mean_std(v) for k, v in collected.items()},
        "per_seed": per_seed,
        "chance_accuracy": (1.0 / int(max(train_set.labels.max(), test_set.labels.max()) + 1)
                            if spec.kind == "clip" else None),
        "time_s": round(time.perf_counter() - started, 3),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / run_filename(record)
        path.write_text(json.dumps(record, indent=2) + "\n")
        record["path"] = str(path)
    return record


def run_filename(record: dict) -> str:
    toc = "_toc" if record["toc"]["enabled"] else ""
    layers = "" if len(record["layers"]) == record["num_layers"] else "_layer" + "".join(map(str, record["layers"]))
    safe = record["model_name"].replace("+", "").replace("/", "_").replace(" ", "_").lower()
    return f"{safe}{toc}{layers}_{record['task']}_{record['direction']}_{record['protocol']}.json"


__all__ = ["evaluate_downstream", "train_probe", "resolve_rows", "resolve_layers", "load_encoder", "score",
           "predict", "run_filename"]
