"""Convert the original feature layouts (VGGSound-AVEL, AVE, AVVP, AVE->AVVP, UCF101<->VGGSound) to shards.

The authors' code reads pre-extracted VGGish audio / VGG19 video features from four layouts
(reference §1.3, §1.4); each has a record function here that yields the dicts
:func:`~hf_hdcid.data.shards.write_shards` takes, and :func:`convert_features` is the single entry
point that picks the function, the shard schema and writes the folder:

==================  ======================================================  ==========================
layout              source                                                  records
==================  ======================================================  ==========================
``"vggsound"``      csv (category, video_id, split) + one zip per clip      :func:`vggsound_records`
``"vggsound81k"``   csv (id = ``<video_id>.mp4``) + one zip per clip        :func:`vggsound81k_records`
``"ave"``           h5 files (features, labels, ``{split}_order.h5``),      :func:`ave_records`
                    optional ``Annotations.txt`` (YouTube ids, checks)
``"avvp"``          tab csv (filename, onset, offset, event_labels) + zips  :func:`avvp_records`
``"ucf_vggsound"``  csv (video_id, category) + one zip per clip             :func:`ucf_vggsound_records`
``"avss4"``         AVSBench-S4: meta csv, frame / mask PNGs, VGGish        ``convert_avs.convert_avss4``
                    features (segmentation shards)
==================  ======================================================  ==========================

AVE->AVVP is ``"ave"`` with ``labels_path`` / ``order_path`` pointing at ``ave_avvp_labels.h5`` /
``ave_avvp_order.h5`` (training side) and ``"avvp"`` with the 12-category list (test side). The label
files themselves (category lists, ``Annotations.txt``, AVVP csvs, the original's label rules) are read
by :mod:`hf_hdcid.data.layouts_labels`.

The per-clip-zip layouts list every clip first (:class:`ClipRecords`) and check that its feature
files exist before anything is converted: the missing ones are one ValueError (how many, the first
few clip ids and paths), or with ``skip_missing=True`` are left out and named in the manifest.

A feature zip holds one pickled numpy array, the ``*.pkl`` member the original reads (other members,
such as a readme, are ignored). :func:`load_pickled_array` unpickles it with a restricted unpickler
that can only rebuild plain numpy arrays: a pickle can run arbitrary code, and these zips come from a
third-party download.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..modeling import HDCIDConfig
from ..modeling.modeling_hdcid import expected_shape
from .layouts_labels import (
    ave_clip_ids,
    ave_clip_label,
    avvp_labels,
    class_of,
    read_ave_annotations,
    read_categories,
    read_rows,
)
from .schema import FeatureSchema
from .shards import SEGMENT_LABEL_COLUMNS, write_shards

try:
    from huggingface_hub.utils import tqdm
except ImportError:  # pragma: no cover - huggingface_hub is a dependency of transformers
    from tqdm.auto import tqdm

LAYOUTS = ("vggsound", "vggsound81k", "ave", "avvp", "ucf_vggsound", "avss4")
ORIGINAL_NUM_FRAMES = 10  # one-second segments per clip in every original layout
MISSING_NAMED = 3  # clips named in the "no feature file" error


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


def _is_pickle_member(name: str) -> bool:
    """A ``*.pkl`` member, not macOS metadata (``__MACOSX/``, ``._name.pkl``: AppleDouble, not pickles)."""
    return name.endswith(".pkl") and not name.startswith("__MACOSX/") and not Path(name).name.startswith("._")


def load_pickled_array(zip_path: str | os.PathLike) -> np.ndarray:
    """The numpy array pickled in the ``*.pkl`` member of ``zip_path``, the member the original reads.

    Members that are not pickles (a ``readme.txt``, macOS ``__MACOSX/`` metadata) are ignored. A zip
    with no ``*.pkl`` member, or with more than one (the original would silently take the last), is a
    ValueError naming the zip and its members. Only plain numpy arrays can be rebuilt: any other global
    in the pickle (a class, a function such as ``os.system``) raises ValueError naming the zip and the
    global, before anything is called. The result must be an ``np.ndarray`` of a float or integer dtype.
    """
    zip_path = Path(zip_path)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
            pickles = [name for name in names if _is_pickle_member(name)]
            if len(pickles) != 1:
                raise ValueError(f"{zip_path}: expected exactly one pickled member (*.pkl), got {len(pickles)} "
                                 f"(members: {names})")
            payload = archive.read(pickles[0])
    except zipfile.BadZipFile as error:
        raise ValueError(f"{zip_path}: not a readable zip file: {error}") from None
    source = f"{zip_path} (member {pickles[0]!r})"
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


# ============================================================================================ listed clips
@dataclass
class Clip:
    """One listed clip: its record without features (clip_id, split, label, ...) and its feature zips."""

    record: dict
    files: dict[str, Path] = field(default_factory=dict)  # modality -> zip


class ClipRecords:
    """The records of a per-clip-zip layout: every clip is listed up front, its features load while iterating.

    listing: the file(s) the clips come from (named in errors). pad: the modalities padded / truncated
    to ``num_frames`` as the original does (audio; UCF101 video too); the others are kept as stored.
    :meth:`check` (run before the first record) finds the clips whose feature files are missing: one
    ValueError counting them and naming the first few, or with ``skip_missing=True`` their clip ids (in
    order) in :attr:`skipped`. :meth:`restrict` keeps only the modalities to store (the other zips are
    neither required nor read) and the per-clip shapes to expect (a zip holding another shape is named).
    """

    def __init__(self, listing: str, clips: list[Clip], *, num_frames: int, pad=("audio",),
                 skip_missing: bool = False):
        self.listing, self.clips, self.num_frames = listing, clips, num_frames
        self.pad, self.skip_missing = set(pad), bool(skip_missing)
        self.shapes: dict[str, tuple] = {}
        self.skipped: list[str] | None = None  # set by check()

    def restrict(self, modalities, shapes: Mapping[str, tuple] | None = None) -> ClipRecords:
        """Read only the zips of ``modalities``; expect ``shapes[modality]`` per clip (after padding)."""
        for clip in self.clips:
            clip.files = {m: path for m, path in clip.files.items() if m in modalities}
        self.shapes = dict(shapes or {})
        return self

    def check(self) -> list[str]:
        """Clip ids without a feature file (skipped with ``skip_missing``; else one ValueError)."""
        if self.skipped is not None:
            return self.skipped
        missing = []
        for clip in self.clips:
            absent = [path for path in clip.files.values() if not path.is_file()]
            if absent:
                missing.append((clip.record["clip_id"], absent[0]))
        if missing and (not self.skip_missing or len(missing) == len(self.clips)):
            named = ", ".join(f"{clip_id} -> {path}" for clip_id, path in missing[:MISSING_NAMED])
            more = ", ..." if len(missing) > MISSING_NAMED else ""
            advice = ("none is left to convert" if len(missing) == len(self.clips)
                      else "pass --skip-missing (skip_missing=True) to convert the rest")
            raise ValueError(f"{self.listing}: {len(missing)} of {len(self.clips)} listed clips have no feature "
                             f"file (first: {named}{more}): {advice}")
        gone = {clip_id for clip_id, _ in missing}
        self.clips = [clip for clip in self.clips if clip.record["clip_id"] not in gone]
        self.skipped = [clip_id for clip_id, _ in missing]
        return self.skipped

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[dict]:
        self.check()
        for clip in self.clips:
            record = dict(clip.record)
            for modality, path in clip.files.items():
                array = load_pickled_array(path)
                if modality in self.pad:
                    array = pad_or_truncate(array, self.num_frames)
                shape = self.shapes.get(modality)
                if shape is not None and tuple(array.shape) != tuple(shape):
                    padded = f" after padding to T={self.num_frames}" if modality in self.pad else ""
                    raise ValueError(f"{path}: clip {record['clip_id']!r} ({self.listing}): column {modality!r}: "
                                     f"expected shape {list(shape)}{padded}, got {list(array.shape)}")
                record[modality] = array
            yield record


def _zip(directory: str | os.PathLike, name: str) -> Path:
    return Path(directory) / f"{name}.zip"


# ============================================================================================ VGGSound-AVEL
def vggsound_records(csv_path, audio_dir, video_dir, categories_path, prompts_csv=None, splits=None, *,
                     num_frames: int = ORIGINAL_NUM_FRAMES, skip_missing: bool = False) -> ClipRecords:
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
        prompts = {row["label"]: row["prompt"] for _, row in read_rows(prompts_csv, ("label", "prompt"))}
    wanted = None if splits is None else ({splits} if isinstance(splits, str) else set(splits))
    clips = []
    for line, row in read_rows(csv_path, ("category", "video_id", "split")):
        if wanted is not None and row["split"] not in wanted:
            continue
        where = f"{csv_path}, line {line}"
        record = {"clip_id": row["video_id"], "split": row["split"],
                  "label": class_of(classes, row["category"], where)}
        if prompts is not None:
            if row["category"] not in prompts:
                raise ValueError(f"{prompts_csv}: column 'label': no prompt for category {row['category']!r} "
                                 f"(expected one row per category; needed by {where})")
            record["prompt"] = prompts[row["category"]]
        clips.append(Clip(record, {"audio": _zip(audio_dir, row["video_id"]),
                                   "video": _zip(video_dir, row["video_id"])}))
    return ClipRecords(str(csv_path), clips, num_frames=num_frames, skip_missing=skip_missing)


def vggsound81k_records(csv_path, audio_dir, video_dir, *, num_frames: int = ORIGINAL_NUM_FRAMES,
                        skip_missing: bool = False) -> ClipRecords:
    """Records of the 81K (and 179K) VGGSound audio-visual sets (reference §1.3): csv with a column
    ``id`` = ``<video_id>.mp4``, the same per-clip zips as :func:`vggsound_records`; no category, no
    prompt (audio-visual pretraining only): ``label`` -1, ``split`` ``"train"``."""
    clips = []
    for line, row in read_rows(csv_path, ("id",)):
        video_id = row["id"][:-4] if row["id"].endswith(".mp4") else row["id"]
        if not video_id:
            raise ValueError(f"{csv_path}, line {line}: column 'id': expected '<video_id>.mp4', got {row['id']!r}")
        clips.append(Clip({"clip_id": video_id, "split": "train", "label": -1},
                          {"audio": _zip(audio_dir, video_id), "video": _zip(video_dir, video_id)}))
    return ClipRecords(str(csv_path), clips, num_frames=num_frames, skip_missing=skip_missing)


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


def ave_records(root, split: str = "train", *, labels_path=None, order_path=None,
                annotations=None) -> Iterator[dict]:
    """Records of the AVE h5 layout (reference §1.4): ``root`` holds ``visual_feature.h5``,
    ``audio_feature.h5``, ``labels.h5`` (key ``avadataset``) and ``{split}_order.h5`` (key ``order``,
    row indices into the other three).

    Per-segment labels ``[T, 29]`` (one-hot, last column = background) go to both ``audio_labels`` and
    ``video_labels``: AVE events are audio-visual and the original uses the same label for either
    modality. ``label`` = :func:`~hf_hdcid.data.layouts_labels.ave_clip_label`, the original's rule
    (max over time of the per-segment foreground argmax; a clip without any event gets 0).

    annotations: AVE-ECCV18's ``Annotations.txt`` (one line per h5 row; see
    :func:`~hf_hdcid.data.layouts_labels.read_ave_annotations`). With it, ``clip_id`` is the row's
    YouTube id (``<id>@<row>`` for the 45 ids several rows share), the line count must equal the
    feature files' row count, and every converted clip with a non-empty window must have the annotated
    category as its ``label`` (class ids in order of first appearance), else a ValueError naming the
    line. A clip with an empty window (StartTime = EndTime) gets its annotated category: the original
    gives 0 there, and on the real file these agree (line 27, ``Church bell&VWi2ENBuTbw&good&0&0``,
    row 26 of ``train_order.h5``: Church bell = 0). Without it, ``clip_id`` is ``ave-<row>``.

    AVE->AVVP training side: ``labels_path`` / ``order_path`` replace ``labels.h5`` / ``{split}_order.h5``
    (``ave_avvp_labels.h5``, ``ave_avvp_order.h5``, same keys, 13 columns); the order indices are taken
    to index the feature files and the label file alike, as in AVE_dataset.py (``annotations``, which
    describe the 28 AVE classes, are refused with a label file of fewer foreground columns). Features
    are taken as stored (T = 10 in AVE). Everything but the features is read and checked when this is
    called; the features are read while iterating.
    """
    root = Path(root)
    labels_path = Path(labels_path) if labels_path is not None else root / "labels.h5"
    order_path = Path(order_path) if order_path is not None else root / f"{split}_order.h5"
    vpath, apath = root / "visual_feature.h5", root / "audio_feature.h5"
    with ExitStack() as stack:
        data = []
        for path, key in ((vpath, "avadataset"), (apath, "avadataset"), (labels_path, "avadataset"),
                          (order_path, "order")):
            file, dataset = _read_h5(path, key)
            stack.callback(file.close)
            data.append(dataset)
        visual, audio, labels, order = data
        if labels.ndim != 3 or labels.shape[-1] < 2:
            raise ValueError(f"{labels_path}: expected labels [N, T, classes + 1], got shape {list(labels.shape)}")
        rows = np.asarray(order[()]).reshape(-1)
        if rows.dtype.kind == "f" and not np.all(rows == np.round(rows)):
            raise ValueError(f"{order_path}: expected integer row indices, got {rows[:5].tolist()}")
        rows = rows.astype(np.int64)
        for path, dataset in ((vpath, visual), (apath, audio), (labels_path, labels)):
            if rows.size and (rows.min() < 0 or rows.max() >= dataset.shape[0]):
                raise ValueError(f"{order_path}: row index out of range for {path} with {dataset.shape[0]} rows "
                                 f"(indices {int(rows.min())}..{int(rows.max())})")
        num_rows = visual.shape[0]
        segment_labels = (np.asarray(labels[()]) > 0).astype(np.int8)  # [N, T, C+1], small (1.2 MB for AVE)
    rows = rows.tolist()
    classes = [ave_clip_label(segment_labels[row]) for row in rows]
    clip_ids = [f"ave-{row}" for row in rows]
    if annotations is not None:
        notes, names = read_ave_annotations(annotations)
        if len(notes) != num_rows:
            raise ValueError(f"{annotations}: expected one annotation line per row of {vpath} ({num_rows} rows), "
                             f"got {len(notes)} lines")
        foreground = segment_labels.shape[-1] - 1
        if len(names) > foreground:
            raise ValueError(f"{annotations}: expected at most {foreground} categories (the foreground columns of "
                             f"{labels_path}), got {len(names)}: the annotations describe labels.h5 (AVE)")
        for i, row in enumerate(rows):
            note = notes[row]
            if note.empty_window:
                classes[i] = note.class_id
            elif classes[i] != note.class_id:
                expected = repr(names[classes[i]]) if classes[i] < len(names) else "a category not in the file"
                raise ValueError(f"{annotations}, line {note.line}: column 'Category': expected {expected} "
                                 f"(class {classes[i]}, the label of {labels_path} row {row}), got "
                                 f"{note.category!r} (class {note.class_id})")
        ids = ave_clip_ids(notes)
        clip_ids = [ids[row] for row in rows]
    return _ave_features(vpath, apath, rows, segment_labels, classes, clip_ids, split)


def _ave_features(vpath, apath, rows, segment_labels, classes, clip_ids, split) -> Iterator[dict]:
    """The AVE records, reading one row of each feature file per clip."""
    with ExitStack() as stack:
        (vfile, visual), (afile, audio) = _read_h5(vpath, "avadataset"), _read_h5(apath, "avadataset")
        stack.callback(vfile.close)
        stack.callback(afile.close)
        for row, label, clip_id in zip(rows, classes, clip_ids):
            yield {"clip_id": clip_id, "split": split, "label": label,
                   "audio": np.asarray(audio[row]), "video": np.asarray(visual[row]),
                   "audio_labels": segment_labels[row], "video_labels": segment_labels[row]}


def _ave_label_width(root, labels_path=None) -> int:
    path = Path(labels_path) if labels_path is not None else Path(root) / "labels.h5"
    file, labels = _read_h5(path, "avadataset")
    with file:
        return int(labels.shape[-1])


# ============================================================================================ AVVP
def _label_modality(csv_path) -> str:
    name = Path(csv_path).name.lower()
    found = {m for m, words in (("audio", ("audio",)), ("video", ("visual", "video"))) if any(w in name for w in words)}
    if len(found) != 1:
        raise ValueError(f"{csv_path}: cannot tell from the file name whether it holds audio or visual labels: "
                         "pass label_modality='audio' or 'video'")
    return found.pop()


def avvp_records(csv_path, audio_dir, video_dir, categories_path, split: str = "test", *,
                 label_modality: str | None = None, num_frames: int = ORIGINAL_NUM_FRAMES,
                 skip_missing: bool = False) -> ClipRecords:
    """Records of the AVVP layout (reference §1.4; also the AVE->AVVP test side with its 12 categories).

    csv_path: the published ``AVVP_eval_{audio,visual}.csv`` (tab-separated, columns ``filename``,
        ``onset``, ``offset``, ``event_labels``, one row per event) or the authors' combined
        ``*_checked_combined.csv`` (one row per video, comma-joined parallel lists); see
        :func:`~hf_hdcid.data.layouts_labels.avvp_labels`. The labels are those of ONE modality:
        ``label_modality`` (``"audio"`` / ``"video"``; None: read from the file name) and only that
        modality's label column is filled; the other stays all -1 (not annotated). A mapping
        ``{"audio": csv, "video": csv}`` fills both from the two files (videos in order of first
        appearance; a video missing from one file gets -1 there).
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
    clips = []
    for filename in dict.fromkeys(name for per_file in labels.values() for name in per_file):
        record = {"clip_id": filename, "split": split, "label": -1}
        for modality, per_file in labels.items():
            if filename in per_file:
                record[SEGMENT_LABEL_COLUMNS[modality]] = per_file[filename]
        clips.append(Clip(record, {"audio": _zip(audio_dir, filename[:11]), "video": _zip(video_dir, filename[:11])}))
    listing = " + ".join(str(path) for path in sources.values())
    return ClipRecords(listing, clips, num_frames=num_frames, skip_missing=skip_missing)


# ============================================================================================ UCF101 <-> VGGSound
def ucf_vggsound_records(csv_path, feature_dir, categories_path, modality: str, split: str = "train", *,
                         num_frames: int = ORIGINAL_NUM_FRAMES, skip_missing: bool = False) -> ClipRecords:
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
    clips = []
    for line, row in read_rows(csv_path, ("video_id", "category")):
        label = class_of(classes, row["category"], f"{csv_path}, line {line}")
        segments = np.zeros((num_frames, len(classes) + 1), dtype=np.int8)
        segments[:, label] = 1
        clips.append(Clip({"clip_id": row["video_id"], "split": split, "label": label,
                           SEGMENT_LABEL_COLUMNS[modality]: segments}, {modality: _zip(feature_dir, row["video_id"])}))
    return ClipRecords(str(csv_path), clips, num_frames=num_frames, pad=(modality,), skip_missing=skip_missing)


# ============================================================================================ entry point
def _shard_schema(config: HDCIDConfig, modalities: list[str]) -> FeatureSchema:
    """The :class:`~hf_hdcid.data.schema.FeatureSchema` of the modalities a layout provides, at
    ``config``'s sizes (a UCF<->VGG side has a single modality: a valid schema, not a model config)."""
    return FeatureSchema.from_config(config, modalities)


_RECORDS = {"vggsound": vggsound_records, "vggsound81k": vggsound81k_records, "ave": ave_records,
            "avvp": avvp_records, "ucf_vggsound": ucf_vggsound_records}
_NOT_PATH_KEYS = ("num_frames", "skip_missing")


def _check_path_keys(layout: str, paths: dict) -> None:
    """ValueError naming the unknown and the missing keys of ``layout`` (its records function's arguments)."""
    import inspect

    params = {n: p for n, p in inspect.signature(_RECORDS[layout]).parameters.items() if n not in _NOT_PATH_KEYS}
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty]
    unknown = sorted(set(paths) - set(params))
    missing = [n for n in required if n not in paths]
    if unknown or missing:
        raise ValueError(f"--path (layout {layout!r}): expected keys {', '.join(required)}"
                         + (f" (optional: {', '.join(n for n in params if n not in required)})"
                            if len(required) < len(params) else "")
                         + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                         + (f"; missing: {', '.join(missing)}" if missing else ""))


def _jsonable(value):
    """``value`` as JSON stores it: paths as strings, sets as sorted lists, mappings with string keys."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def convert_features(layout: str, out_dir: str | os.PathLike, config: HDCIDConfig, *, num_shards: int | None = None,
                     overwrite: bool = False, progress: bool = True, skip_missing: bool = False, **paths) -> Path:
    """Convert one original feature layout to a shard folder (see :mod:`hf_hdcid.data.shards`).

    layout and its keyword arguments (``paths``):

    * ``"vggsound"``: ``csv_path``, ``audio_dir``, ``video_dir``, ``categories_path``, optional
      ``prompts_csv`` and ``splits`` (e.g. ``{"train"}`` for 24K; None = 40K). See :func:`vggsound_records`.
    * ``"vggsound81k"``: ``csv_path`` (column ``id`` = ``<video_id>.mp4``), ``audio_dir``, ``video_dir``;
      audio-visual only, unlabelled. See :func:`vggsound81k_records`.
    * ``"ave"``: ``root``, ``split`` (default ``"train"``), optional ``annotations`` (``Annotations.txt``:
      YouTube clip ids and label checks) and ``labels_path`` / ``order_path`` (AVE->AVVP). See
      :func:`ave_records`.
    * ``"avvp"``: ``csv_path`` (or ``{"audio": csv, "video": csv}``; per-event or combined form),
      ``audio_dir``, ``video_dir``, ``categories_path``, ``split`` (default ``"test"``), optional
      ``label_modality``. See :func:`avvp_records`.
    * ``"ucf_vggsound"``: ``csv_path``, ``feature_dir``, ``categories_path``, ``modality``
      (``"video"`` for ucf2vggsound.csv, ``"audio"`` for vggsound2ucf.csv), ``split`` (default
      ``"train"``). See :func:`ucf_vggsound_records`.

    ``config`` gives T (``num_frames``: the pad/truncate length) and the feature shapes. The shard
    folder stores the modalities of ``config.modalities`` that the layout has: audio and video, plus a
    ``prompt`` column (text features to be computed later) for VGGSound when ``prompts_csv`` is given
    and ``"text"`` is in ``config.modalities``; a UCF<->VGG side stores its single modality (load it
    with ``load_shards(path)`` or a config of that modality). Only the zips of stored modalities are
    read. Segment labels (``label_width`` = classes + background) are stored for AVE, AVVP and UCF<->VGG.

    Before anything is written, every listed clip of a zip layout must have its feature files: else
    one ValueError counts the missing clips and names the first few; ``skip_missing=True`` converts the
    rest (AVE has no per-clip files: nothing to skip). The manifest's ``"source"`` records the layout,
    the converter version, ``paths`` and the skipped clip ids (``"skipped_missing"``, in order).
    ``num_shards`` and ``overwrite`` go to :func:`write_shards` (a failure leaves no folder behind);
    ``progress`` shows a progress bar. Returns the absolute shard folder path.

    * ``"avss4"``: ``root`` (AVSBench's ``Single-source`` folder), ``audio_dir``, ``text_extractor`` and
      the optional keys of :func:`~hf_hdcid.data.convert_avs.convert_avss4` (segmentation shards).
    """
    from .. import __version__

    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {list(LAYOUTS)}, got {layout!r}")
    if layout == "avss4":
        from .convert_avs import convert_avss4

        if "root" not in paths:
            raise ValueError("--path (layout 'avss4'): expected key root (AVSBench's Single-source folder)")
        return convert_avss4(paths.pop("root"), out_dir, config, num_shards=num_shards, overwrite=overwrite,
                             skip_missing=skip_missing, progress=progress, **paths)
    _check_path_keys(layout, paths)
    t = config.num_frames
    label_width = num_classes = None
    available = ["audio", "video"]
    if layout == "ave":
        records = ave_records(**paths)
        label_width = _ave_label_width(paths["root"], paths.get("labels_path"))
        num_classes = label_width - 1
    else:
        records = _RECORDS[layout](num_frames=t, skip_missing=skip_missing, **paths)
    if layout == "vggsound":
        num_classes = len(read_categories(paths["categories_path"]))
        if paths.get("prompts_csv") is not None:
            available.append("text")
    elif layout == "avvp":
        label_width = len(read_categories(paths["categories_path"])) + 1
    elif layout == "ucf_vggsound":
        num_classes = len(read_categories(paths["categories_path"]))
        label_width = num_classes + 1
        available = [paths["modality"]]
    modalities = [m for m in config.modalities if m in available]
    if not modalities:
        raise ValueError(f"layout {layout!r} provides {available}, none of config.modalities {config.modalities}")
    skipped: list[str] = []
    if isinstance(records, ClipRecords):
        records.restrict(modalities, {m: expected_shape(config, m) for m in modalities if m != "text"})
        skipped = records.check()
    keep = {"clip_id", "split", "label", *modalities, *(SEGMENT_LABEL_COLUMNS[m] for m in modalities
                                                        if m in SEGMENT_LABEL_COLUMNS and label_width)}
    if "text" in modalities:
        keep = (keep - {"text"}) | {"prompt"}
    source = {"layout": layout, "converter_version": __version__, "paths": _jsonable(paths),
              "skipped_missing": list(skipped)}

    def selected():
        total = len(records) if isinstance(records, ClipRecords) else None
        for record in tqdm(records, desc=f"Converting {layout}", unit="clip", total=total, disable=not progress):
            yield {k: v for k, v in record.items() if k in keep}

    return write_shards(selected, out_dir, _shard_schema(config, modalities), num_shards, with_text_features=False,
                        with_prompt="text" in modalities, label_width=label_width, num_classes=num_classes,
                        overwrite=overwrite, source=source)


__all__ = [
    "LAYOUTS", "Clip", "ClipRecords", "ave_clip_label", "ave_records", "avvp_labels", "avvp_records",
    "convert_features", "load_pickled_array", "pad_or_truncate", "read_ave_annotations", "read_categories",
    "ucf_vggsound_records", "vggsound_records", "vggsound81k_records",
]
