"""Cross-modal retrieval on the unified codes (issue 18, retrieval part).

For every clip, its code in the query modality ranks the codes of all clips in the gallery modality
(same clips, other modality): the pooled unified feature of a clip is the mean over time of its
quantized vectors (the chosen layers concatenated, TOC channels only when asked), compared by cosine
similarity. Gallery clips of the query's class are relevant (``label``), so a clip's own partner is
one relevant item among its class. Metrics: ``hf_hdcid.metrics.hdcid_retrieval`` (Recall@1/5/10,
median rank, mAP). No probe is trained; an untrained encoder gives the floor.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from ..metrics.hdcid_retrieval.hdcid_retrieval import retrieval_scores
from .codes import extract_codes, layer_channels
from .runner import check_modalities, check_toc_num_channels, load_encoder, resolve_layers, with_toc

#: query modality -> gallery modality
RETRIEVAL_DIRECTIONS = {"a2v": ("audio", "video"), "v2a": ("video", "audio"), "a2t": ("audio", "text"),
                        "t2a": ("text", "audio"), "v2t": ("video", "text"), "t2v": ("text", "video")}


def pooled_features(codes: torch.Tensor) -> torch.Tensor:
    """[N, T, C] quantized codes -> [N, C] unit-length mean over time (the clip's unified feature)."""
    return torch.nn.functional.normalize(codes.float().mean(dim=1), dim=-1)


def similarity_matrix(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """Cosine similarities [Q, G] of pooled unit features [Q, C] and [G, C]."""
    return queries @ gallery.T


def evaluate_retrieval(model, direction: str, data, *, split: str | None = None, toc: bool = False,
                       toc_num_channels: int | None = None, layers="both", batch_size: int = 256,
                       out_dir: str | os.PathLike | None = None, model_name: str | None = None) -> dict:
    """Retrieval scores of ``direction`` (query modality 2 gallery modality, :data:`RETRIEVAL_DIRECTIONS`)
    on the clips of the shard folder (or Hub id) ``data`` (``split``: only those rows), as a run record
    (written as JSON into ``out_dir`` when given). ``toc`` / ``toc_num_channels`` / ``layers`` as for
    :func:`hf_hdcid.downstream.evaluate_downstream`. Every clip needs a class ``label`` >= 0 and both
    modalities' features."""
    from ..data.shards import load_shards

    started = time.perf_counter()
    if direction not in RETRIEVAL_DIRECTIONS:
        raise ValueError(f"direction: expected one of {sorted(RETRIEVAL_DIRECTIONS)}, got {direction!r}")
    query_modality, gallery_modality = RETRIEVAL_DIRECTIONS[direction]
    if out_dir is not None:
        from ..folders import check_writable_folder

        check_writable_folder(out_dir, "out_dir")
    encoder = load_encoder(model)
    config = encoder.config
    check_toc_num_channels(config, toc_num_channels)
    check_modalities(config, direction, (query_modality, gallery_modality))
    chosen = resolve_layers(config, layers)
    encoder, toc = with_toc(encoder, toc_num_channels, toc)
    channels = layer_channels(encoder.config, chosen, toc)
    dataset, collate = load_shards(data, split=split)
    sets = {m: extract_codes(encoder, dataset, collate, m, chosen, channels, "clip", batch_size=batch_size,
                             source=str(data)) for m in (query_modality, gallery_modality)}
    queries, gallery = pooled_features(sets[query_modality].codes), pooled_features(sets[gallery_modality].codes)
    sim = similarity_matrix(queries, gallery)  # [N, N]
    # the evaluate module's own scoring function, on the matrix as it is: its compute() would first turn
    # the N x N matrix into Python lists and an Arrow table (11M floats for AVE's 3339 clips)
    scores = retrieval_scores(sim.double().numpy(), sets[query_modality].labels.numpy(),
                              sets[gallery_modality].labels.numpy())
    name = model_name or ("H-DCID" if config.num_layers > 1 else "DCID")
    record = {
        "model": str(model) if isinstance(model, (str, os.PathLike)) else name, "model_name": name,
        "num_layers": config.num_layers, "layers": [k + 1 for k in chosen], "task": "retrieval",
        "direction": direction, "query_modality": query_modality, "gallery_modality": gallery_modality,
        "toc": {"enabled": bool(toc), "channels_per_layer": [len(c) if c is not None else config.hidden_size
                                                             for c in channels]},
        "data": {"path": str(data), "split": split, "clips": len(queries)},
        "metrics": scores, "main_metric": "mAP", "score": scores["mAP"],
        "time_s": round(time.perf_counter() - started, 3),
    }
    if out_dir is not None:
        toc_part = "toc" if toc else "all"
        path = Path(out_dir) / f"{name.lower()}_{toc_part}_retrieval_{direction}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        record["path"] = str(path)
    return record


__all__ = ["RETRIEVAL_DIRECTIONS", "evaluate_retrieval", "pooled_features", "similarity_matrix"]
