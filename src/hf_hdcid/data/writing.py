"""Writing feature shards: the columns of a shard folder, the record checks and :func:`write_shards`.

One row is one clip. With ``T = num_frames`` of the :class:`~hf_hdcid.data.schema.FeatureSchema`:

==================  ===============================================  ===========================================
column              type                                             meaning
==================  ===============================================  ===========================================
``clip_id``         ``Value("string")``                              unique within its split
``split``           ``Value("string")``                              e.g. ``"train"``, ``"val"``, ``"test"``
``label``           ``Value("int64")``                               clip class; ``-1`` if none (pretraining)
``audio``           ``Array2D((T, audio_feature_dim), "float32")``   VGGish features, one row per segment
``video``           ``Array4D((T, S, S, video_feature_dim),          VGG19 pool5 maps, ``S = video_spatial_size``
                    "float16")``
``text``            ``Array2D((T, text_feature_dim), "float16")``    BERT token features (token slots)
``prompt``          ``Value("string")``                              text the token features come (or will) from
``audio_labels``    ``Array2D((T, label_width), "int8")``            per-segment multi-hot audio events
``video_labels``    ``Array2D((T, label_width), "int8")``            per-segment multi-hot visual events
``frames``          ``Value("binary")``: uint8 [F, H, W, 3] bytes     segmentation shards only: RGB frames
``masks``           ``Value("binary")``: bit-packed 0/1 [F, H, W]     segmentation shards only: sounding-object masks
``mask_valid``      ``Sequence(Value("int8"), length=F)``            segmentation shards only: annotated frames
==================  ===============================================  ===========================================

Only the schema's modalities (``config.modalities`` for a config) are columns. ``text`` is present when
text features are stored (``with_text_features=True``, the default); ``prompt`` is present when asked
for, and by default when ``text`` is a modality but its features are not stored (they are computed
later from the prompt). ``audio_labels`` / ``video_labels`` exist only when ``label_width`` is given,
and then only for the modalities present; a clip without segment annotations stores all ``-1`` there,
an annotated one only 0/1. ``frames`` / ``masks`` / ``mask_valid`` exist only when ``segmentation`` is
given (:mod:`hf_hdcid.data.segmentation`). Rows are grouped by split (stable, in order of first appearance), so every
split is a contiguous slice.

Dtypes: video and text are stored as float16 (half the disk and page cache), audio as float32.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Array2D, Array3D, Array4D, Dataset, Features, Sequence, Value
from datasets.exceptions import DatasetGenerationError

from ..folders import disk_errors, exclusive_folder, replace_folder
from ..modeling import HDCIDConfig
from .schema import MANIFEST_NAME, FeatureSchema, as_schema, check_source, write_manifest
from .segmentation import SEGMENTATION_COLUMNS, SegmentationSpec, check_segmentation_value, segmentation_features

FEATURE_DTYPES = {"audio": "float32", "video": "float16", "text": "float16"}
SEGMENT_LABEL_COLUMNS = {"audio": "audio_labels", "video": "video_labels"}
STRING_COLUMNS = ("clip_id", "split", "prompt")


# ============================================================================================ columns
def array_feature(shape: tuple[int, ...], dtype: str):
    """The ``datasets`` feature of a per-clip array: Array2D for [T, C], Array4D for [T, H, W, C]."""
    return (Array2D if len(shape) == 2 else Array4D)(shape=tuple(shape), dtype=dtype)


def shard_features(config_or_schema: FeatureSchema | HDCIDConfig, with_text_features: bool = True,
                   label_width: int | None = None, with_prompt: bool | None = None,
                   segmentation: SegmentationSpec | None = None) -> Features:
    """The ``datasets.Features`` of a shard folder for ``config_or_schema`` (a :class:`FeatureSchema` or
    an ``HDCIDConfig``; the table in the module docstring).

    with_text_features: store BERT token features in ``text`` (only when ``"text"`` is a modality).
    label_width: number of event classes of the per-segment ``audio_labels`` / ``video_labels``
        (None: no such columns).
    with_prompt: add the ``prompt`` string column; None means "when text is a modality whose features
        are not stored".
    segmentation: a :class:`~hf_hdcid.data.segmentation.SegmentationSpec` (or ``(F, H, W)``): add the
        ``frames`` / ``masks`` / ``mask_valid`` columns (None: none).
    """
    segmentation = SegmentationSpec.of(segmentation)
    schema = as_schema(config_or_schema)
    present = schema.modalities  # canonical order, whatever the EMA order
    text_features = with_text_features and "text" in present
    if with_prompt is None:
        with_prompt = "text" in present and not text_features
    if "text" in present and not text_features and not with_prompt:
        raise ValueError("text is one of config.modalities: expected with_text_features=True or with_prompt=True, "
                         "got neither (the text column would be missing)")
    if label_width is not None and (not isinstance(label_width, int) or isinstance(label_width, bool)
                                    or label_width < 1):
        raise ValueError(f"label_width: expected None or a positive int, got {label_width!r}")
    columns: dict[str, Any] = {"clip_id": Value("string"), "split": Value("string"), "label": Value("int64")}
    for m in present:
        if m != "text" or text_features:
            columns[m] = array_feature(schema.shape(m), FEATURE_DTYPES[m])
    if with_prompt:
        columns["prompt"] = Value("string")
    if label_width is not None:
        for m, col in SEGMENT_LABEL_COLUMNS.items():
            if m in present:
                columns[col] = Array2D(shape=(schema.num_frames, label_width), dtype="int8")  # [T, W]
    if segmentation is not None:
        columns.update(segmentation_features(segmentation))
    return Features(columns)


def describe_feature(feature) -> str:
    """A column's feature type in one line, as error messages name it (``Array2D(shape=[8, 16], ...)``)."""
    if isinstance(feature, (Array2D, Array4D)):
        return f"{type(feature).__name__}(shape={list(feature.shape)}, dtype={feature.dtype!r})"
    if isinstance(feature, Value):
        return f"Value({feature.dtype!r})"
    if isinstance(feature, Array3D):
        return f"Array3D(shape={list(feature.shape)}, dtype={feature.dtype!r})"
    if isinstance(feature, Sequence) and isinstance(feature.feature, Value):
        return f"Sequence(Value({feature.feature.dtype!r}), length={feature.length})"
    return repr(feature)


# ============================================================================================ records
def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _all_finite(array: np.ndarray) -> bool:
    if array.dtype == np.float16:  # exponent bits all set = inf or NaN; 10x faster than np.isfinite on fp16
        return not bool(np.any((array.view(np.uint16) & 0x7C00) == 0x7C00))
    return bool(np.isfinite(array).all())


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16
            value = value.float()
        return value.numpy()
    return np.asarray(value)


class RecordValidator:
    """Checks one record (a dict) against the schema and returns it encoded in the stored dtypes.

    Every error is a ValueError naming the record (index and clip_id), the column, what was expected
    and what was given.
    """

    def __init__(self, config_or_schema: FeatureSchema | HDCIDConfig, features: Features,
                 num_classes: int | None = None, default_split: str = "train",
                 segmentation: SegmentationSpec | None = None):
        self.schema = as_schema(config_or_schema)
        self.segmentation = SegmentationSpec.of(segmentation)
        if self.segmentation is None and any(c in features for c in SEGMENTATION_COLUMNS):
            raise ValueError("segmentation: expected the SegmentationSpec of the frame / mask columns, got None")
        self.features = features
        self.num_classes = num_classes
        self.default_split = default_split
        self.seen_ids: dict[str, set] = {}

    def fail(self, index: int, clip_id, column: str, message: str):
        raise ValueError(f"record {index} (clip_id {clip_id!r}): column {column!r}: {message}")

    def __call__(self, index: int, record) -> dict:
        if not isinstance(record, dict):
            raise ValueError(f"record {index}: expected a dict of columns, got {type(record).__name__}")
        clip_id = record.get("clip_id")
        unknown = sorted(set(record) - set(self.features))
        if unknown:
            self.fail(index, clip_id, unknown[0], f"unexpected column(s) {unknown}: expected only "
                      f"{list(self.features)} (modalities {list(self.schema.modalities)})")
        out = {}
        if not isinstance(clip_id, str) or not clip_id:
            self.fail(index, clip_id, "clip_id", f"expected a non-empty string, got {clip_id!r}")
        split = record.get("split", self.default_split)
        if not isinstance(split, str) or not split:
            self.fail(index, clip_id, "split", f"expected a non-empty string, got {split!r}")
        ids = self.seen_ids.setdefault(split, set())
        if clip_id in ids:
            self.fail(index, clip_id, "clip_id", f"expected ids unique within a split, got a second {clip_id!r} "
                      f"in split {split!r}")
        ids.add(clip_id)
        out["clip_id"], out["split"] = clip_id, split
        out["label"] = self.check_label(index, clip_id, record.get("label", -1))
        for column, feature in self.features.items():
            if column in out:
                continue
            if column in SEGMENTATION_COLUMNS:  # frames / masks (binary) and mask_valid
                stored, problem = check_segmentation_value(column, record.get(column), self.segmentation)
                if problem is not None:
                    self.fail(index, clip_id, column, problem)
                out[column] = stored
            elif isinstance(feature, Value):  # prompt
                value = record.get(column)
                if not isinstance(value, str) or not value:
                    self.fail(index, clip_id, column, f"expected a non-empty string, got {value!r}")
                out[column] = value
            elif column in SEGMENT_LABEL_COLUMNS.values():
                out[column] = self.check_segment_labels(index, clip_id, column, feature, record.get(column))
            else:
                out[column] = self.check_features(index, clip_id, column, feature, record.get(column))
        return out

    def check_label(self, index, clip_id, label) -> int:
        if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
            label = label.item()
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            self.fail(index, clip_id, "label", f"expected an int (-1 for none), got {label!r}")
        label = int(label)
        high = f"{self.num_classes - 1}" if self.num_classes is not None else "inf"
        if label < -1 or (self.num_classes is not None and label >= self.num_classes):
            self.fail(index, clip_id, "label", f"expected an int in [-1, {high}], got {label}")
        return label

    def check_features(self, index, clip_id, column, feature, value) -> np.ndarray:
        shape = tuple(feature.shape)
        if value is None:
            self.fail(index, clip_id, column, f"missing: expected an array of shape {_fmt_shape(shape)} "
                      f"(modality of config.modalities {list(self.schema.modalities)})")
        array = _to_numpy(value)
        if array.dtype.kind not in "fiu":
            self.fail(index, clip_id, column,
                      f"expected a numeric array of shape {_fmt_shape(shape)}, got dtype {array.dtype}")
        if array.shape != shape:
            self.fail(index, clip_id, column, f"expected shape {_fmt_shape(shape)}, got {_fmt_shape(array.shape)}")
        if not _all_finite(array):
            self.fail(index, clip_id, column, f"features of shape {_fmt_shape(shape)} contain NaN or inf values")
        with np.errstate(over="ignore"):  # overflow is reported just below, with the column
            stored = array.astype(feature.dtype, copy=False)
        if stored.dtype != array.dtype and not _all_finite(stored):
            self.fail(index, clip_id, column, f"values exceed the {feature.dtype} range (max |x| = "
                      f"{float(np.abs(array).max()):.4g}) and would be stored as inf")
        return stored

    def check_segment_labels(self, index, clip_id, column, feature, value) -> np.ndarray:
        shape = tuple(feature.shape)
        if value is None:
            return np.full(shape, -1, dtype=np.int8)  # clip without segment annotations
        array = _to_numpy(value)
        if array.dtype.kind not in "biuf":
            self.fail(index, clip_id, column,
                      f"expected a multi-hot array of shape {_fmt_shape(shape)}, got dtype {array.dtype}")
        if array.shape != shape:
            self.fail(index, clip_id, column, f"expected shape {_fmt_shape(shape)}, got {_fmt_shape(array.shape)}")
        if not (np.isin(array, (0, 1)).all() or (array == -1).all()):
            bad = np.unique(array[~np.isin(array, (0, 1))])[:5].tolist()
            self.fail(index, clip_id, column, f"expected only 0/1 values (or all -1 for none), got {bad}")
        return array.astype(np.int8)


# ============================================================================================ writing
def _iterate_records(records_or_generator) -> Iterable:
    source = records_or_generator() if callable(records_or_generator) else records_or_generator
    if isinstance(source, (dict, str, bytes)) or not isinstance(source, Iterable):
        raise ValueError(f"records_or_generator: expected an iterable of dicts (or a callable returning one), "
                         f"got {type(source).__name__}")
    return source


def _split_order(split_column: pa.ChunkedArray) -> np.ndarray | None:
    """Row order that groups the splits (stable, by first appearance); None if already grouped."""
    key = pc.dictionary_encode(split_column).combine_chunks().indices.to_numpy()  # codes by first appearance
    if np.all(key[1:] >= key[:-1]):
        return None
    return np.argsort(key, kind="stable")


def write_shards(records_or_generator: Iterable[dict] | Callable[[], Iterable[dict]], out_dir: str | os.PathLike,
                 config_or_schema: FeatureSchema | HDCIDConfig, num_shards: int | None = None, *,
                 with_text_features: bool = True, with_prompt: bool | None = None, label_width: int | None = None,
                 num_classes: int | None = None, split: str = "train", overwrite: bool = False,
                 writer_batch_size: int = 100, source: dict | None = None,
                 segmentation: SegmentationSpec | dict | tuple | None = None) -> Path:
    """Validate every record and write the shard folder ``out_dir`` (columns: module docstring).

    ``config_or_schema``: a :class:`FeatureSchema`, or an ``HDCIDConfig`` (its
    ``FeatureSchema.from_config``). ``source``: what the records came from (e.g. a converter's layout
    and paths), stored as given under ``"source"`` in the manifest; it must be JSON-serialisable
    (ValueError naming it, before anything is written).

    A record is a dict with ``clip_id`` (str), the features of every modality of the schema (numpy
    arrays or CPU tensors of exactly the per-clip shape; cast to the stored dtype, refusing NaN/inf and
    float16 overflow), optionally ``label`` (int in [-1, num_classes); default -1), ``split`` (default
    ``split``), ``prompt`` and ``audio_labels`` / ``video_labels`` (0/1 of shape [T, label_width]).
    With ``segmentation`` (a :class:`~hf_hdcid.data.segmentation.SegmentationSpec`, ``(F, H, W)`` or
    the manifest entry), every record also has ``frames`` (uint8 ``[F, H, W, 3]``), ``masks`` (0/1
    ``[F, H, W]``) and ``mask_valid`` (0/1 ``[F]``, at least one 1), and the manifest records
    ``"segmentation": {"num_frames": F, "frame_size": [H, W]}`` (null otherwise).
    Any other key is an error. A bad record raises ValueError naming its index, clip_id, the column,
    the expected and the actual value.

    The data is written with ``Dataset.from_generator`` into a hidden temporary sibling folder, then
    ``save_to_disk(num_shards=num_shards)`` (None: the datasets default, one shard per 500 MB), and the
    folder is renamed into place only when complete: a failure leaves neither ``out_dir`` nor a
    temporary folder behind. An existing ``out_dir`` is refused (FileExistsError) unless
    ``overwrite=True``; then the old folder is replaced only after the new one is complete. Only an
    empty folder or a shard folder is ever replaced, never another existing path.

    Returns the absolute path of ``out_dir``.
    """
    out_dir = Path(out_dir).absolute()
    _check_replaceable(out_dir, overwrite)
    if num_shards is not None and (not isinstance(num_shards, int) or isinstance(num_shards, bool) or num_shards < 1):
        raise ValueError(f"num_shards: expected None or a positive int, got {num_shards!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes: expected None or a positive int, got {num_classes!r}")
    check_source(source)
    segmentation = SegmentationSpec.of(segmentation)
    schema = as_schema(config_or_schema)
    features = shard_features(schema, with_text_features=with_text_features, label_width=label_width,
                              with_prompt=with_prompt, segmentation=segmentation)
    validate = RecordValidator(schema, features, num_classes=num_classes, default_split=split,
                               segmentation=segmentation)
    records = _iterate_records(records_or_generator)
    failure: list[BaseException] = []

    def generate():
        try:
            for index, record in enumerate(records):
                yield validate(index, record)
        except Exception as error:  # datasets wraps it in DatasetGenerationError; re-raised as is below
            failure.append(error)
            raise

    with exclusive_folder(out_dir, f"write_shards {out_dir.name}"):
        _check_replaceable(out_dir, overwrite)  # again, under the lock: another writer may have finished
        with disk_errors(out_dir, "writing shards into"):
            return _write_staged(generate, failure, out_dir, overwrite, features, num_shards, writer_batch_size,
                                 manifest=dict(schema=schema, label_width=label_width, source=source,
                                               segmentation=segmentation))


def _write_staged(generate, failure, out_dir, overwrite, features, num_shards, writer_batch_size,
                  manifest: dict) -> Path:
    """Write the shards into a hidden sibling and rename them into place (the caller holds the lock)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        try:
            dataset = Dataset.from_generator(
                generate, features=features, cache_dir=str(staging / "cache"),
                fingerprint=uuid.uuid4().hex,  # never reuse a cache; never hash the records
                writer_batch_size=writer_batch_size)
        except DatasetGenerationError:
            if failure:
                raise failure[0] from None
            raise
        except ValueError as error:
            if failure:
                raise failure[0] from None
            if "corresponds to no data" in str(error):  # datasets' message for a generator yielding nothing
                raise ValueError(f"{out_dir}: no records: an empty dataset cannot be written") from None
            raise
        if len(dataset) == 0:
            raise ValueError(f"{out_dir}: no records: an empty dataset cannot be written")
        if num_shards is not None and num_shards > len(dataset):
            raise ValueError(f"num_shards: expected at most the number of records ({len(dataset)}), got {num_shards}")
        counts = split_counts(dataset)
        order = _split_order(dataset.data.column("split"))
        if order is not None:  # costs a gather while saving; records written split by split avoid it
            dataset = dataset.select(order, keep_in_memory=True)
        data_dir = staging / "data"
        dataset.save_to_disk(str(data_dir), num_shards=num_shards)
        del dataset
        write_manifest(data_dir, columns={name: describe_feature(f) for name, f in features.items()},
                       split_counts=counts, **manifest)
        _check_replaceable(out_dir, overwrite)
        replace_folder(data_dir, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _check_replaceable(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() or out_dir.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{out_dir} already exists: pass overwrite=True to replace it")
        is_shard_folder = (out_dir / MANIFEST_NAME).is_file() or (out_dir / "state.json").is_file()
        if out_dir.is_symlink() or not out_dir.is_dir() or (any(out_dir.iterdir()) and not is_shard_folder):
            raise FileExistsError(f"{out_dir} exists and is not a shard folder (no {MANIFEST_NAME} or state.json): "
                                  "refusing to replace it even with overwrite=True")


def split_column(dataset: Dataset) -> pa.ChunkedArray:
    """The ``split`` column in row order (reads only that column, also through an indices mapping)."""
    return dataset.select_columns(["split"]).with_format("arrow")[:].column("split")


def split_counts(dataset: Dataset) -> dict[str, int]:
    """Clips per split name of a shard dataset."""
    return {c["values"]: int(c["counts"]) for c in pc.value_counts(split_column(dataset)).to_pylist()}


__all__ = ["FEATURE_DTYPES", "SEGMENT_LABEL_COLUMNS", "STRING_COLUMNS", "RecordValidator", "shard_features",
           "write_shards"]  # array_feature, describe_feature, split_column, split_counts: for hf_hdcid.data.loading
