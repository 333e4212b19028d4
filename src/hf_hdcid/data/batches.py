"""Batches of feature shards: :class:`HDCIDCollator`, the shuffled-read view, DataLoaders and per-process parts.

Multi-process training: either pass a DataLoader over the whole dataset to ``accelerator.prepare``
(accelerate splits it), or split it yourself with :func:`shard_for_process` and do NOT pass that
DataLoader to ``prepare`` too: the two splits compound and every rank silently sees 1/world_size^2 of
the data (measured: 500 of 1,000 samples per rank with world 2).

Read speed at the paper's dimensions (2,000 clips, warm page cache, batches of 32 collated to
float32): see ``benchmarks/bench_shards.py`` and BENCHMARKS.md.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, IterableDataset
from datasets.distributed import split_dataset_by_node

from ..modeling import MODALITIES, HDCIDConfig
from .schema import FeatureSchema
from .segmentation import SEGMENTATION_COLUMNS, SegmentationSpec, collate_segmentation
from .writing import STRING_COLUMNS


def _chunk_to_numpy(chunk: pa.Array) -> np.ndarray:
    if pa.types.is_binary(chunk.type) and len(chunk) and chunk.null_count == 0:
        # frames / masks: equal-length byte strings -> one [n, nbytes] uint8 view of the Arrow buffer
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[chunk.offset:chunk.offset + len(chunk) + 1]
        lengths = np.diff(offsets)
        if np.all(lengths == lengths[0]):
            data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
            return data.reshape(len(chunk), int(lengths[0]))
    if pa.types.is_list(chunk.type) or pa.types.is_fixed_size_list(chunk.type):  # mask_valid: rows of F values
        if len(chunk) == 0:
            return np.zeros((0, 0), dtype=chunk.type.value_type.to_pandas_dtype())
        return chunk.flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), -1)  # [n, F]
    return chunk.to_numpy(zero_copy_only=False)


def _arrow_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    chunks = [_chunk_to_numpy(chunk) for chunk in column.chunks]
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _as_tensor(value, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` (a tensor, an array or a list of rows) as one tensor, cast to ``dtype`` if given; never
    a view of read-only (memory-mapped) data."""
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], torch.Tensor):
            value = torch.stack(list(value))
        elif value and isinstance(value[0], np.ndarray):
            value = np.stack(value)
    if isinstance(value, torch.Tensor):
        return value if dtype is None else value.to(dtype)
    array = np.asarray(value)
    if array.flags.writeable:
        tensor = torch.from_numpy(array)
        return tensor if dtype is None else tensor.to(dtype)
    with warnings.catch_warnings():  # memory-mapped Arrow data: torch warns on read-only buffers
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(array)
    if dtype is not None and tensor.dtype != dtype:
        return tensor.to(dtype)  # the cast is the copy
    return tensor.clone()


def _finite_rows(x: torch.Tensor) -> torch.Tensor:
    """[B] bool: whether row b of ``x`` [B, ...] holds only finite values.

    A sum is finite only if all its terms are (NaN and inf propagate), and on the CPU a row sum is
    many times faster than ``torch.isfinite`` (BENCHMARKS.md, issue 16); only rows whose sum is not
    finite (NaN/inf, or large values whose sum overflows) are then checked value by value, so the
    answer is exact.
    """
    flat = x.flatten(1)  # [B, N]
    sums = flat.sum(1) if flat.dtype in (torch.float32, torch.float64) else flat.sum(1, dtype=torch.float32)
    finite = torch.isfinite(sums)  # [B]
    if not bool(finite.all()):
        suspects = (~finite).nonzero().flatten()
        finite[suspects] = torch.isfinite(flat[suspects]).all(1)
    return finite


class HDCIDCollator:
    """Stacks a batch of shard rows into tensors and casts the features to the model dtype once.

    Accepts a dict of columns (``dataset[indices]``, ``dataset.iter(batch_size)``), a list of row dicts
    (a DataLoader over the dataset, torch or numpy values), or Arrow tables (batches of
    :class:`ArrowBatchView`; rows or ``.batch(n)`` batches of an arrow-formatted ``IterableDataset``).
    Returns ``audio`` / ``video`` / ``text`` as ``dtype`` tensors [B, T, ...] (only the modalities of
    ``config``, an ``HDCIDConfig`` or a ``FeatureSchema``, when given), ``label`` int64 [B],
    ``audio_labels`` / ``video_labels`` int8 [B, T, W] when stored, and ``clip_id`` / ``split`` /
    ``prompt`` as lists. Segmentation shards (:mod:`hf_hdcid.data.segmentation`; ``segmentation`` =
    their SegmentationSpec, which :func:`~hf_hdcid.data.loading.load_shards` takes from the manifest)
    also give ``frames``
    float32 ``[B, F, 3, H, W]`` in [0, 1] (not mean/std-normalised), ``masks`` float32 ``[B, F, H, W]``
    and ``mask_valid`` bool ``[B, F]``, whatever ``dtype``.

    With ``config.check_finite_inputs`` (default; always for a FeatureSchema) every batch's features
    are checked for NaN/inf here, on the CPU (no device sync; in the loader's workers when there are
    any): a clip written around :func:`~hf_hdcid.data.writing.write_shards`' own check is reported by
    its ``clip_id`` and ``source`` (the shard folder) at the first batch that holds it, instead of a
    non-finite loss later.
    """

    def __init__(self, config: HDCIDConfig | FeatureSchema | None = None, dtype: torch.dtype = torch.float32,
                 source: str = "shards", segmentation: SegmentationSpec | None = None):
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        self.config = config
        self.dtype = dtype
        self.source = source
        self.segmentation = SegmentationSpec.of(segmentation)  # shapes of frames / masks (None: no such columns)
        self.check_finite = config is None or bool(getattr(config, "check_finite_inputs", True))
        self.modalities = tuple(config.modalities) if config is not None else MODALITIES

    def __call__(self, batch) -> dict:
        columns = self._columns(batch)
        out: dict[str, Any] = {}
        for name, value in columns.items():
            if name in STRING_COLUMNS:
                out[name] = [str(v) for v in value]
            elif name in MODALITIES:
                if name in self.modalities:
                    out[name] = _as_tensor(value, self.dtype)  # [B, T, ...]: the one cast (and copy) per batch
            elif name in SEGMENTATION_COLUMNS:
                out[name] = collate_segmentation(name, value, self.segmentation)
            else:
                out[name] = _as_tensor(value)
        if self.check_finite:
            self._check_finite(out)
        return out

    def _check_finite(self, out: dict) -> None:
        for name in MODALITIES:
            if name not in out:
                continue
            finite = _finite_rows(out[name])  # [B]
            if not bool(finite.all()):
                bad = (~finite).nonzero().flatten().tolist()
                ids = out.get("clip_id") or [f"row {i} of the batch" for i in range(len(finite))]
                raise ValueError(f"{self.source}: {name} features of clip {ids[bad[0]]!r} hold NaN/inf"
                                 + (f" ({len(bad)} clips of this batch)" if len(bad) > 1 else "")
                                 + "; rewrite the shards with write_shards (it refuses such records) or drop the clip")

    def _columns(self, batch) -> dict:
        if isinstance(batch, pa.Table):
            if batch.num_rows == 1 and all(pa.types.is_list(f.type) for f in batch.schema):
                # IterableDataset.batch(n) in arrow format: one row whose cells hold the batch's lists
                batch = pa.table({name: batch.column(name).combine_chunks().flatten()
                                  for name in batch.column_names})
            return {name: batch.column(name).to_pylist() if name in STRING_COLUMNS else _arrow_to_numpy(batch.column(name))
                    for name in batch.column_names}
        if isinstance(batch, dict):
            return batch
        if isinstance(batch, (list, tuple)) and batch:
            if all(isinstance(row, pa.Table) for row in batch):
                return self._columns(pa.concat_tables(batch))
            if all(isinstance(row, dict) for row in batch):
                return {name: [row[name] for row in batch] for name in batch[0]}
        raise ValueError(f"expected a dict of columns, a non-empty list of row dicts or an Arrow table, "
                         f"got {type(batch).__name__}")

    def model_inputs(self, batch: dict) -> dict:
        """The modality tensors of a collated batch, as keyword arguments of the model's forward."""
        return {m: batch[m] for m in self.modalities if m in batch}


def collate(batch, dtype: torch.dtype = torch.float32) -> dict:
    """:class:`HDCIDCollator` without a config (every stored modality) as a function."""
    return HDCIDCollator(None, dtype)(batch)


class ArrowBatchView(torch.utils.data.Dataset):
    """Map-style torch Dataset over a shard dataset whose ``__getitems__`` gathers a whole batch as one
    contiguous Arrow table for :class:`HDCIDCollator`.

    A batch is ``dataset.with_format("arrow")[indices]`` (public ``datasets`` API: it follows the
    indices mapping of ``shuffle`` / ``select`` and gathers the rows as Arrow slices, decoding
    nothing), then one ``combine_chunks``. ``datasets``' torch-formatted random access
    (``dataset[list_of_indices]``) instead decodes each row separately: at the paper's dimensions this
    view reads shuffled batches collated to float32 about 1.8x faster (BENCHMARKS.md, issue 16). Works
    with any sampler and with ``accelerator.prepare`` (a DataLoader over it is an ordinary map-style
    DataLoader).
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset.with_format("arrow")  # a datasets object (pickles by file path), not a pa.Table

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices) -> pa.Table:
        n = len(self)
        rows = [int(i) for i in indices]
        if any(not -n <= i < n for i in rows):
            raise IndexError(f"indices out of range for a dataset of {n} rows: {list(indices)}")
        return self.dataset[[i % n for i in rows]].combine_chunks()  # [B] rows, one chunk per column

    def __getitem__(self, index: int) -> pa.Table:
        return self.__getitems__([index])


def make_dataloader(dataset: Dataset, collate: HDCIDCollator, batch_size: int = 32, shuffle: bool = False,
                    drop_last: bool = False, generator: torch.Generator | None = None,
                    num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader of collated batches over :class:`ArrowBatchView` (the fast path for shuffled
    map-style reading). Pass it to ``accelerator.prepare`` as usual (not after :func:`shard_for_process`)."""
    return torch.utils.data.DataLoader(ArrowBatchView(dataset), batch_size=batch_size, shuffle=shuffle,
                                       drop_last=drop_last, generator=generator, num_workers=num_workers,
                                       collate_fn=collate)


# ============================================================================================ processes
def shard_for_process(dataset: Dataset | IterableDataset, rank: int, world_size: int):
    """The part of ``dataset`` for process ``rank`` of ``world_size`` (``datasets.distributed.split_dataset_by_node``).

    IterableDataset: whole shards per process when ``n_shards`` is a multiple of ``world_size``,
    otherwise every process reads everything and keeps every ``world_size``-th example. Map-style
    Dataset: a contiguous block. Parts are disjoint and together complete, but may differ in length
    by up to one shard: stop all ranks at the shortest (or use ``accelerator.join_uneven_inputs``).

    Do NOT also pass a DataLoader over the result to ``accelerate``'s ``prepare``: accelerate splits
    again and each rank silently sees 1/world_size of its part. Either split here and keep the
    DataLoader out of ``prepare``, or do not split here and let ``prepare`` do it.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size: expected a positive int, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank: expected an int in [0, {world_size}), got {rank!r}")
    if world_size == 1:
        return dataset
    return split_dataset_by_node(dataset, rank=rank, world_size=world_size)


__all__ = ["ArrowBatchView", "HDCIDCollator", "collate", "make_dataloader", "shard_for_process"]
