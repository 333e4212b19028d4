"""What a shard folder's feature columns need (:class:`FeatureSchema`), and its manifest ``hdcid_shards.json``.

A :class:`FeatureSchema` is the part of an ``HDCIDConfig`` that fixes the on-disk columns: which
modalities are stored and the per-clip shape of each (``T = num_frames``)::

    audio  [T, audio_feature_dim]                                   float32
    video  [T, video_spatial_size, video_spatial_size, video_feature_dim]  float16
    text   [T, text_feature_dim]                                    float16

It is not a model config: one modality is a valid schema (a UCF<->VGGSound side stores only audio or
only video), while a model needs two or three.

The manifest, written next to the ``datasets`` files by :func:`write_manifest`, is one JSON object:

================  ==========================================================================
key               value
================  ==========================================================================
``format``        ``"hf-hdcid feature shards"``
``version``       ``1``
``num_rows``      number of clips
``splits``        ``{split: number of clips}``, in row order
``columns``       ``{column: datasets feature, described}`` (e.g. ``"Value('string')"``)
``config``        the schema: ``modalities`` and the five sizes (:meth:`FeatureSchema.to_manifest`)
``label_width``   width of ``audio_labels`` / ``video_labels``, or null
``files``         ``[{"filename": "data-00000-of-00002.arrow", "num_bytes": ...}, ...]``
``source``        what the records came from, as the writer gave it (``write_shards(source=...)``), or null
``segmentation``  ``{"num_frames": F, "frame_size": [H, W]}`` of the frame / mask columns
                  (:mod:`hf_hdcid.data.segmentation`), or null
================  ==========================================================================
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..modeling import MODALITIES

MANIFEST_NAME = "hdcid_shards.json"
MANIFEST_FORMAT = "hf-hdcid feature shards"
MANIFEST_VERSION = 1

SIZE_FIELDS = ("num_frames", "audio_feature_dim", "video_feature_dim", "video_spatial_size", "text_feature_dim")


def _check_modalities(value) -> tuple[str, ...]:
    """``value`` as a tuple in canonical order (audio, video, text); ValueError("expected ..., got ...")."""
    expected = f"a non-empty subset of {MODALITIES} without repeats"
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"expected {expected}, got {value!r}")
    if not value or len(set(value)) != len(value) or any(m not in MODALITIES for m in value):
        raise ValueError(f"expected {expected}, got {list(value)!r}")
    return tuple(m for m in MODALITIES if m in value)


def _check_size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class FeatureSchema:
    """The modalities a shard folder stores and the per-clip feature sizes (validated on creation).

    ``modalities`` is kept in canonical order (audio, video, text), whatever the order given.
    """

    modalities: tuple[str, ...]
    num_frames: int
    audio_feature_dim: int
    video_feature_dim: int
    video_spatial_size: int
    text_feature_dim: int

    def __post_init__(self):
        for name, check in (("modalities", _check_modalities), *((n, _check_size) for n in SIZE_FIELDS)):
            try:
                object.__setattr__(self, name, check(getattr(self, name)))
            except ValueError as err:
                raise ValueError(f"FeatureSchema.{name}: {err}") from None

    @classmethod
    def from_config(cls, config, modalities=None) -> FeatureSchema:
        """The schema of ``config`` (an ``HDCIDConfig``); ``modalities`` replaces ``config.modalities``."""
        missing = [n for n in ("modalities", *SIZE_FIELDS) if not hasattr(config, n)]
        if missing:
            raise ValueError(f"config: expected an HDCIDConfig (or a FeatureSchema), got a "
                             f"{type(config).__name__} without {missing}")
        chosen = config.modalities if modalities is None else modalities
        return cls(chosen, *(getattr(config, n) for n in SIZE_FIELDS))

    @classmethod
    def from_manifest(cls, manifest: dict, where: Any = MANIFEST_NAME) -> FeatureSchema:
        """The schema stored in a manifest (its ``config`` object); ValueError naming ``where`` (the
        file), the field, what was expected and what it holds."""
        if not isinstance(manifest, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(manifest).__name__}")
        stored = manifest.get("config")
        if not isinstance(stored, dict):
            got = "nothing" if stored is None else f"{type(stored).__name__} {stored!r}"
            raise ValueError(f"{where}: field 'config': expected an object with modalities and "
                             f"{', '.join(SIZE_FIELDS)}, got {got}; rewrite the shards with write_shards")
        values = {}
        for name, check in (("modalities", _check_modalities), *((n, _check_size) for n in SIZE_FIELDS)):
            if name not in stored:
                raise ValueError(f"{where}: field 'config.{name}': missing (fields present: {sorted(stored)}); "
                                 "rewrite the shards with write_shards")
            try:
                values[name] = check(stored[name])
            except ValueError as err:
                raise ValueError(f"{where}: field 'config.{name}': {err}") from None
        return cls(**values)

    def shape(self, modality: str) -> tuple[int, ...]:
        """Per-clip shape of ``modality``'s features (after the batch axis)."""
        if modality not in self.modalities:
            raise ValueError(f"modality {modality!r}: expected one of the schema's modalities {list(self.modalities)}")
        t = self.num_frames
        if modality == "audio":
            return (t, self.audio_feature_dim)  # [T, D_a]
        if modality == "video":
            return (t, self.video_spatial_size, self.video_spatial_size, self.video_feature_dim)  # [T, S, S, D_v]
        return (t, self.text_feature_dim)  # [T, D_t]

    def to_manifest(self) -> dict:
        """The manifest entries of this schema: ``{"config": {...}}`` (JSON-ready; read back by
        :meth:`from_manifest`)."""
        return {"config": {"modalities": list(self.modalities), **{n: getattr(self, n) for n in SIZE_FIELDS}}}

    def config_overrides(self) -> dict:
        """The ``HDCIDConfig`` fields a model trained on these shards takes from them: T and the
        feature sizes (not the modalities: the model chooses those among the stored ones)."""
        return {n: getattr(self, n) for n in SIZE_FIELDS}


def as_schema(config_or_schema) -> FeatureSchema:
    """``config_or_schema`` itself if a :class:`FeatureSchema`, else ``FeatureSchema.from_config`` of it."""
    if isinstance(config_or_schema, FeatureSchema):
        return config_or_schema
    return FeatureSchema.from_config(config_or_schema)


# ============================================================================================ manifest
def _check_json(value, where: str) -> None:
    """ValueError naming the first part of ``value`` that JSON would not store as it is."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: expected a finite number (JSON has no NaN/inf), got {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: expected string keys (JSON objects), got key {key!r}")
            _check_json(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"{where}: expected a JSON value (str, int, float, bool, None, list or dict), "
                     f"got {type(value).__name__} {value!r}")


def check_source(source) -> None:
    """ValueError naming ``source`` (and the bad part of it) unless it is None or a dict of JSON values
    (str keys; str, int, finite float, bool, None, lists/tuples and dicts of those; tuples are stored as lists)."""
    if source is not None and not isinstance(source, dict):
        raise ValueError(f"source: expected None or a JSON-serialisable dict, got {type(source).__name__}")
    _check_json(source, "source")


def write_manifest(data_dir: Path, schema: FeatureSchema, columns: dict[str, str], split_counts: dict,
                   label_width: int | None, source: dict | None = None, segmentation=None) -> None:
    """Write ``hdcid_shards.json`` into the folder ``data_dir`` that ``Dataset.save_to_disk`` just wrote.

    columns: ``{column: description}`` of the stored features. segmentation: a
    :class:`~hf_hdcid.data.segmentation.SegmentationSpec` or None. The file list is the folder's
    ``data-*.arrow`` files (the names ``save_to_disk`` gives its shards), with their sizes.
    """
    files = [{"filename": file.name, "num_bytes": os.path.getsize(file)}
             for file in sorted(Path(data_dir).glob("data-*.arrow"))]
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "num_rows": sum(split_counts.values()), "splits": split_counts,
        "columns": dict(columns),
        **schema.to_manifest(),
        "label_width": label_width, "files": files, "source": source,
        "segmentation": None if segmentation is None else segmentation.to_manifest(),
    }
    (Path(data_dir) / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(path: Path) -> dict:
    """``hdcid_shards.json`` of the shard folder ``path``; ValueError naming the file if it is not a
    JSON object."""
    file = Path(path) / MANIFEST_NAME
    try:
        manifest = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file}: not valid JSON ({err}); rewrite the shards with write_shards") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(manifest).__name__}")
    return manifest

__all__ = [
    "MANIFEST_FORMAT", "MANIFEST_NAME", "MANIFEST_VERSION", "FeatureSchema", "as_schema", "check_source",
    "read_manifest", "write_manifest",
]
