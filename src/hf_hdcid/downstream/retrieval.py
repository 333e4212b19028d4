"""Cross-modal retrieval on the unified codes (issue 18, retrieval part).

For every clip, its code in the query modality ranks the codes of all clips in the gallery modality
(same clips, other modality): the pooled unified feature of a clip is the mean over time of its
quantized vectors (the chosen layers concatenated, TOC channels only when asked), compared by cosine
similarity. Gallery clips of the query's class are relevant (``label``), so a clip's own partner is
one relevant item among its class. Metrics: ``hf_hdcid.metrics.hdcid_retrieval`` (Recall@1/5/10,
median rank, mAP). No probe is trained; an untrained encoder gives the floor.

The task ``retrieval`` of ``hf-hdcid evaluate`` (:func:`run_retrieval` is its runner in
:mod:`hf_hdcid.downstream.dispatch`). Its records have the shape of the probe tasks' (``score`` and
``metrics`` as {mean, std, values}) with these choices:

* ``protocol`` is ``"zero-shot"`` whatever ``--protocol`` says: nothing is trained or selected, so the
  paper / heldout distinction does not apply, and one run stays one model-index entry (named without
  a protocol: "Cross-modal retrieval A→V, TOC 8 channels");
* the clips are the shards' ``test`` split when present, else every clip (``data.split`` records which);
* the ranking is deterministic: ``seeds`` are recorded as given, every metric holds one value (std 0)
  and ``deterministic`` is true;
* ``train_modality`` / ``test_modality`` are the query / gallery modalities (also under those names).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from .codes import CodeCache, extract_codes, layer_channels
from .runner import (_mean_std, _split_rows, check_modalities, check_toc_num_channels, load_encoder, resolve_layers,
                     run_filename, with_toc)
from .tasks import DIRECTION_MODALITIES, TASKS, ZERO_SHOT

#: query modality -> gallery modality (the retrieval task's directions)
RETRIEVAL_DIRECTIONS = {d: DIRECTION_MODALITIES[d] for d in TASKS["retrieval"].directions}
#: the split retrieval reads by default, when the shards have it (else every clip)
RETRIEVAL_SPLIT = "test"


def pooled_features(codes: torch.Tensor) -> torch.Tensor:
    """[N, T, C] quantized codes -> [N, C] unit-length mean over time (the clip's unified feature)."""
    return torch.nn.functional.normalize(codes.float().mean(dim=1), dim=-1)


def similarity_matrix(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """Cosine similarities [Q, G] of pooled unit features [Q, C] and [G, C]."""
    return queries @ gallery.T


def retrieval_rows(dataset, split: str | None = "auto") -> tuple[np.ndarray, str | None]:
    """(row indices, split name or None) of the clips retrieval reads: ``"auto"``: the
    :data:`RETRIEVAL_SPLIT` ("test") rows when the shards have that split, else every clip (None);
    None: every clip; a name: that split (ValueError listing the splits when it has no clip)."""
    splits = _split_rows(dataset)
    if split == "auto":
        split = RETRIEVAL_SPLIT if RETRIEVAL_SPLIT in splits else None
    if split is None:
        return np.arange(len(dataset)), None
    if split not in splits:
        raise ValueError(f"split: expected one of the shards' splits {sorted(splits)} (or None, 'auto'), got {split!r}")
    return splits[split], split


def evaluate_retrieval(model, direction: str, data, *, split: str | None = "auto", toc: bool = False,
                       toc_num_channels: int | None = None, layers="both", seeds=(0,), batch_size: int = 256,
                       out_dir: str | os.PathLike | None = None, cache: CodeCache | None = None,
                       model_name: str | None = None) -> dict:
    """Retrieval scores of ``direction`` (query modality 2 gallery modality, :data:`RETRIEVAL_DIRECTIONS`)
    on the clips of the shard folder (or Hub id) ``data`` as a run record of the shape of
    :func:`hf_hdcid.downstream.evaluate_downstream`'s (written as JSON into ``out_dir`` when given, named by
    :func:`hf_hdcid.downstream.runner.run_filename`). ``toc`` / ``toc_num_channels`` / ``layers`` as there.

    split: ``"auto"`` (default) the shards' "test" split when present, else every clip; None every
    clip; or a split name (:func:`retrieval_rows`). Every clip read needs a class ``label`` >= 0 and both
    modalities' features. The ranking is deterministic: ``seeds`` are recorded as given and the
    scores hold one value (std 0). ``protocol`` is ``"zero-shot"`` (no probe, no selection).
    ``cache``: a :class:`CodeCache` shared with other runs (a2v and v2a extract the same codes)."""
    from ..data.shards import load_shards
    # the metric module imports evaluate (~4 s): at the first run, not when the package is imported
    from ..metrics.hdcid_retrieval.hdcid_retrieval import retrieval_scores

    started = time.perf_counter()
    if direction not in RETRIEVAL_DIRECTIONS:
        raise ValueError(f"direction: expected one of {sorted(RETRIEVAL_DIRECTIONS)}, got {direction!r}")
    query_modality, gallery_modality = RETRIEVAL_DIRECTIONS[direction]
    seeds = [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]
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
    dataset, collate = load_shards(data)
    rows, split = retrieval_rows(dataset, split)
    cache = cache if cache is not None else CodeCache()

    def codes(modality):
        key = cache.key(encoder, data, rows, modality, chosen, channels, "clip")
        return cache.get(key, lambda: extract_codes(encoder, dataset.select(rows.tolist()), collate, modality, chosen,
                                                    channels, "clip", batch_size=batch_size, source=str(data)))

    sets = {m: codes(m) for m in (query_modality, gallery_modality)}
    queries, gallery = pooled_features(sets[query_modality].codes), pooled_features(sets[gallery_modality].codes)
    sim = similarity_matrix(queries, gallery)  # [N, N]
    # the evaluate module's own scoring function, on the matrix as it is: its compute() would first turn
    # the N x N matrix into Python lists and an Arrow table (11M floats for AVE's 3339 clips)
    scores = retrieval_scores(sim.double().numpy(), sets[query_modality].labels.numpy(),
                              sets[gallery_modality].labels.numpy())
    name = model_name or ("H-DCID" if config.num_layers > 1 else "DCID")
    spec = TASKS["retrieval"]
    record = {
        "model": str(model) if isinstance(model, (str, os.PathLike)) else name, "model_name": name,
        "num_layers": config.num_layers, "layers": [k + 1 for k in chosen], "task": "retrieval",
        "task_description": spec.description, "direction": direction,
        # the contract's names (first / second modality) and retrieval's own
        "train_modality": query_modality, "test_modality": gallery_modality,
        "query_modality": query_modality, "gallery_modality": gallery_modality, "protocol": ZERO_SHOT,
        "toc": {"enabled": bool(toc), "channels_per_layer": [len(c) if c is not None else config.hidden_size
                                                             for c in channels],
                "settings": (encoder.config.toc_settings if toc else None)},
        "data": {"train": None, "test": str(data), "split": split, "clips": {"test": int(len(rows))}},
        "seeds": seeds, "deterministic": True, "main_metric": spec.paper_metric,
        "score": _mean_std([scores[spec.paper_metric]]),
        "metrics": {k: _mean_std([v]) for k, v in scores.items()},
        "per_seed": [{"seed": None, "test": scores}],  # one ranking, whatever the seeds
        "chance_recall@1": _chance_recall_at_1(sets[query_modality].labels, sets[gallery_modality].labels),
        "time_s": round(time.perf_counter() - started, 3),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / run_filename(record)
        path.write_text(json.dumps(record, indent=2) + "\n")
        record["path"] = str(path)
    return record


def _chance_recall_at_1(query_labels: torch.Tensor, gallery_labels: torch.Tensor) -> float:
    """Expected recall@1 of a random ranking: mean over queries of the share of the gallery in its class
    (about 1 / number of classes for balanced classes)."""
    counts = torch.bincount(gallery_labels, minlength=int(query_labels.max()) + 1).double()
    return float((counts[query_labels] / len(gallery_labels)).mean())


def run_retrieval(model, task: str, direction: str, data, test_data=None, *, protocol=None, toc: bool = False,
                  toc_num_channels: int | None = None, layers="both", seeds=(0,), epochs=None, batch_size=None,
                  lr=None, out_dir=None, cache: CodeCache | None = None, model_name: str | None = None) -> dict:
    """The retrieval task's runner for :func:`hf_hdcid.downstream.dispatch.run_task`: ranks the clips of
    ``data`` (:func:`evaluate_retrieval`, default split). ``test_data`` (the test side of two-dataset
    probe tasks in the same grid), ``protocol``, ``epochs``, ``batch_size`` and ``lr`` are the probe
    tasks' settings and are not read (the record's protocol is ``"zero-shot"``);
    :func:`hf_hdcid.downstream.dispatch.check_runs` refuses a ``test_data`` that no task reads."""
    return evaluate_retrieval(model, direction, data, toc=toc, toc_num_channels=toc_num_channels, layers=layers,
                              seeds=seeds, out_dir=out_dir, cache=cache, model_name=model_name)


__all__ = ["RETRIEVAL_DIRECTIONS", "RETRIEVAL_SPLIT", "evaluate_retrieval", "run_retrieval", "retrieval_rows",
           "pooled_features", "similarity_matrix"]
