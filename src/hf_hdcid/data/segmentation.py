"""Segmentation columns of a shard folder: frames, ground-truth masks and which masks are annotated.

A segmentation shard folder (AVSBench-S4, the synthetic segmentation benchmark) is an ordinary shard
folder whose :class:`~hf_hdcid.data.schema.FeatureSchema` holds only the QUERY modalities (a subset of
audio and text; no video features: the segmenter sees the pixels), plus three columns. With ``F`` frames
of ``H x W`` pixels per clip (:class:`SegmentationSpec`, the manifest's ``segmentation`` entry):

==============  =====================================  ======================================================
column          stored as                              holds
==============  =====================================  ======================================================
``frames``      ``Value("binary")``, F*H*W*3 bytes     RGB frames uint8 ``[F, H, W, 3]`` (row-major bytes)
``masks``       ``Value("binary")``, ceil(F*H*W/8) B   0/1 masks ``[F, H, W]`` of the sounding object, bit-
                                                       packed (``np.packbits`` of the row-major values)
``mask_valid``  ``Sequence(Value("int8"), length=F)``  1 where frame f's mask is annotated (AVSBench-S4
                                                       train: frame 0 only; the others are stored as 0)
==============  =====================================  ======================================================

Why bytes and not ``Array4D((F, H, W, 3), "uint8")``: ``datasets`` stores an ArrayND as nested
variable-size lists with a 4-byte offset per innermost list, i.e. per 3-byte pixel: 5 x 32 x 32 frames
took 36,504 B per clip instead of 15,360 (2.4x; 2.3x at 224 x 224). Raw bytes cost the pixels plus
one offset per clip; the collator reads them without copying (a view of the Arrow buffer) and without
decoding (no PNG). Masks are 0/1, so 1 bit per pixel (8x smaller than uint8). Bytes per clip, pixels:
``F*H*W*3 + ceil(F*H*W/8) + F``: 784,005 B at AVSBench's 5 x 224 x 224 (about 3.9 GB for the 4,932
S4 clips), 16,005 B at the synthetic benchmark's 5 x 32 x 32; plus the query features (audio ``T*128*4``
B, text ``T*Dt*2`` B).

The manifest gains ``"segmentation": {"num_frames": F, "frame_size": [H, W]}`` (null for other shards).
:class:`~hf_hdcid.data.batches.HDCIDCollator` returns ``frames`` float32 ``[B, F, 3, H, W]`` in [0, 1]
(divided by 255, channels first, NOT mean/std-normalised: the segmentation model does that), ``masks``
float32 ``[B, F, H, W]`` (0/1) and ``mask_valid`` bool ``[B, F]``; :func:`decode_frames` /
:func:`decode_masks` give one row's arrays.

:func:`seconds_to_steps` maps per-second audio features (AVSBench: 5 one-second VGGish vectors) to the
model's ``T`` steps by nearest neighbour in time (each second repeated ``T / 5`` times when ``T`` is a
multiple of 5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

SEGMENTATION_COLUMNS = ("frames", "masks", "mask_valid")
BINARY_SEGMENTATION_COLUMNS = ("frames", "masks")  # stored as bytes (module docstring)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"segmentation.{name}: expected a positive int, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SegmentationSpec:
    """Frames per clip and their size (the shapes of the segmentation columns)."""

    num_frames: int
    height: int
    width: int

    def __post_init__(self):
        for name in ("num_frames", "height", "width"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))

    @classmethod
    def of(cls, value) -> SegmentationSpec | None:
        """``value`` as a spec: None, a spec, a manifest entry ``{"num_frames", "frame_size": [H, W]}``
        or a tuple ``(F, H, W)``."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_manifest(value)
        if isinstance(value, (tuple, list)) and len(value) == 3:
            return cls(*value)
        raise ValueError(f"segmentation: expected None, a SegmentationSpec, (F, H, W) or "
                         f"{{'num_frames': F, 'frame_size': [H, W]}}, got {value!r}")

    @classmethod
    def from_manifest(cls, entry: Any, where: Any = "manifest") -> SegmentationSpec | None:
        if entry is None:
            return None
        size = entry.get("frame_size") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(size, (list, tuple)) or len(size) != 2:
            raise ValueError(f"{where}: field 'segmentation': expected null or {{'num_frames': F, 'frame_size': "
                             f"[H, W]}}, got {entry!r}")
        return cls(entry.get("num_frames"), size[0], size[1])

    def to_manifest(self) -> dict:
        return {"num_frames": self.num_frames, "frame_size": [self.height, self.width]}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        f, h, w = self.num_frames, self.height, self.width
        return {"frames": (f, h, w, 3), "masks": (f, h, w), "mask_valid": (f,)}

    def stored_bytes(self) -> dict[str, int]:
        """Bytes per clip of each column's values (frames: raw uint8; masks: bit-packed; mask_valid: int8)."""
        pixels = self.num_frames * self.height * self.width
        return {"frames": 3 * pixels, "masks": (pixels + 7) // 8, "mask_valid": self.num_frames}

    def bytes_per_clip(self) -> int:
        """Stored bytes of the three columns for one clip (values; Arrow adds ~8 B of offsets per column)."""
        return sum(self.stored_bytes().values())


def segmentation_features(spec: SegmentationSpec) -> dict:
    """The ``datasets`` features of the three columns (table of the module docstring)."""
    from datasets import Sequence, Value

    return {"frames": Value("binary"), "masks": Value("binary"),
            "mask_valid": Sequence(Value("int8"), length=spec.num_frames)}


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def check_segmentation_value(column: str, value, spec: SegmentationSpec) -> tuple[Any, str | None]:
    """(the stored array, None) or (None, what is wrong) for one record's ``column`` value.

    frames: exactly uint8 ``[F, H, W, 3]`` (a float frame is refused: 0..1 floats would silently store
    as black), stored as its bytes; masks (stored bit-packed): ``[F, H, W]`` of only 0/1 (any integer,
    bool or float dtype holding exactly 0/1);
    mask_valid: ``[F]`` of only 0/1, at least one 1.
    """
    shape = spec.shapes()[column]
    if value is None:
        return None, f"missing: expected an array of shape {_fmt(shape)}"
    array = _as_array(value)
    if array.shape != shape:
        return None, f"expected shape {_fmt(shape)}, got {_fmt(array.shape)}"
    if column == "frames":
        if array.dtype != np.uint8:
            return None, f"expected dtype uint8 (RGB 0..255), got {array.dtype}"
        return np.ascontiguousarray(array).tobytes(), None
    if array.dtype.kind not in "biuf":
        return None, f"expected 0/1 values, got dtype {array.dtype}"
    binary = (array == 0) | (array == 1)
    if not binary.all():
        bad = np.unique(array[~binary])[:5].tolist()
        return None, f"expected only 0/1 values, got {bad}"
    if column == "mask_valid":
        if not array.any():
            return None, "expected at least one annotated frame (a 1), got all 0"
        return array.astype(np.int8), None
    return np.packbits(array.astype(bool).reshape(-1)).tobytes(), None  # masks: 1 bit per pixel


def _byte_rows(value, nbytes: int, name: str) -> np.ndarray:
    """[B, nbytes] uint8 of a batch of binary cells (an [B, nbytes] array already, or B bytes objects)."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 2:
        rows = value
    else:
        rows = np.stack([np.frombuffer(v if isinstance(v, (bytes, bytearray, memoryview)) else bytes(v), np.uint8)
                         for v in value]) if len(value) else np.zeros((0, nbytes), np.uint8)
    if rows.shape[1] != nbytes:
        raise ValueError(f"column {name!r}: expected {nbytes} bytes per clip (manifest 'segmentation'), "
                         f"got {rows.shape[1]}")
    return rows


def decode_frames(cell, spec: SegmentationSpec) -> np.ndarray:
    """One stored ``frames`` cell as uint8 [F, H, W, 3]."""
    return _byte_rows([cell], spec.stored_bytes()["frames"], "frames")[0].reshape(spec.shapes()["frames"])


def decode_masks(cell, spec: SegmentationSpec) -> np.ndarray:
    """One stored ``masks`` cell as uint8 0/1 [F, H, W]."""
    shape = spec.shapes()["masks"]
    bits = _byte_rows([cell], spec.stored_bytes()["masks"], "masks")[0]
    return np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape)


def collate_segmentation(name: str, value, spec: SegmentationSpec | None) -> torch.Tensor:
    """One collated segmentation column: frames float32 [B, F, 3, H, W] in [0, 1], masks float32
    [B, F, H, W], mask_valid bool [B, F]."""
    from .batches import _as_tensor

    if name == "mask_valid":
        return _as_tensor(value).to(torch.bool)
    if spec is None:
        raise ValueError(f"column {name!r}: expected a collator with the shard folder's segmentation entry "
                         "(HDCIDCollator(segmentation=...), as load_shards gives), got none")
    rows = _byte_rows(value, spec.stored_bytes()[name], name)  # [B, nbytes], possibly a view of Arrow memory
    if name == "frames":
        frames = torch.from_numpy(rows.reshape(-1, *spec.shapes()["frames"]).copy())  # [B, F, H, W, 3] uint8
        return frames.permute(0, 1, 4, 2, 3).to(torch.float32).div_(255.0)  # [B, F, 3, H, W]
    shape = spec.shapes()["masks"]
    bits = np.unpackbits(rows, axis=1, count=int(np.prod(shape)))  # [B, F*H*W]
    return torch.from_numpy(bits.reshape(-1, *shape)).to(torch.float32)


def seconds_to_steps(per_second: np.ndarray, num_steps: int) -> np.ndarray:
    """``per_second`` [S, D] at ``num_steps`` time steps [T, D] by nearest neighbour in time.

    Step t covers ``[t, t + 1) * S / T`` seconds and takes the second under its centre: for T a
    multiple of S every second is repeated T / S times (S = 5, T = 10: 0 0 1 1 2 2 3 3 4 4).
    """
    per_second = np.asarray(per_second)
    seconds = per_second.shape[0]
    index = np.floor((np.arange(num_steps) + 0.5) * seconds / num_steps).astype(np.int64)  # [T]
    return per_second[np.minimum(index, seconds - 1)]


def load_segmentation_shards(path: str | os.PathLike, config=None, split: str | None = None,
                             dtype: torch.dtype = torch.float32):
    """:func:`~hf_hdcid.data.loading.load_shards` of a segmentation shard folder, checked against an
    ``HDCIDConfig`` (or FeatureSchema) ``config`` on its query modalities only.

    A model config names video among its modalities; the shards have none (the frames replace it), so
    the schema checked is ``config``'s restricted to the query modalities the folder stores (audio
    and/or text): T and their widths must match. ValueError if ``path`` has no segmentation columns.
    """
    from pathlib import Path

    from .loading import load_shards
    from .schema import MANIFEST_NAME, FeatureSchema, read_manifest

    path = Path(path)
    if not (path / MANIFEST_NAME).is_file():
        raise FileNotFoundError(f"{path}: not a shard folder (no {MANIFEST_NAME})")
    manifest = read_manifest(path)
    if SegmentationSpec.from_manifest(manifest.get("segmentation"), path / MANIFEST_NAME) is None:
        raise ValueError(f"{path / MANIFEST_NAME}: field 'segmentation': expected the frame/mask entry of a "
                         "segmentation shard folder (convert-features avss4, make-synthetic --segmentation), got null")
    schema = None
    if config is not None:
        stored = FeatureSchema.from_manifest(manifest, path / MANIFEST_NAME)
        wanted = [m for m in config.modalities if m in stored.modalities and m != "video"]
        if not wanted:
            raise ValueError(f"{path}: config.modalities {list(config.modalities)}: expected at least one query "
                             f"modality the folder stores ({list(stored.modalities)})")
        schema = FeatureSchema.from_config(config, wanted)
    return load_shards(path, schema, split=split, dtype=dtype)


__all__ = ["BINARY_SEGMENTATION_COLUMNS", "SEGMENTATION_COLUMNS", "SegmentationSpec", "check_segmentation_value",
           "collate_segmentation", "decode_frames", "decode_masks", "load_segmentation_shards", "seconds_to_steps",
           "segmentation_features"]
