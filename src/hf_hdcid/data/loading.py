"""Reading feature shards: :func:`load_shards` (file, manifest and column checks) and :func:`select_split`.

A shard folder is loaded memory-mapped (``load_from_disk(keep_in_memory=False)``; nothing copied or
cached) and formatted ``with_format("torch", dtype=None)``, so the stored dtypes come back unchanged
(plain ``with_format("torch")`` silently upcasts every float column to float32, and
``dtype=torch.float16`` would also turn ``label`` into float16). The cast to the model dtype happens
once per batch in :class:`~hf_hdcid.data.batches.HDCIDCollator`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Array2D, Dataset, Value, load_from_disk

from ..modeling import HDCIDConfig
from .batches import HDCIDCollator
from .schema import MANIFEST_NAME, FeatureSchema, as_schema, read_manifest
from .segmentation import BINARY_SEGMENTATION_COLUMNS, SEGMENTATION_COLUMNS, SegmentationSpec, segmentation_features
from .writing import FEATURE_DTYPES, SEGMENT_LABEL_COLUMNS, array_feature, describe_feature, split_column, split_counts


def _check_files(path: Path) -> dict | None:
    """Fail naming the file if a shard file is missing or its size differs from the manifest."""
    state_file = path / "state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{path}: not a shard folder (no state.json); write it with write_shards")
    manifest = read_manifest(path) if (path / MANIFEST_NAME).is_file() else None
    if manifest is not None:
        for entry in manifest.get("files", []):
            file = path / entry["filename"]
            if not file.is_file():
                raise ValueError(f"corrupt shard folder: shard file {file} is missing")
            size = os.path.getsize(file)
            if size != entry["num_bytes"]:
                raise ValueError(f"corrupt shard file {file}: expected {entry['num_bytes']} bytes (manifest), "
                                 f"got {size}: the file is truncated or was modified")
    return manifest


def _find_corrupt_file(path: Path, error: Exception) -> None:
    """load_from_disk failed: read every shard file (``data-*.arrow``, the names ``save_to_disk``
    gives them) on its own and name the one that fails."""
    for file in sorted(path.glob("data-*.arrow")):
        try:
            with pa.memory_map(str(file)) as source:
                pa.ipc.open_stream(source).read_all()
        except (pa.ArrowException, OSError) as probe:
            raise ValueError(f"corrupt shard file {file}: {probe}") from error


def _check_schema(path: Path, dataset: Dataset, schema: FeatureSchema) -> None:
    """ValueError naming ``path``, the column, the expected and the stored feature."""
    feats = dataset.features
    columns = list(feats)

    def fail(column, expected, got):
        raise ValueError(f"{path}: column {column!r}: expected {expected}, got {got}")

    for name, feature in (("clip_id", Value("string")), ("split", Value("string")), ("label", Value("int64"))):
        if name not in feats:
            fail(name, describe_feature(feature), f"no such column (columns: {columns})")
        if feats[name] != feature:
            fail(name, describe_feature(feature), describe_feature(feats[name]))
    for m in schema.modalities:
        if m == "text" and "text" not in feats:
            if "prompt" not in feats:
                fail("text", "token features or a 'prompt' column", f"neither (columns: {columns})")
            continue
        expected = array_feature(schema.shape(m), FEATURE_DTYPES[m])
        if m not in feats:
            fail(m, describe_feature(expected),
                 f"no such column (config.modalities {list(schema.modalities)}, columns: {columns})")
        got = feats[m]
        if not isinstance(got, type(expected)) or tuple(got.shape) != expected.shape or got.dtype != expected.dtype:
            fail(m, describe_feature(expected), describe_feature(got))
    widths = set()
    for column in SEGMENT_LABEL_COLUMNS.values():
        if column in feats:
            got = feats[column]
            if not isinstance(got, Array2D) or got.dtype != "int8" or got.shape[0] != schema.num_frames:
                fail(column, f"Array2D(shape=[{schema.num_frames}, label_width], dtype='int8')", describe_feature(got))
            widths.add(got.shape[1])
    if len(widths) > 1:
        fail("video_labels", f"the label_width of audio_labels ({feats['audio_labels'].shape[1]})",
             feats["video_labels"].shape[1])


def _check_segmentation(path: Path, dataset: Dataset, manifest: dict | None) -> SegmentationSpec | None:
    """The frame / mask columns agree with the manifest's ``segmentation`` entry (both or neither)."""
    feats = dataset.features
    present = [c for c in SEGMENTATION_COLUMNS if c in feats]
    entry = None if manifest is None else SegmentationSpec.from_manifest(manifest.get("segmentation"),
                                                                         path / MANIFEST_NAME)
    if entry is None:
        if present and manifest is not None:
            raise ValueError(f"{path / MANIFEST_NAME}: field 'segmentation': expected the frame/mask entry "
                             f"(the folder has columns {present}), got null; rewrite the shards with write_shards")
        return None
    for column, expected in segmentation_features(entry).items():
        if column not in feats:
            raise ValueError(f"{path}: column {column!r}: expected {describe_feature(expected)} (manifest "
                             f"'segmentation'), got no such column (columns: {list(feats)})")
        if describe_feature(feats[column]) != describe_feature(expected):
            raise ValueError(f"{path}: column {column!r}: expected {describe_feature(expected)} (manifest "
                             f"'segmentation'), got {describe_feature(feats[column])}")
    return entry


class FeatureShards(NamedTuple):
    """What :func:`load_shards` returns: the torch-formatted dataset and its batch collator."""

    dataset: Dataset
    collate: HDCIDCollator


def load_shards(path: str | os.PathLike, config_or_schema: FeatureSchema | HDCIDConfig | None = None,
                split: str | None = None, dtype: torch.dtype = torch.float32) -> FeatureShards:
    """Load a shard folder written by :func:`write_shards` (memory-mapped, nothing copied or cached).

    Checks every shard file against the manifest (size) and the columns against ``config_or_schema``
    (a :class:`FeatureSchema`, or an ``HDCIDConfig`` converted with ``FeatureSchema.from_config``:
    shape and dtype of every modality of the schema; extra modalities are allowed), keeps only
    the rows of ``split`` if given (a contiguous slice) and returns
    ``FeatureShards(dataset, collate)``: the dataset formatted ``with_format("torch", dtype=None)``
    (stored dtypes: float16 video/text, float32 audio, int64 label) and an :class:`HDCIDCollator`
    casting features to ``dtype`` once per batch. A segmentation folder (manifest ``segmentation`` entry)
    is checked for its frame / mask columns, which stay Python bytes in the dataset and are decoded by
    the collator (:mod:`hf_hdcid.data.segmentation`). Errors name the path, file or column. ``path`` may
    also be a Hub dataset repo id ``org/name`` (:func:`hf_hdcid.data.hub_shards.resolve_shards`).
    """
    from .hub_shards import resolve_shards  # a Hub id -> its snapshot in the Hub cache; a path stays itself

    path = Path(resolve_shards(path)).absolute()
    manifest = _check_files(path)
    try:
        dataset = load_from_disk(str(path), keep_in_memory=False)
    except (pa.ArrowException, OSError) as error:
        _find_corrupt_file(path, error)
        raise ValueError(f"{path}: cannot load the shard folder: {error}") from error
    if not isinstance(dataset, Dataset):
        raise ValueError(f"{path}: expected a single Dataset written by write_shards, got {type(dataset).__name__}")
    if manifest is not None and len(dataset) != manifest["num_rows"]:
        raise ValueError(f"corrupt shard folder {path}: expected {manifest['num_rows']} rows (manifest), "
                         f"got {len(dataset)}")
    segmentation = _check_segmentation(path, dataset, manifest)
    if config_or_schema is not None:
        _check_schema(path, dataset, as_schema(config_or_schema))
    if split is not None:
        dataset = select_split(dataset, split, path)
    if len(dataset) == 0:
        raise ValueError(f"{path}: the dataset is empty")
    collator = HDCIDCollator(config_or_schema, dtype, source=str(path),  # a config keeps its check_finite_inputs
                             segmentation=segmentation)
    if segmentation is None:
        return FeatureShards(dataset.with_format("torch", dtype=None), collator)
    # frames / masks are binary cells: datasets' torch formatter mangles bytes (an all-zero cell came back
    # empty, datasets 5.2), so they stay plain Python bytes and the collator decodes them
    formatted = [c for c in dataset.column_names if c not in BINARY_SEGMENTATION_COLUMNS]
    return FeatureShards(dataset.with_format("torch", columns=formatted, output_all_columns=True, dtype=None),
                         collator)


def select_split(dataset: Dataset, split: str, path: Any = "dataset") -> Dataset:
    """The rows whose ``split`` column equals ``split`` (ValueError listing the splits present if none)."""
    column = split_column(dataset)
    mask = pc.equal(column, split).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        raise ValueError(f"{path}: split {split!r} is empty or unknown: splits present {split_counts(dataset)}")
    if rows[-1] - rows[0] + 1 == rows.size:  # contiguous (write_shards groups splits): no indices mapping
        return dataset.select(range(int(rows[0]), int(rows[-1]) + 1))
    return dataset.select(rows, keep_in_memory=True)


__all__ = ["FeatureShards", "load_shards", "select_split"]
