"""Frozen-encoder code extraction for the downstream probes: once per (model, clips, modality, layers,
TOC channels), cached, never recomputed per epoch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

SEGMENT_COLUMNS = {"audio": "audio_labels", "video": "video_labels"}


@dataclass
class CodeSet:
    """Codes of one modality on a set of clips, with the labels the task needs.

    codes: [N, T, C] float32 (quantized vectors of the chosen layers, TOC channels only when given,
    layers concatenated). labels: clip classes [N] (long) or segment labels [N, T, W] (float 0/1,
    background last). unannotated: ids of the clips left out (segment tasks only).
    """

    codes: torch.Tensor
    labels: torch.Tensor
    unannotated: list = field(default_factory=list)  # segment tasks: clips whose modality is not annotated

    def __len__(self) -> int:
        return self.codes.shape[0]


def layer_channels(config, layers: list[int], toc: bool) -> list:
    """Per chosen layer the channel indices read (None: all); ValueError without stored TOC channels."""
    if not toc:
        return [None for _ in layers]
    if config.toc_channels is None:
        raise ValueError("toc: the model has no TOC channels (config.toc_channels is None); compute them with "
                         "`hf-hdcid toc MODEL --channels Q` or pass toc_num_channels=Q")
    return [list(config.toc_channels[k]) for k in layers]


@torch.no_grad()
def extract_codes(encoder, dataset, collate, modality: str, layers: list[int], channels: list,
                  label_kind: str, batch_size: int = 256, source: str = "data") -> CodeSet:
    """Encode every clip of ``dataset`` (a formatted shard dataset) in ``modality`` with the frozen
    encoder in eval mode; keep the quantized vectors of ``layers`` (restricted to ``channels``)."""
    column = "label" if label_kind == "clip" else SEGMENT_COLUMNS[modality]
    if modality not in dataset.column_names:
        raise ValueError(f"{source}: the shards have no {modality!r} features (columns: {sorted(dataset.column_names)})")
    if column not in dataset.column_names:
        raise ValueError(f"{source}: the shards have no {column!r} column, which the task needs "
                         f"(columns: {sorted(dataset.column_names)})")
    was_training = encoder.training
    encoder.eval()
    codes, labels, ids = [], [], []
    try:
        for start in range(0, len(dataset), batch_size):
            batch = collate(dataset[start:start + batch_size])
            out = encoder.encode(modality, batch[modality].to(encoder.device))
            parts = []
            for k, idx in zip(layers, channels):
                q = out.quantized[k]  # [B, T, D]
                parts.append(q if idx is None else q[..., torch.as_tensor(idx, device=q.device)])
            codes.append(torch.cat(parts, dim=-1).float().cpu())
            labels.append(batch[column])
            ids += list(batch["clip_id"])
    finally:
        encoder.train(was_training)
    labels, codes = torch.cat(labels), torch.cat(codes)
    unannotated = []
    if label_kind != "clip":
        # AVVP: the public audio and visual event files cover different videos (1848 and 1665), so a
        # folder holding both has clips annotated in one modality only (all -1 in the other's column).
        # As the original (it trains on one file's videos and tests on the other's), each side uses
        # the clips annotated in its own modality; a clip partly -1 is malformed and still refused.
        flat = labels.reshape(labels.shape[0], -1)
        missing = (flat < 0).all(dim=1)
        if bool(missing.any()) and not bool(missing.all()):
            unannotated = [ids[i] for i in torch.nonzero(missing).flatten().tolist()]
            keep = torch.nonzero(~missing).flatten()
            codes, labels, ids = codes[keep], labels[keep], [ids[i] for i in keep.tolist()]
    unlabelled = (labels < 0).reshape(labels.shape[0], -1).any(dim=1)
    if bool(unlabelled.any()):
        first = [ids[i] for i in torch.nonzero(unlabelled).flatten()[:3].tolist()]
        raise ValueError(f"{source}: {int(unlabelled.sum())} of {len(ids)} clips have no {column!r} labels "
                         f"(-1), e.g. {first}; the task needs labelled clips")
    labels = labels.long() if label_kind == "clip" else labels.float()
    return CodeSet(codes, labels, unannotated)


class CodeCache:
    """Code sets keyed by (encoder, data path, rows, modality, layers, channels, label kind)."""

    def __init__(self):
        self._store: dict[tuple, CodeSet] = {}
        self._alive: dict[int, object] = {}  # keeps every keyed encoder alive, so its id() stays unique
        self.hits = 0
        self.misses = 0

    def key(self, encoder, path, rows, modality, layers, channels, label_kind) -> tuple:
        self._alive[id(encoder)] = encoder
        rows_digest = hashlib.sha1(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()
        channel_key = tuple(tuple(c) if c is not None else None for c in channels)
        return (id(encoder), str(path), rows_digest, modality, tuple(layers), channel_key, label_kind)

    def get(self, key, build):
        if key in self._store:
            self.hits += 1
        else:
            self.misses += 1
            self._store[key] = build()
        return self._store[key]


__all__ = ["CodeSet", "CodeCache", "extract_codes", "layer_channels", "SEGMENT_COLUMNS"]
