"""Convert the AVSBench-S4 layout (single sound source segmentation) to segmentation shards.

What the layout is, as checked against AVSBench's public code (OpenNLPLab/AVSBench:
``avs_scripts/avs_s4/config.py``, ``avs_scripts/avs_s4/dataloader.py``, ``preprocess_scripts/preprocess_s4.py``)
and the H-DCID authors' variant (haihuangcode/CMG: ``code/AVSBench_dowmstream/avs_scripts/avs_s4/dataloader.py``,
``config.py``). ``root`` is AVSBench's ``Single-source`` folder::

    root/s4_meta_data.csv                                  columns name, <start time>, category, split
    root/s4_data/visual_frames/<split>/<category>/<name>/<name>_<k>.png     k = 1..5, RGB, 224 x 224
    root/s4_data/gt_masks/<split>/<category>/<name>/<name>_<k>.png          train: k = 1 only; val/test: 1..5
    audio features (not part of AVSBench, see below)

* Splits are ``train`` / ``val`` / ``test`` (the csv's ``split`` column). The original reads the clip
  name and category by position (columns 0 and 2) and filters on the column named ``split``; here the
  columns are read by name: ``name``, ``category``, ``split`` (the start-time column is not used).
* Frames: AVSBench's preprocessing resizes every video frame to 224 x 224 (``cv2.resize``, default
  bilinear) before writing the PNGs, and its loader reads them without resizing (``ToTensor`` then
  ImageNet mean/std, which this package leaves to the model). Frames of another size are resized here to
  ``frame_size`` with bilinear interpolation, half-pixel centres and no antialiasing (what
  ``cv2.INTER_LINEAR`` does; cv2's fixed-point rounding may differ by one grey level).
* Masks: the loader opens each mask with PIL and converts it to mode ``"1"`` (``Image.convert("1")``,
  PIL's default dithering; for the released 0/255 masks this is "grey >= 128"), then ``ToTensor`` (0/1).
  The same PIL call is used here. Train clips have only the first frame's mask (AVSBench trains on
  it alone): its ``mask_valid`` is ``[1, 0, 0, 0, 0]`` and the other four masks are stored as zeros.
  Masks of another size are resized with nearest neighbour.
* Audio: AVSBench itself ships log-mel spectrograms (``audio_log_mel/<split>/<category>/<name>.pkl``,
  a pickled torch tensor ``[5, 1, 96, 64]``) that its model passes through VGGish; those are NOT
  features and are refused with that explanation. H-DCID uses precomputed VGGish features, 128-d per
  second (CMG's loader: ``<audio_dir>/<split>/zip/<category>/<name>.zip`` holding one pickled numpy
  array, padded with its last row / cut to 5 seconds). Accepted per clip, first found wins:
  ``<audio_dir>/<split>/<category>/<name>.npy`` (a ``[t, 128]`` array, e.g. your own VGGish
  extraction) or CMG's ``<audio_dir>/<split>/zip/<category>/<name>.zip``. ``t`` is padded (last row
  repeated) or cut to 5 as CMG does, then stored at the model's ``T`` steps by repeating each second
  (:func:`~hf_hdcid.data.segmentation.seconds_to_steps`; CMG instead tiles the 5 seconds twice,
  ``a1..a5 a1..a5``, and maps 10 -> 5 with an untrained Linear: see BENCHMARKS.md / the downstream
  module).
* Text: one prompt per category. CMG reads ``AVSBenchCategories2Prompts.csv`` (column ``label`` = the
  category, the prompt in the second column); that file is not in CMG's public repository, so by
  default the prompt is :data:`AVS_PROMPT_TEMPLATE` with the category's words (``"playing_violin"`` ->
  ``"the sound of playing violin in this video"``); pass ``prompts_csv`` to use such a file. Text
  features come from a :class:`~hf_hdcid.data.text.TextFeatureExtractor` (BERT in the paper).
* Labels: class id = index of the category in :data:`AVSBENCH_S4_CATEGORIES` (the 23 S4 categories,
  sorted), or the line of ``categories_path``.

Bad input follows the other converters: every listed clip's frames, masks and audio file are checked
before anything is written (one ValueError counting the clips with missing files and naming the first
few, or ``skip_missing=True`` to convert the rest, recorded in the manifest); a wrong csv header, an
unknown category or a wrong audio shape is a one-line ValueError naming the file, the field, the
expected and the actual value; the shard folder is written staged (nothing half-written).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .convert import MISSING_NAMED, load_pickled_array, pad_or_truncate
from .layouts_labels import class_of, read_categories, read_rows
from .segmentation import SegmentationSpec, seconds_to_steps

#: the 23 sound-source categories of AVSBench-S4, sorted (class id = position)
AVSBENCH_S4_CATEGORIES = tuple(sorted((
    "ambulance_siren", "baby_laughter", "cap_gun_shooting", "cat_meowing", "chainsawing_trees", "coyote_howling",
    "dog_barking", "driving_buses", "female_singing", "helicopter", "horse_clip-clop", "lawn_mowing",
    "lions_roaring", "male_speech", "mynah_bird_singing", "playing_acoustic_guitar", "playing_glockenspiel",
    "playing_piano", "playing_tabla", "playing_ukulele", "playing_violin", "race_car",
    "typing_on_computer_keyboard",
)))
AVS_PROMPT_TEMPLATE = "the sound of {} in this video"
AVS_NUM_FRAMES = 5  # frames (and one-second audio segments) per S4 clip
AVS_FRAME_SIZE = 224  # AVSBench's cfg.DATA.IMG_SIZE
AVS_SPLITS = ("train", "val", "test")
META_COLUMNS = ("name", "category", "split")


def category_prompt(category: str, template: str = AVS_PROMPT_TEMPLATE) -> str:
    """The text of a category: its words (``_`` -> space) in ``template``."""
    return template.format(category.replace("_", " "))


# ============================================================================================ files
def _frame_png(folder: Path, split: str, category: str, name: str, k: int) -> Path:
    return folder / split / category / name / f"{name}_{k}.png"


def _audio_candidates(audio_dir: Path, split: str, category: str, name: str) -> list[Path]:
    return [audio_dir / split / category / f"{name}.npy", audio_dir / split / "zip" / category / f"{name}.zip"]


def read_frame(path: Path, size: int) -> np.ndarray:
    """RGB frame uint8 [size, size, 3]; other sizes resized bilinearly (half-pixel centres, no antialias)."""
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)  # [H, W, 3]
    if array.shape[:2] != (size, size):
        import torch

        x = torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float()  # [1, 3, H, W]
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=False)
        array = x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return array


def read_mask(path: Path, size: int) -> np.ndarray:
    """0/1 mask uint8 [size, size]: PIL mode "1" as AVSBench's loader; other sizes by nearest neighbour."""
    from PIL import Image

    with Image.open(path) as image:
        mask = np.asarray(image.convert("1"), dtype=np.uint8)  # [H, W] 0/1
    if mask.shape != (size, size):
        rows = np.minimum(((np.arange(size) + 0.5) * mask.shape[0] / size).astype(np.int64), mask.shape[0] - 1)
        cols = np.minimum(((np.arange(size) + 0.5) * mask.shape[1] / size).astype(np.int64), mask.shape[1] - 1)
        mask = mask[rows][:, cols]
    return mask


def read_audio_features(path: Path, width: int) -> np.ndarray:
    """Per-second VGGish features [5, width] of one clip (.npy or a CMG feature zip), padded/cut to 5."""
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: expected a plain numpy array of VGGish features [5, {width}]: {err}") from None
    else:
        array = load_pickled_array(path)
    if array.shape == (AVS_NUM_FRAMES, 1, 96, 64):
        raise ValueError(f"{path}: column 'audio': expected VGGish features [5, {width}], got shape [5, 1, 96, 64]: "
                         "that is AVSBench's log-mel input, run VGGish on it first")
    if array.ndim != 2 or array.shape[1] != width or array.shape[0] < 1:
        raise ValueError(f"{path}: column 'audio': expected VGGish features [5, {width}] (one row per second), "
                         f"got shape {list(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: column 'audio': expected finite features, got NaN/inf")
    return pad_or_truncate(array.astype(np.float32), AVS_NUM_FRAMES)  # [5, width]


# ============================================================================================ clips
@dataclass
class AVSClip:
    """One listed S4 clip: its record without pixels and features, and the files they come from."""

    record: dict
    category: str
    frames: list[Path]
    masks: list[Path]
    audio: list[Path] = field(default_factory=list)  # candidates (empty: audio not stored)

    def missing(self) -> Path | None:
        """The first file this clip lacks (for audio: the first candidate), or None."""
        for path in (*self.frames, *self.masks):
            if not path.is_file():
                return path
        if self.audio and not any(p.is_file() for p in self.audio):
            return self.audio[0]
        return None


class AVSS4Records:
    """The records of the S4 layout: listed up front (:meth:`check`), pixels and audio read while iterating.

    Each record: clip_id (the csv's name), split, label, prompt, frames [5, S, S, 3] uint8, masks [5, S, S]
    0/1, mask_valid [5], and audio [T, width] float32 when ``audio_dir`` is given.
    """

    def __init__(self, root, *, meta_csv=None, frames_dir=None, masks_dir=None, audio_dir=None,
                 categories_path=None, prompts_csv=None, prompt_template: str = AVS_PROMPT_TEMPLATE,
                 splits=None, num_steps: int = 10, audio_feature_dim: int = 128, frame_size: int = AVS_FRAME_SIZE,
                 skip_missing: bool = False):
        root = Path(root)
        self.meta_csv = Path(meta_csv) if meta_csv is not None else root / "s4_meta_data.csv"
        frames_dir = Path(frames_dir) if frames_dir is not None else root / "s4_data" / "visual_frames"
        masks_dir = Path(masks_dir) if masks_dir is not None else root / "s4_data" / "gt_masks"
        self.audio_dir = None if audio_dir is None else Path(audio_dir)
        self.num_steps, self.width, self.frame_size = num_steps, audio_feature_dim, frame_size
        self.skip_missing = bool(skip_missing)
        self.skipped: list[str] | None = None
        if not self.meta_csv.is_file():
            raise FileNotFoundError(f"{self.meta_csv}: no such file (AVSBench's s4_meta_data.csv; pass meta_csv=...)")
        names = read_categories(categories_path) if categories_path is not None else \
            {c: i for i, c in enumerate(AVSBENCH_S4_CATEGORIES)}
        self.classes = names
        prompts = None
        if prompts_csv is not None:
            prompts = {row["label"]: row["prompt"] for _, row in read_rows(prompts_csv, ("label", "prompt"))}
        wanted = None if splits is None else ({splits} if isinstance(splits, str) else set(splits))
        self.clips: list[AVSClip] = []
        for line, row in read_rows(self.meta_csv, META_COLUMNS):
            where = f"{self.meta_csv}, line {line}"
            split, category, name = row["split"], row["category"], row["name"]
            if split not in AVS_SPLITS:
                raise ValueError(f"{where}: column 'split': expected one of {list(AVS_SPLITS)}, got {split!r}")
            if not name:
                raise ValueError(f"{where}: column 'name': expected a clip name, got ''")
            if wanted is not None and split not in wanted:
                continue
            label = class_of(names, category, where)
            if prompts is not None:
                if category not in prompts:
                    raise ValueError(f"{prompts_csv}: column 'label': no prompt for category {category!r} "
                                     f"(expected one row per category; needed by {where})")
                prompt = prompts[category]
            else:
                prompt = category_prompt(category, prompt_template)
            annotated = 1 if split == "train" else AVS_NUM_FRAMES  # AVSBench S4: train has frame 1's mask only
            self.clips.append(AVSClip(
                {"clip_id": name, "split": split, "label": label, "prompt": prompt}, category,
                [_frame_png(frames_dir, split, category, name, k) for k in range(1, AVS_NUM_FRAMES + 1)],
                [_frame_png(masks_dir, split, category, name, k) for k in range(1, annotated + 1)],
                [] if self.audio_dir is None else _audio_candidates(self.audio_dir, split, category, name)))
        if not self.clips:
            raise ValueError(f"{self.meta_csv}: no clips" + (f" of splits {sorted(wanted)}" if wanted else ""))

    def check(self) -> list[str]:
        """Clip names with a missing frame, mask or audio file (skipped with ``skip_missing``; else one ValueError)."""
        if self.skipped is not None:
            return self.skipped
        missing = [(clip.record["clip_id"], path) for clip in self.clips if (path := clip.missing()) is not None]
        if missing and (not self.skip_missing or len(missing) == len(self.clips)):
            named = ", ".join(f"{clip_id} -> {path}" for clip_id, path in missing[:MISSING_NAMED])
            more = ", ..." if len(missing) > MISSING_NAMED else ""
            advice = ("none is left to convert" if len(missing) == len(self.clips)
                      else "pass --skip-missing (skip_missing=True) to convert the rest")
            hint = ""
            log_mel = [p for _, p in missing if p.suffix in (".npy", ".zip") and p.with_suffix(".pkl").is_file()]
            if log_mel:
                hint = (f" ({log_mel[0].with_suffix('.pkl')} exists: AVSBench's audio_log_mel holds log-mel "
                        "spectrograms, not VGGish features)")
            raise ValueError(f"{self.meta_csv}: {len(missing)} of {len(self.clips)} listed clips lack a frame, mask "
                             f"or audio feature file (first: {named}{more}){hint}: {advice}")
        gone = {clip_id for clip_id, _ in missing}
        self.clips = [clip for clip in self.clips if clip.record["clip_id"] not in gone]
        self.skipped = [clip_id for clip_id, _ in missing]
        return self.skipped

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[dict]:
        self.check()
        size = self.frame_size
        for clip in self.clips:
            record = dict(clip.record)
            record["frames"] = np.stack([read_frame(p, size) for p in clip.frames])  # [5, S, S, 3]
            masks = np.zeros((AVS_NUM_FRAMES, size, size), dtype=np.uint8)  # [5, S, S]
            valid = np.zeros(AVS_NUM_FRAMES, dtype=np.int8)
            for k, path in enumerate(clip.masks):
                masks[k] = read_mask(path, size)
                valid[k] = 1
            record["masks"], record["mask_valid"] = masks, valid
            if clip.audio:
                path = next(p for p in clip.audio if p.is_file())
                record["audio"] = seconds_to_steps(read_audio_features(path, self.width), self.num_steps)  # [T, D]
            yield record


# ============================================================================================ entry point
def convert_avss4(root, out_dir, config, *, text_extractor=None, audio_dir=None, meta_csv=None, frames_dir=None,
                  masks_dir=None, categories_path=None, prompts_csv=None, prompt_template: str = AVS_PROMPT_TEMPLATE,
                  splits=None, frame_size: int = AVS_FRAME_SIZE, num_shards: int | None = None,
                  overwrite: bool = False, skip_missing: bool = False, progress: bool = True) -> Path:
    """Convert AVSBench-S4 (module docstring) to a segmentation shard folder at ``out_dir``.

    config: the H-DCID model's ``HDCIDConfig`` (or a FeatureSchema): its ``num_frames`` (T), widths and
    modalities; the folder stores the query modalities among ``config.modalities`` (audio if in it,
    which needs ``audio_dir``; text if in it, which needs ``text_extractor``, whose ``num_tokens`` must be
    T and width ``config.text_feature_dim``), never video (the frames replace it), plus the prompt.
    Columns: :mod:`hf_hdcid.data.segmentation`. Returns the absolute folder path.
    """
    from .. import __version__
    from .convert import _jsonable
    from .schema import FeatureSchema
    from .writing import write_shards

    try:
        from huggingface_hub.utils import tqdm
    except ImportError:  # pragma: no cover
        from tqdm.auto import tqdm

    if isinstance(frame_size, bool) or not isinstance(frame_size, int) or frame_size < 1:
        raise ValueError(f"frame_size: expected a positive int, got {frame_size!r}")
    modalities = [m for m in ("audio", "text") if m in config.modalities]
    if not modalities:
        raise ValueError(f"config.modalities: expected audio and/or text (the query modalities of AVS-S4), "
                         f"got {list(config.modalities)}")
    if "audio" in modalities and audio_dir is None:
        raise ValueError("audio_dir: expected the folder of per-clip VGGish features (<split>/<category>/<name>.npy "
                         "or CMG's <split>/zip/<category>/<name>.zip), got None; AVSBench's own audio_log_mel is "
                         "not features (or leave audio out of config.modalities)")
    if "text" in modalities:
        _check_extractor(text_extractor, config)
    records = AVSS4Records(root, meta_csv=meta_csv, frames_dir=frames_dir, masks_dir=masks_dir,
                           audio_dir=audio_dir if "audio" in modalities else None, categories_path=categories_path,
                           prompts_csv=prompts_csv, prompt_template=prompt_template, splits=splits,
                           num_steps=config.num_frames, audio_feature_dim=config.audio_feature_dim,
                           frame_size=frame_size, skip_missing=skip_missing)
    skipped = records.check()
    schema = FeatureSchema.from_config(config, modalities)
    paths = {"root": root, "audio_dir": audio_dir, "meta_csv": meta_csv, "frames_dir": frames_dir,
             "masks_dir": masks_dir, "categories_path": categories_path, "prompts_csv": prompts_csv,
             "splits": splits}
    source = {"layout": "avss4", "converter_version": __version__,
              "paths": _jsonable({k: v for k, v in paths.items() if v is not None}),
              "frame_size": frame_size, "prompt_template": None if prompts_csv is not None else prompt_template,
              "audio_time_steps": f"5 VGGish seconds -> T={config.num_frames} steps, nearest neighbour",
              "skipped_missing": list(skipped)}

    def generate():
        for record in tqdm(records, desc="Converting avss4", unit="clip", total=len(records), disable=not progress):
            if "text" in modalities:
                record["text"] = text_extractor([record["prompt"]])[0]  # [T, Dt], cached per prompt
            yield record

    return write_shards(generate, out_dir, schema, num_shards, with_prompt=True, num_classes=len(records.classes),
                        overwrite=overwrite, source=source,
                        segmentation=SegmentationSpec(AVS_NUM_FRAMES, frame_size, frame_size))


def _check_extractor(text_extractor, config) -> None:
    if text_extractor is None:
        raise ValueError("text_extractor: expected a TextFeatureExtractor (text is one of config.modalities), got None")
    if text_extractor.num_tokens != config.num_frames:
        raise ValueError(f"text_extractor.num_tokens: expected config.num_frames={config.num_frames}, "
                         f"got {text_extractor.num_tokens}")
    if text_extractor.hidden_size != config.text_feature_dim:
        raise ValueError(f"config.text_feature_dim: expected the text model's width {text_extractor.hidden_size}, "
                         f"got {config.text_feature_dim}")


__all__ = ["AVSBENCH_S4_CATEGORIES", "AVS_PROMPT_TEMPLATE", "AVSClip", "AVSS4Records", "category_prompt",
           "convert_avss4", "read_audio_features", "read_frame", "read_mask"]
