"""Feature shards: one on-disk schema for pretraining and downstream (classification, AVVP, retrieval) data.

A shard folder is a ``datasets`` Arrow dataset written by ``Dataset.save_to_disk`` (memory-mapped on
load; about 30x faster to read than Parquet for these nested fp16 tensors) plus a small manifest,
``hdcid_shards.json``. One row is one clip. This module gathers the public names of the parts:

* :mod:`hf_hdcid.data.schema`: :class:`FeatureSchema` (modalities and per-clip shapes) and the manifest
  (``MANIFEST_NAME``, :func:`read_manifest`);
* :mod:`hf_hdcid.data.writing`: the columns (their table is that module's docstring),
  :class:`RecordValidator` and :func:`write_shards`;
* :mod:`hf_hdcid.data.loading`: :func:`load_shards` and :func:`select_split`;
* :mod:`hf_hdcid.data.segmentation`: the frame / mask columns of segmentation shards
  (:class:`SegmentationSpec`, :func:`load_segmentation_shards`);
* :mod:`hf_hdcid.data.batches`: :class:`HDCIDCollator`, :class:`ArrowBatchView`, :func:`make_dataloader`
  and :func:`shard_for_process` (multi-process training: read its docstring before splitting data).

Typical use::

    write_shards(records, "shards/ave", config, num_shards=4)        # records: dicts, see write_shards
    data, collate = load_shards("shards/ave", config, split="train")
    for batch in make_dataloader(data, collate, batch_size=32, shuffle=True):   # or data.iter(32) + collate
        out = model(**collate.model_inputs(batch))
"""

from __future__ import annotations

from .batches import ArrowBatchView, HDCIDCollator, collate, make_dataloader, shard_for_process
from .loading import FeatureShards, load_shards, select_split
from .segmentation import SEGMENTATION_COLUMNS, SegmentationSpec, load_segmentation_shards
from .schema import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, FeatureSchema, read_manifest
from .writing import FEATURE_DTYPES, SEGMENT_LABEL_COLUMNS, STRING_COLUMNS, RecordValidator, shard_features, write_shards

__all__ = [
    "FEATURE_DTYPES", "MANIFEST_FORMAT", "MANIFEST_NAME", "MANIFEST_VERSION", "SEGMENTATION_COLUMNS",
    "SEGMENT_LABEL_COLUMNS", "SegmentationSpec", "load_segmentation_shards",
    "STRING_COLUMNS", "ArrowBatchView", "FeatureSchema", "FeatureShards", "HDCIDCollator", "RecordValidator",
    "collate", "load_shards", "make_dataloader", "read_manifest", "select_split", "shard_features",
    "shard_for_process", "write_shards",
]
