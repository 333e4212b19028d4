"""Label files of the original layouts: category lists, AVE ``Annotations.txt``, AVVP event csvs.

Everything here reads text files and returns class ids or per-segment label arrays; no feature is
loaded (that is :mod:`hf_hdcid.data.convert`). The rules are the original loaders' (reference §1.4,
§5.3):

* :func:`ave_clip_label`: the AVE clip class, "max over time of the per-segment argmax over the
  foreground columns".
* :func:`read_ave_annotations`: ``Annotations.txt`` of AVE-ECCV18 (``Category&VideoID&Quality&
  StartTime&EndTime``, one line per row of the AVE h5 files, no header), class ids = categories in
  order of first appearance.
* :func:`avvp_labels`: ``[T, C+1]`` per-segment labels from an AVVP tab csv, in the published
  per-event form (one row per event) or the authors' unpublished combined form (one row per video,
  comma-joined parallel lists), or a mix of the two.

Every refusal is a ValueError naming the file, the line, the column, what was expected and what was
found.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ANNOTATION_COLUMNS = ("Category", "VideoID", "Quality", "StartTime", "EndTime")
AVVP_EVENT_COLUMNS = ("filename", "onset", "offset", "event_labels")


# ============================================================================================ shared
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


def read_rows(path: str | os.PathLike, columns: Iterable[str], delimiter: str = ",") -> Iterator[tuple[int, dict]]:
    """(line number, row dict) of a csv with a header holding at least ``columns``."""
    columns = list(columns)
    with open(path, newline="") as file:
        reader = csv.DictReader(file, delimiter=delimiter)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}, line 1: missing column(s) {missing}: expected a header with {columns}, "
                             f"got {reader.fieldnames}")
        for row in reader:
            yield reader.line_num, {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}


def class_of(classes: dict[str, int], category: str, where: str, column: str = "category") -> int:
    """The class id of ``category``; ValueError naming ``where`` and the column if it is not listed."""
    try:
        return classes[category]
    except KeyError:
        raise ValueError(f"{where}: column {column!r}: unknown category {category!r} (expected one of the "
                         f"{len(classes)} names of the category list)") from None


# ============================================================================================ AVE
def ave_clip_label(labels: np.ndarray) -> int:
    """The original's AVE clip class: max over time of the per-segment argmax over the foreground columns.

    labels: ``[T, C+1]`` one-hot per segment, last column = background (``labels.h5`` rows). The
    foreground argmax of an all-background segment is 0, so a clip without any event gets class 0
    (the original trains on that; it is not "no label"). For AVE's one-event clips this is the event's
    class. Reference §5.3 (``ave*.py``: ``labels[..., :-1].max(-1)`` indices, then ``.max(-1)`` over time).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[-1] < 2:
        raise ValueError(f"expected labels [T, classes + 1], got shape {list(labels.shape)}")
    return int(np.argmax(labels[:, :-1], axis=-1).max())  # [T] -> max over time


@dataclass(frozen=True)
class AVEAnnotation:
    """One line of ``Annotations.txt``: the row ``line - 1`` (minus a header) of the AVE h5 files."""

    line: int
    category: str
    class_id: int
    video_id: str
    quality: str
    start: int
    end: int

    @property
    def empty_window(self) -> bool:
        return self.end <= self.start


def read_ave_annotations(path: str | os.PathLike) -> tuple[list[AVEAnnotation], list[str]]:
    """(one :class:`AVEAnnotation` per row, category names by class id) of AVE's ``Annotations.txt``.

    Format (AVE-ECCV18 ``data/Annotations.txt``): ``Category&VideoID&Quality&StartTime&EndTime``, one
    line per row of ``labels.h5`` / the feature h5 files, 4143 lines, no header line (a first line that
    is exactly the column names is skipped as a header). Class ids are the categories in order of first
    appearance (28 on the real file, the column order of ``labels.h5``). StartTime / EndTime are whole
    seconds with ``0 <= StartTime <= EndTime``; an equal pair is an empty window (the real file has one:
    line 27, ``Church bell&VWi2ENBuTbw&good&0&0``).
    """
    lines = Path(path).read_text().splitlines()
    while lines and not lines[-1].strip():  # a trailing newline is not a row
        lines.pop()
    first = 1 if lines and [c.strip() for c in lines[0].split("&")] == list(ANNOTATION_COLUMNS) else 0
    rows: list[AVEAnnotation] = []
    classes: dict[str, int] = {}
    for number, text in enumerate(lines[first:], start=first + 1):
        where = f"{path}, line {number}"
        fields = [f.strip() for f in text.split("&")]
        if len(fields) != len(ANNOTATION_COLUMNS):
            raise ValueError(f"{where}: expected {len(ANNOTATION_COLUMNS)} '&'-separated columns "
                             f"{'&'.join(ANNOTATION_COLUMNS)}, got {len(fields)}: {text!r}")
        category, video_id, quality, start, end = fields
        for column, value in (("Category", category), ("VideoID", video_id)):
            if not value:
                raise ValueError(f"{where}: column {column!r}: expected a non-empty value, got ''")
        times = []
        for column, value in (("StartTime", start), ("EndTime", end)):
            if not value.isdigit():
                raise ValueError(f"{where}: column {column!r}: expected a whole number of seconds, got {value!r}"
                                 + (" (Annotations.txt has no header line)" if number == 1 else ""))
            times.append(int(value))
        if times[1] < times[0]:
            raise ValueError(f"{where}: column 'EndTime': expected at least StartTime ({times[0]}), got {times[1]}")
        class_id = classes.setdefault(category, len(classes))
        rows.append(AVEAnnotation(number, category, class_id, video_id, quality, *times))
    if not rows:
        raise ValueError(f"{path}: no annotation lines")
    return rows, list(classes)


def ave_clip_ids(annotations: list[AVEAnnotation]) -> list[str]:
    """One clip id per row: the YouTube id, or ``<id>@<row>`` for an id that several rows share.

    The real ``Annotations.txt`` has 45 YouTube ids on two or three rows (the same video annotated
    with different categories, e.g. ``-9R4WPSKE3Q`` on lines 341 and 1062); clip ids must be unique
    within a split, so every row of such an id carries its (0-based) row number.
    """
    counts: dict[str, int] = {}
    for row in annotations:
        counts[row.video_id] = counts.get(row.video_id, 0) + 1
    return [a.video_id if counts[a.video_id] == 1 else f"{a.video_id}@{i}" for i, a in enumerate(annotations)]


# ============================================================================================ AVVP
def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",")] if value else []


def _second(value: str, where: str, column: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where}: column {column!r}: expected a whole number of seconds, got {value!r}") from None
    if not np.isfinite(number) or number < 0 or number != int(number):
        raise ValueError(f"{where}: column {column!r}: expected a non-negative whole second, got {value!r}")
    return int(number)


def _check_avvp_header(csv_path) -> None:
    """Refuse the weak-label files (``AVVP_train.csv``, ``AVVP_{val,test}_pd.csv``) by their header."""
    with open(csv_path, newline="") as file:
        header = next(csv.reader(file, delimiter="\t"), [])
    header = [h.strip() for h in header]
    if "filename" in header and "event_labels" in header and not {"onset", "offset"} & set(header):
        raise ValueError(
            f"{csv_path}, line 1: header {header} has no 'onset' / 'offset' columns: expected "
            f"{list(AVVP_EVENT_COLUMNS)}. This is a weak clip-level label file (AVVP_train.csv, "
            "AVVP_{val,test}_pd.csv, AVVP_dataset_full.csv): the original's AVVP task never reads it, it trains "
            "on one modality's eval labels (AVVP_eval_audio.csv / AVVP_eval_visual.csv) and tests on the other's")


def avvp_labels(csv_path, categories_path, *, num_frames: int = 10) -> dict[str, np.ndarray]:
    """filename -> per-segment labels ``[T, C+1]`` (int8, last column = background) of an AVVP tab csv.

    Columns ``filename``, ``onset``, ``offset``, ``event_labels``, tab-separated, in either form:

    * per event (the published ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv``): one row per event,
      a video on as many rows as it has events (``KSRjje7GH44_60_70`` twice);
    * combined (the authors' unpublished ``*_checked_combined.csv``, what the original loader reads):
      one row per video, onsets / offsets / labels as comma-joined parallel lists.

    Rows are grouped per video in order of first appearance (a file may mix both forms: a repeated
    filename only adds events). Label rule of AVVP_dataset.py: background = 1 on every segment; for each
    event, segments ``[onset, offset)`` of its class are set with logical OR and background is cleared
    there. An event with ``offset <= onset`` marks nothing, as in the original (the real
    AVVP_eval_audio.csv has ``10 10``-style empty events and, on line 3770, ``9 0``); offsets past T
    are cut at T. A row with empty lists gives a video of background only.

    Not accepted: ``AVVP_train.csv`` and the other files with header ``filename event_labels`` (weak
    clip-level labels, no onset / offset columns). The original's H-DCID AVVP task does not use them:
    it trains on one modality's eval labels and tests on the other modality's (reference §1.4, §5.3).
    """
    classes = read_categories(categories_path)
    background = len(classes)
    _check_avvp_header(csv_path)
    events: dict[str, list[tuple[int, int, int]]] = {}
    for line, row in read_rows(csv_path, AVVP_EVENT_COLUMNS, delimiter="\t"):
        where = f"{csv_path}, line {line}"
        if not row["filename"]:
            raise ValueError(f"{where}: column 'filename': expected a video name, got ''")
        onsets, offsets, names = _list(row["onset"]), _list(row["offset"]), _list(row["event_labels"])
        if not len(onsets) == len(offsets) == len(names):
            raise ValueError(f"{where}: columns 'onset' / 'offset' / 'event_labels': expected parallel lists of "
                             f"one length, got {len(onsets)} / {len(offsets)} / {len(names)} values")
        video = events.setdefault(row["filename"], [])
        for onset, offset, name in zip(onsets, offsets, names):
            video.append((_second(onset, where, "onset"), _second(offset, where, "offset"),
                          class_of(classes, name, where, "event_labels")))
    out: dict[str, np.ndarray] = {}
    for filename, video_events in events.items():
        label = np.zeros((num_frames, background + 1), dtype=bool)
        label[:, background] = True
        for onset, offset, column in video_events:
            mask = np.zeros(num_frames, dtype=bool)
            mask[onset:offset] = True
            label[:, column] |= mask
            label[:, background] &= ~mask
        out[filename] = label.astype(np.int8)
    return out


__all__ = [
    "ANNOTATION_COLUMNS", "AVEAnnotation", "ave_clip_ids", "ave_clip_label", "avvp_labels", "class_of",
    "read_ave_annotations", "read_categories", "read_rows",
]
