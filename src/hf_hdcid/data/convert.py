"""Convert the original feature layouts (VGGSound-AVEL, AVE, AVVP, AVE->AVVP, UCF101<->VGGSound) to shards.

The authors' code reads pre-extracted VGGish audio / VGG19 video features from four layouts
(reference §1.3, §1.4); each has a record generator here that yields the dicts
:func:`~hf_hdcid.data.shards.write_shards` takes, and :func:`convert_features` is the single entry
point that picks the generator, the shard schema and writes the folder:

==================  ======================================================  ==========================
layout              source                                                  generator
==================  ======================================================  ==========================
``"vggsound"``      csv (category, video_id, split) + one zip per clip      :func:`vggsound_records`
``"ave"``           h5 files (features, labels, ``{split}_order.h5``)       :func:`ave_records`
``"avvp"``          tab csv (filename, onset, offset, event_labels) + zips  :func:`avvp_records`
``"ucf_vggsound"``  csv (video_id, category) + one zip per clip             :func:`ucf_vggsound_records`
==================  ======================================================  ==========================

AVE->AVVP is ``"ave"`` with ``labels_path`` / ``order_path`` pointing at ``ave_avvp_labels.h5`` /
``ave_avvp_order.h5`` (training side) and ``"avvp"`` with the 12-category list (test side).

A feature zip holds exactly one pickled numpy array. :func:`load_pickled_array` unpickles it with a
restricted unpickler that can only rebuild plain numpy arrays: a pickle can run arbitrary code, and
these zips come from a third-party download.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import pickle
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..modeling import HDCIDConfig
from .shards import SEGMENT_LABEL_COLUMNS, write_shards

try:
    from huggingface_hub.utils import tqdm
except ImportError:  # pragma: no cover - huggingface_hub is a dependency of transformers
    from tqdm.auto import tqdm

LAYOUTS = ("vggsound", "vggsound81k", "ave", "avvp", "ucf_vggsound")
ORIGINAL_NUM_FRAMES = 10  # one-second segments per clip in every original layout


# ============================================================================================ pickles
def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals a pickle of a plain numpy array or numpy scalar refers to (numpy 1.x and 2.x names)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    import _codecs

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _codecs.encode}  # protocols 0-2 encode raw bytes through it
    for package in ("numpy.core", "numpy._core"):  # pickles written by numpy 1.x / 2.x
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):  # protocol 5
            allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


_ALLOWED_GLOBALS = _numpy_globals()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild plain numpy arrays."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled by Python 2
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ValueError(f"{self.source}: refusing to unpickle global {module}.{name}: only plain numpy "
                             "arrays are allowed in a feature zip") from None


def load_pickled_array(zip_path: str | os.PathLike) -> np.ndarray:
    """The numpy array pickled in ``zip_path``, a zip with exactly one member (the original ``*.pkl``).

    Only plain numpy arrays can be rebuilt: any other global in the pickle (a class, a function such
    as ``os.system``) raises ValueError naming the zip and the global, before anything is called. The
    result must be an ``np.ndarray`` of a float or integer dtype.
    """
    zip_path = Path(zip_path)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                raise ValueError(f"{zip_path}: expected exactly one pickled member, got "
                                 f"{[m.filename for m in members]}")
            payload = archive.read(members[0])
    except zipfile.BadZipFile as error:
        raise ValueError(f"{zip_path}: not a zip file: {error}") from None
    source = f"{zip_path} (member {members[0].filename!r})"
    try:
        array = _NumpyOnlyUnpickler(io.BytesIO(payload), source).load()
    except ValueError:
        raise
    except Exception as error:  # truncated or corrupt pickle
        raise ValueError(f"{source}: cannot unpickle: {type(error).__name__}: {error}") from None
    if type(array) is not np.ndarray:
        raise ValueError(f"{source}: expected a numpy ndarray, got {type(array).__name__}")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{source}: expected a float or integer array, got dtype {array.dtype}")
    return array


def pad_or_truncate(array: np.ndarray, num_frames: int) -> np.ndarray:
    """The first ``num_frames`` rows of ``array``, or all of them followed by copies of the last row.

    What the original loaders do to audio (and to UCF101 video): a clip shorter than T repeats its last
    segment, a longer one is cut.
    """
    if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 1:
        raise ValueError(f"num_frames: expected a positive int, got {num_frames!r}")
    array = np.asarray(array)
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"expected an array with at least one row, got shape {list(array.shape)}")
    if array.shape[0] >= num_frames:
        return array[:num_frames]
    repeats = np.repeat(array[-1:], num_frames - array.shape[0], axis=0)
    return np.concatenate([array, repeats], axis=0)


# ============================================================================================ helpers
def read_categories(path: str | os.PathLike) -> dict[str, int]:
    """Category name -> class id, the id being the (0-based) line of the name in ``path``."""
    names = [line.strip() for line in Path(path).read_text().splitlines()]
    while names and not names[-1]:  # a trailing newline is not a category
        names.pop()
    classes: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name:
            raise ValueError(f"{path}: line {index + 1} is empty: expected one category name per line")
        if name in classes:
            raise ValueError(f"{path}: category {name!r} appears on lines {classes[name] + 1} and {index + 1}")
        classes[name] = index
    if not classes:
        raise ValueError(f"{path}: no categories")
    return classes


def _read_rows(path: str | os.PathLike, columns: Iterable[str], delimiter: str = ",") -> Iterator[tuple[int, dict]]:
    """(line number, row dict) of a csv with a header holding at least ``columns``."""
    with open(path, newline="") as file:
        reader = csv.DictReader(file, delimiter=delimiter)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}: expected {list(columns)}, "
                             f"got header {reader.fieldnames}")
        for row in reader:
            yield reader.line_num, {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}


def _class_of(classes: dict[str, int], category: str, where: str) -> int:
    try:
        return classes[category]
    except KeyError:
        raise ValueError(f"{where}: unknown category {category!r} (not in the category list of "
                         f"{len(classes)} names)") from None


def _zip(directory: str | os.PathLike, name: str) -> Path:
    return Path(directory) / f"{name}.zip"


# ============================================================================================ VGGSound-AVEL
def vggsound_records(csv_path, audio_dir, video_dir, categories_path, prompts_csv=None, splits=None, *,
                     num_frames: int = ORIGINAL_NUM_FRAMES) -> Iterator[dict]:
    """Records of the VGGSound-AVEL pretraining set (reference §1.3).

    csv_path: ``vggsound-avel40k.csv``, columns ``category``, ``video_id``, ``split``.
    audio_dir / video_dir: folders of ``<video_id>.zip`` (audio ``[T', 128]``, video ``[10, 7, 7, 512]``).
    categories_path: ``VggsoundAVEL40kCategories.txt``; class id = line index -> ``label``.
    prompts_csv: ``vggsoundCategories2Prompts.csv`` (columns ``label``, ``prompt``): adds ``prompt``,
        the sentence of the clip's category (every clip of a class gets the same text).
    splits: keep only rows whose ``split`` is in it (``{"train"}`` = the 24K setting; None = all rows,
        the 40K setting, which the original always uses).

    Audio is padded (repeat the last row) / truncated to ``num_frames``; video is kept as stored, as in
    the original. No segment labels: the original pretraining never uses them.
    """
    classes = read_categories(categories_path)
    prompts = None
    if prompts_csv is not None:
        prompts = {}
        for line, row in _read_rows(prompts_csv, ("label", "prompt")):
            prompts[row["label"]] = row["prompt"]
    wanted = None if splits is None else ({splits} if isinstance(splits, str) else set(splits))
    for line, row in _read_rows(csv_path, ("category", "video_id", "split")):
        if wanted is not None and row["split"] not in wanted:
            continue
        where = f"{csv_path}, line {line}"
        record = {"clip_id": row["video_id"], "split": row["split"],
                  "label": _class_of(classes, row["category"], where),
                  "audio": pad_or_truncate(load_pickled_array(_zip(audio_dir, row["video_id"])), num_frames),
                  "video": load_pickled_array(_zip(video_dir, row["video_id"]))}
        if prompts is not None:
            if row["category"] not in prompts:
                raise ValueError(f"{prompts_csv}: no prompt for category {row['category']!r} ({where})")
            record["prompt"] = prompts[row["category"]]
        yield record


def vggsound81k_records(csv_path, audio_dir, video_dir, *, num_frames: int = ORIGINAL_NUM_FRAMES) -> Iterator[dict]:
    """Records of the 81K (and 179K) VGGSound audio-visual sets (reference §1.3): csv with a column
    ``id`` = ``<video_id>.mp4``, the same per-clip zips as :func:`vggsound_records`; no category, no
    prompt (audio-visual pretraining only): ``label`` -1, ``split`` ``"train"``."""
    for line, row in _read_rows(csv_path, ("id",)):
        video_id = row["id"][:-4] if row["id"].endswith(".mp4") else row["id"]
        if not video_id:
            raise ValueError(f"{csv_path}, line {line}: empty id")
        yield {"clip_id": video_id, "split": "train", "label": -1,
               "audio": pad_or_truncate(load_pickled_array(_zip(audio_dir, video_id)), num_frames),
               "video": load_pickled_array(_zip(video_dir, video_id))}


# ============================================================================================ AVE
def _read_h5(path: Path, key: str):
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    file = h5py.File(path, "r")
    if key not in file:
        keys = list(file.keys())
        file.close()
        raise ValueError(f"{path}: expected a dataset {key!r}, got keys {keys}")
    return file, file[key]


def _clip_class(labels: np.ndarray) -> int:
    """Most frequent non-background class of a [T, C+1] label (ties: the smallest id; none: -1)."""
    counts = labels[:, :-1].sum(axis=0)
    return int(np.argmax(counts)) if counts.max() > 0 else -1


def ave_records(root, split: str = "train", *, labels_path=None, order_path=None) -> Iterator[dict]:
    """Records of the AVE h5 layout (reference §1.4): ``root`` holds ``visual_feature.h5``,
    ``audio_feature.h5``, ``labels.h5`` (key ``avadataset``) and ``{split}_order.h5`` (key ``order``,
    row indices into the other three).

    Per-segment labels ``[T, 29]`` (one-hot, last column = background) go to both ``audio_labels`` and
    ``video_labels``: AVE events are audio-visual and the original uses the same label for either
    modality. ``label`` = the most frequent non-background class over the segments (ties: the
    smallest id; a clip without any event: -1). For AVE's one-event videos this equals the original's
    "max over time of the per-segment argmax over the 28 foreground columns".

    AVE->AVVP training side: ``labels_path`` / ``order_path`` replace ``labels.h5`` / ``{split}_order.h5``
    (``ave_avvp_labels.h5``, ``ave_avvp_order.h5``, same keys, 13 columns); the order indices are taken
    to index the feature files and the label file alike, as in AVE_dataset.py. ``clip_id`` is
    ``ave-<row index>`` (the h5 files carry no video ids). Features are taken as stored (T = 10 in AVE).
    """
    root = Path(root)
    labels_path = Path(labels_path) if labels_path is not None else root / "labels.h5"
    order_path = Path(order_path) if order_path is not None else root / f"{split}_order.h5"
    opened = []
    try:
        for path, key in ((root / "visual_feature.h5", "avadataset"), (root / "audio_feature.h5", "avadataset"),
                          (labels_path, "avadataset"), (order_path, "order")):
            opened.append((path, *_read_h5(path, key)))
        (vpath, _, visual), (apath, _, audio), (lpath, _, labels), (opath, _, order) = opened
        if labels.ndim != 3 or labels.shape[-1] < 2:
            raise ValueError(f"{lpath}: expected labels [N, T, classes + 1], got shape {list(labels.shape)}")
        rows = np.asarray(order[()]).reshape(-1)
        if rows.dtype.kind == "f" and not np.all(rows == np.round(rows)):
            raise ValueError(f"{opath}: expected integer row indices, got {rows[:5].tolist()}")
        rows = rows.astype(np.int64)
        for path, data in ((vpath, visual), (apath, audio), (lpath, labels)):
            if rows.size and (rows.min() < 0 or rows.max() >= data.shape[0]):
                raise ValueError(f"{opath}: row index out of range for {path} with {data.shape[0]} rows "
                                 f"(indices {int(rows.min())}..{int(rows.max())})")
        for row in rows.tolist():
            label = (np.asarray(labels[row]) > 0).astype(np.int8)  # [T, C+1]
            yield {"clip_id": f"ave-{row}", "split": split, "label": _clip_class(label),
                   "audio": np.asarray(audio[row]), "video": np.asarray(visual[row]),
                   "audio_labels": label, "video_labels": label}
    finally:
        for _, file, _ in opened:
            file.close()


def _ave_label_width(root, labels_path=None) -> int:
    path = Path(labels_path) if labels_path is not None else Path(root) / "labels.h5"
    file, labels = _read_h5(path, "avadataset")
    with file:
        return int(labels.shape[-1])


# ============================================================================================ AVVP
def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",")] if value else []


def _segment(value: str, where: str, column: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where}: column {column!r}: expected a number of seconds, got {value!r}") from None
    if number < 0 or number != int(number):
        raise ValueError(f"{where}: column {column!r}: expected a non-negative whole second, got {value!r}")
    return int(number)


def avvp_labels(csv_path, categories_path, *, num_frames: int = ORIGINAL_NUM_FRAMES) -> dict[str, np.ndarray]:
    """filename -> per-segment labels ``[T, C+1]`` (int8, last column = background) of an AVVP tab csv.

    As AVVP_dataset.py: background = 1 on every segment; for each event i, segments
    ``[onset_i, offset_i)`` of its class are set with logical OR and background is cleared there.
    """
    classes = read_categories(categories_path)
    background = len(classes)
    out: dict[str, np.ndarray] = {}
    for line, row in _read_rows(csv_path, ("filename", "onset", "offset", "event_labels"), delimiter="\t"):
        where = f"{csv_path}, line {line}"
        onsets, offsets, events = _list(row["onset"]), _list(row["offset"]), _list(row["event_labels"])
        if not len(onsets) == len(offsets) == len(events):
            raise ValueError(f"{where}: expected parallel lists, got {len(onsets)} onsets, {len(offsets)} offsets "
                             f"and {len(events)} event labels")
        if row["filename"] in out:
            raise ValueError(f"{where}: filename {row['filename']!r} appears twice (expected one combined row per video)")
        label = np.zeros((num_frames, background + 1), dtype=bool)
        label[:, background] = True
        for onset, offset, event in zip(onsets, offsets, events):
            mask = np.zeros(num_frames, dtype=bool)
            mask[_segment(onset, where, "onset"):_segment(offset, where, "offset")] = True
            column = _class_of(classes, event, where)
            label[:, column] |= mask
            label[:, background] &= ~mask
        out[row["filename"]] = label.astype(np.int8)
    return out


def _label_modality(csv_path) -> str:
    name = Path(csv_path).name.lower()
    found = {m for m, words in (("audio", ("audio",)), ("video", ("visual", "video"))) if any(w in name for w in words)}
    if len(found) != 1:
        raise ValueError(f"{csv_path}: cannot tell from the file name whether it holds audio or visual labels: "
                         "pass label_modality='audio' or 'video'")
    return found.pop()


def avvp_records(csv_path, audio_dir, video_dir, categories_path, split: str = "test", *,
                 label_modality: str | None = None, num_frames: int = ORIGINAL_NUM_FRAMES) -> Iterator[dict]:
    """Records of the AVVP layout (reference §1.4; also the AVE->AVVP test side with its 12 categories).

    csv_path: ``AVVP_eval_{audio,visual}_checked_combined.csv``, tab-separated, columns ``filename``,
        ``onset``, ``offset``, ``event_labels`` (comma-separated parallel lists), one row per video. The
        labels are those of ONE modality: ``label_modality`` (``"audio"`` / ``"video"``; None: read from
        the file name) and only that modality's label column is filled; the other stays all -1 (not
        annotated). A mapping ``{"audio": csv, "video": csv}`` fills both from the two files (videos in
        order of first appearance; a video missing from one file gets -1 there).
    audio_dir / video_dir: folders of ``<filename[:11]>.zip``.
    categories_path: ``AVVP_Categories.txt`` (25) or ``AVE_AVVP_Categories.txt`` (12); the label width
        is the number of categories + 1 (background, last column).

    ``clip_id`` = filename, ``label`` = -1 (AVVP is multi-label per segment). Audio is padded/truncated
    to ``num_frames``; video is kept as stored, as in the original.
    """
    if isinstance(csv_path, Mapping):
        sources = dict(csv_path)
        bad = sorted(set(sources) - set(SEGMENT_LABEL_COLUMNS))
        if bad or not sources:
            raise ValueError(f"csv_path: expected a path or a mapping with keys 'audio' / 'video', got keys {bad}")
    else:
        modality = label_modality or _label_modality(csv_path)
        if modality not in SEGMENT_LABEL_COLUMNS:
            raise ValueError(f"label_modality: expected 'audio' or 'video', got {modality!r}")
        sources = {modality: csv_path}
    labels = {m: avvp_labels(path, categories_path, num_frames=num_frames) for m, path in sources.items()}
    filenames = list(dict.fromkeys(name for per_file in labels.values() for name in per_file))
    for filename in filenames:
        record = {"clip_id": filename, "split": split, "label": -1,
                  "audio": pad_or_truncate(load_pickled_array(_zip(audio_dir, filename[:11])), num_frames),
                  "video": load_pickled_array(_zip(video_dir, filename[:11]))}
        for modality, per_file in labels.items():
            if filename in per_file:
                record[SEGMENT_LABEL_COLUMNS[modality]] = per_file[filename]
        yield record


# ============================================================================================ UCF101 <-> VGGSound
def ucf_vggsound_records(csv_path, feature_dir, categories_path, modality: str, split: str = "train", *,
                         num_frames: int = ORIGINAL_NUM_FRAMES) -> Iterator[dict]:
    """Records of one side of UCF101<->VGGSound (reference §1.4): ``ucf2vggsound.csv`` with UCF101 video
    (``modality="video"``) or ``vggsound2ucf.csv`` with VGGSound audio (``modality="audio"``).

    csv_path: columns ``video_id``, ``category``. feature_dir: folder of ``<video_id>.zip``.
    categories_path: the 16-line list whose names the csv uses (``UCF101sameVGGSound.txt`` or
    ``VGGSoundsameUCF101.txt``; the two are matched by line, so class ids agree across the sides).

    Only ``modality`` is stored (the two sides are different clips), padded/truncated to ``num_frames``
    as in the original. ``label`` = class id; ``{modality}_labels`` ``[T, 17]`` marks the class on every
    segment with the background column (last) 0, as the original label tensor.
    """
    if modality not in SEGMENT_LABEL_COLUMNS:
        raise ValueError(f"modality: expected 'audio' or 'video', got {modality!r}")
    classes = read_categories(categories_path)
    for line, row in _read_rows(csv_path, ("video_id", "category")):
        label = _class_of(classes, row["category"], f"{csv_path}, line {line}")
        segments = np.zeros((num_frames, len(classes) + 1), dtype=np.int8)
        segments[:, label] = 1
        yield {"clip_id": row["video_id"], "split": split, "label": label,
               modality: pad_or_truncate(load_pickled_array(_zip(feature_dir, row["video_id"])), num_frames),
               SEGMENT_LABEL_COLUMNS[modality]: segments}


# ============================================================================================ entry point
def _shard_config(config: HDCIDConfig, modalities: list[str]):
    """The :class:`~hf_hdcid.data.schema.FeatureSchema` of the modalities a layout provides, at
    ``config``'s sizes (a UCF<->VGG side has a single modality: a valid schema, not a model config)."""
    from .schema import FeatureSchema

    return FeatureSchema.from_config(config, modalities)


def _check_path_keys(layout: str, paths: dict) -> None:
    """ValueError naming the unknown and the missing keys of ``layout`` (its records function's arguments)."""
    import inspect

    function = {"vggsound": vggsound_records, "vggsound81k": vggsound81k_records, "ave": ave_records,
                "avvp": avvp_records, "ucf_vggsound": ucf_vggsound_records}[layout]
    params = {n: p for n, p in inspect.signature(function).parameters.items() if n != "num_frames"}
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty]
    unknown = sorted(set(paths) - set(params))
    missing = [n for n in required if n not in paths]
    if unknown or missing:
        raise ValueError(f"--path (layout {layout!r}): expected keys {', '.join(required)}"
                         + (f" (optional: {', '.join(n for n in params if n not in required)})"
                            if len(required) < len(params) else "")
                         + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                         + (f"; missing: {', '.join(missing)}" if missing else ""))


def convert_features(layout: str, out_dir: str | os.PathLike, config: HDCIDConfig, *, num_shards: int | None = None,
                     overwrite: bool = False, progress: bool = True, **paths) -> Path:
    """Convert one original feature layout to a shard folder (see :mod:`hf_hdcid.data.shards`).

    layout and its keyword arguments (``paths``):

    * ``"vggsound"``: ``csv_path``, ``audio_dir``, ``video_dir``, ``categories_path``, optional
      ``prompts_csv`` and ``splits`` (e.g. ``{"train"}`` for 24K; None = 40K). See :func:`vggsound_records`.
    * ``"vggsound81k"``: ``csv_path`` (column ``id`` = ``<video_id>.mp4``), ``audio_dir``, ``video_dir``;
      audio-visual only, unlabelled. See :func:`vggsound81k_records`.
    * ``"ave"``: ``root``, ``split`` (default ``"train"``), optional ``labels_path`` / ``order_path``
      (AVE->AVVP). See :func:`ave_records`.
    * ``"avvp"``: ``csv_path`` (or ``{"audio": csv, "video": csv}``), ``audio_dir``, ``video_dir``,
      ``categories_path``, ``split`` (default ``"test"``), optional ``label_modality``. See :func:`avvp_records`.
    * ``"ucf_vggsound"``: ``csv_path``, ``feature_dir``, ``categories_path``, ``modality``
      (``"video"`` for ucf2vggsound.csv, ``"audio"`` for vggsound2ucf.csv), ``split`` (default
      ``"train"``). See :func:`ucf_vggsound_records`.

    ``config`` gives T (``num_frames``: the pad/truncate length) and the feature shapes. The shard
    folder stores the modalities of ``config.modalities`` that the layout has: audio and video, plus a
    ``prompt`` column (text features to be computed later) for VGGSound when ``prompts_csv`` is given
    and ``"text"`` is in ``config.modalities``; a UCF<->VGG side stores its single modality (load it
    with ``load_shards(path)`` or a config of that modality). Segment labels (``label_width`` = classes
    + background) are stored for AVE, AVVP and UCF<->VGG. ``num_shards`` and ``overwrite`` go to
    :func:`write_shards`; ``progress`` shows a progress bar. Returns the absolute shard folder path.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {list(LAYOUTS)}, got {layout!r}")
    _check_path_keys(layout, paths)
    t = config.num_frames
    label_width = num_classes = None
    available = ["audio", "video"]
    if layout == "vggsound":
        records = vggsound_records(num_frames=t, **paths)
        num_classes = len(read_categories(paths["categories_path"]))
        if paths.get("prompts_csv") is not None:
            available.append("text")
    elif layout == "vggsound81k":
        records = vggsound81k_records(num_frames=t, **paths)
    elif layout == "ave":
        records = ave_records(**paths)
        label_width = _ave_label_width(paths["root"], paths.get("labels_path"))
        num_classes = label_width - 1
    elif layout == "avvp":
        records = avvp_records(num_frames=t, **paths)
        label_width = len(read_categories(paths["categories_path"])) + 1
    else:
        records = ucf_vggsound_records(num_frames=t, **paths)
        num_classes = len(read_categories(paths["categories_path"]))
        label_width = num_classes + 1
        available = [paths["modality"]]
    modalities = [m for m in config.modalities if m in available]
    if not modalities:
        raise ValueError(f"layout {layout!r} provides {available}, none of config.modalities {config.modalities}")
    keep = {"clip_id", "split", "label", *modalities, *(SEGMENT_LABEL_COLUMNS[m] for m in modalities
                                                        if m in SEGMENT_LABEL_COLUMNS and label_width)}
    if "text" in modalities:
        keep = (keep - {"text"}) | {"prompt"}

    def selected():
        for record in tqdm(records, desc=f"Converting {layout}", unit="clip", disable=not progress):
            yield {k: v for k, v in record.items() if k in keep}

    return write_shards(selected, out_dir, _shard_config(config, modalities), num_shards, with_text_features=False,
                        with_prompt="text" in modalities, label_width=label_width, num_classes=num_classes,
                        overwrite=overwrite)


__all__ = [
    "LAYOUTS", "ave_records", "avvp_labels", "avvp_records", "convert_features", "load_pickled_array",
    "pad_or_truncate", "read_categories", "ucf_vggsound_records", "vggsound_records", "vggsound81k_records",
]
