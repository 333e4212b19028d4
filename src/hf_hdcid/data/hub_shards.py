"""Feature shards on the Hub: a shard folder travels as a Hub **dataset** repo (``hf-hdcid push-data``).

:func:`push_shards` uploads a shard folder (:mod:`hf_hdcid.data.shards`: a ``datasets`` ``save_to_disk``
folder plus ``hdcid_shards.json``, and ``synthetic.json`` in synthetic folders) unchanged, in one
commit, with a ``README.md`` dataset card (schema, splits, source, licence, how to load). The folder,
the repo id, the licence and the token are checked before the first network call.

:func:`download_shards` fetches such a repo into the Hub cache (``datasets--org--name``) with
``snapshot_download``; once there it loads with ``HF_HUB_OFFLINE=1``.

:func:`resolve_shards` is the one rule by which ``load_shards``, ``scripts/pretrain.py --data`` and
``hf-hdcid evaluate --data`` / ``--test-data`` read their argument:

* a ``pathlib.Path`` (any ``os.PathLike``) is always a local path;
* a string that names an existing local file or folder is that path: **a local folder named like
  ``org/name`` wins over the Hub dataset of that id** (write ``./org/name`` or an absolute path to
  make the intent explicit either way);
* a string that looks like a path (starts with ``/``, ``.`` or ``~``, ends with a separator, or has
  more than one ``/``; :func:`hf_hdcid.loading.looks_like_local_path`) is a local path, and
  ``load_shards`` gives its usual error if nothing is there;
* any other string that is a valid ``org/name`` repo id is the Hub dataset repo of that id
  (:func:`download_shards`); anything else (e.g. a bare ``name``) is a local path.

Importing this module is light: huggingface_hub and ``datasets`` are imported when a function runs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
STATE_FILE = "state.json"
DATASET_INFO_FILE = "dataset_info.json"
SYNTHETIC_FILE = "synthetic.json"
DEFAULT_LICENSE = "other"
DEFAULT_COMMIT_MESSAGE = "Upload H-DCID feature shards"

_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+\-]*$")  # Hub licence identifiers: mit, cc-by-4.0, openrail++, other
_FEATURE = re.compile(r"^(Array2D|Array3D|Array4D)\(shape=\[([\d, ]+)\], dtype='(\w+)'\)$")
_VALUE = re.compile(r"^Value\('(\w+)'\)$")
_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"))

COLUMN_MEANINGS = {
    "clip_id": "clip id, unique within its split",
    "split": "split of the clip (rows of a split are contiguous)",
    "label": "clip class; -1 if none (pretraining clips)",
    "audio": "audio features, one row per segment (VGGish in the paper's benchmarks)",
    "video": "video feature maps per segment (VGG19 pool5 in the paper's benchmarks)",
    "text": "text token features (BERT in the paper's benchmarks), zero-padded",
    "prompt": "the text the token features come (or will) from",
    "audio_labels": "per-segment multi-hot audio events (all -1: not annotated)",
    "video_labels": "per-segment multi-hot visual events (all -1: not annotated)",
    "frames": "RGB frames, uint8 0..255 (segmentation shards)",
    "masks": "0/1 ground-truth mask of the sounding object per frame (segmentation shards)",
    "mask_valid": "1 where the frame's mask is annotated (AVSBench-S4 train: the first frame only)",
}


# =============================================================================================
# The folder
# =============================================================================================
def _is_shard_format_file(name: str) -> bool:
    """A top-level file of the shard-folder format (what a new push replaces or removes)."""
    return "/" not in name and (name.endswith(".arrow") or name in (STATE_FILE, DATASET_INFO_FILE, _manifest_name(),
                                                                     SYNTHETIC_FILE))


def _manifest_name() -> str:
    from .shards import MANIFEST_NAME

    return MANIFEST_NAME


def shard_files(folder: str | os.PathLike) -> list[str]:
    """The files :func:`push_shards` uploads, sorted: the Arrow files that ``state.json`` lists,
    ``state.json``, ``dataset_info.json``, ``hdcid_shards.json`` and ``synthetic.json`` (those present);
    nothing else (no hidden files, locks, caches or sub-folders)."""
    folder = Path(folder)
    state = json.loads((folder / STATE_FILE).read_text())
    names = [entry["filename"] for entry in state.get("_data_files", [])]
    for name in names:
        if not isinstance(name, str) or "/" in name or os.sep in name or name.startswith("."):
            raise ValueError(f"{folder / STATE_FILE}: expected plain Arrow file names in _data_files, got {name!r}")
    names += [n for n in (STATE_FILE, DATASET_INFO_FILE, _manifest_name(), SYNTHETIC_FILE) if (folder / n).is_file()]
    return sorted(set(names))


def check_shard_folder(folder: Any) -> tuple[Path, dict]:
    """The absolute folder and its manifest; ValueError naming ``folder``, what was expected and what
    was found unless it is a shard folder that :func:`~hf_hdcid.data.shards.load_shards` loads (every
    file checked against the manifest) and that has a manifest."""
    from .shards import MANIFEST_FORMAT, MANIFEST_NAME, load_shards, read_manifest

    expected = f"a shard folder written by write_shards (a datasets save_to_disk folder with {MANIFEST_NAME})"
    if not isinstance(folder, (str, os.PathLike)) or not str(folder):
        raise ValueError(f"folder: expected {expected}, got {folder!r}")
    path = Path(folder).expanduser().absolute()
    if not path.is_dir():
        state = "a file" if path.exists() else "a path that does not exist"
        raise ValueError(f"folder: expected {expected}, got {str(path)!r} ({state})")
    if not (path / MANIFEST_NAME).is_file():
        raise ValueError(f"folder: expected {expected}, got {str(path)!r} without {MANIFEST_NAME}")
    manifest = read_manifest(path)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"folder: expected {expected}, got {path / MANIFEST_NAME} with format "
                         f"{manifest.get('format')!r} (expected {MANIFEST_FORMAT!r})")
    try:
        load_shards(path)  # every shard file against the manifest, the rows against num_rows
    except (ValueError, OSError) as err:
        raise ValueError(f"folder: expected {expected} that loads, got {' '.join(str(err).split())}") from None
    return path, manifest


def _read_synthetic(folder: Path) -> dict | None:
    path = folder / SYNTHETIC_FILE
    if not path.is_file():
        return None
    try:
        description = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    return description if isinstance(description, dict) else None


# =============================================================================================
# The dataset card
# =============================================================================================
def _size_category(n: int) -> str:
    for bound, name in _SIZE_CATEGORIES:
        if n < bound:
            return name
    return "n>10M"


def _column_rows(columns: dict, segmentation: dict | None = None) -> list[tuple[str, str, str, str]]:
    """(column, shape per clip, dtype, meaning) from the manifest's column descriptions (and its
    ``segmentation`` entry: the shapes of the frame / mask bytes)."""
    rows = []
    f, (h, w) = (segmentation["num_frames"], segmentation["frame_size"]) if segmentation else (None, (None, None))
    stored = {"frames": (f"[{f}, {h}, {w}, 3]", "uint8 bytes"), "masks": (f"[{f}, {h}, {w}]", "0/1 bits (np.packbits)")}
    for name, text in columns.items():
        feature, value = _FEATURE.match(str(text)), _VALUE.match(str(text))
        if segmentation and name in stored:
            shape, dtype = stored[name]
        elif feature:
            shape, dtype = "[" + ", ".join(s.strip() for s in feature.group(2).split(",")) + "]", feature.group(3)
        elif value:
            shape, dtype = "scalar", value.group(1)
        else:
            shape, dtype = "–", str(text)
        rows.append((name, shape, dtype, COLUMN_MEANINGS.get(name, "")))
    return rows


def _size_fields(modalities: list[str]) -> list[str]:
    """The manifest's feature-size fields that concern ``modalities``."""
    fields = {"audio": ["audio_feature_dim"], "video": ["video_spatial_size", "video_feature_dim"],
              "text": ["text_feature_dim"]}
    return ["num_frames"] + [f for m in modalities for f in fields[m]]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, (list, dict)):
        value = json.dumps(value, separators=(", ", ": "))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _file_names(value: Any) -> str:
    """A converter input as the card shows it: every string reduced to its last path component (no local
    folders), lists and mappings kept, e.g. ``{"audio": "/data/AVVP_eval_audio.csv"}`` ->
    ``{"audio": "AVVP_eval_audio.csv"}``."""
    def public(v):
        if isinstance(v, str):
            return Path(v).name or v
        if isinstance(v, dict):
            return {str(k): public(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [public(x) for x in v]
        return v

    value = public(value)
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))


def _source_section(manifest: dict, synthetic: dict | None) -> tuple[list[str], dict]:
    """Markdown lines of the Source section and the metadata it adds."""
    source = manifest.get("source")
    if isinstance(source, dict):
        version = source.get("converter_version", "not recorded")
        rows = [("Layout", f"`{source.get('layout', '–')}`"),
                ("Converter", f"`hf-hdcid convert-features`, version {version}")]
        paths = source.get("paths")
        if isinstance(paths, dict):  # file names only: local paths stay private
            names = [f"`{k}`: `{_file_names(v)}`" for k, v in paths.items() if v is not None]
            rows.append(("Inputs (file names)", ", ".join(names) or "–"))
        elif isinstance(paths, (list, tuple)):
            rows.append(("Inputs (file names)", f"`{_file_names(paths)}`"))
        skipped = source.get("skipped_missing")
        if isinstance(skipped, (list, tuple)):
            shown = ", ".join(f"`{s}`" for s in list(skipped)[:10]) + (", ..." if len(skipped) > 10 else "")
            rows.append(("Clips skipped (features missing)", f"{len(skipped)}" + (f" ({shown})" if shown else "")))
        elif skipped is not None:
            rows.append(("Clips skipped (features missing)", skipped))
        lines = ["Converted from the authors' original feature layout by `hf-hdcid convert-features`.", "",
                 *_table(("Field", "Value"), rows)]
        meta = {"layout": source.get("layout"), "converter_version": source.get("converter_version")}
        return lines, meta
    if synthetic is not None:
        world = synthetic.get("world") if isinstance(synthetic.get("world"), dict) else {}
        classes = world.get("classes") if isinstance(world.get("classes"), list) else []
        segmentation = synthetic.get("segmentation") if isinstance(synthetic.get("segmentation"), dict) else None
        generator = ("`hf_hdcid.data.synthetic_segmentation.build_synthetic_segmentation_shards` "
                     "(`SyntheticSegmentation`)" if segmentation else
                     "`hf_hdcid.data.synthetic.build_synthetic_shards` (`SyntheticAVT`)")
        rows = [("Generator", generator), ("Seed", world.get("seed", "–"))]
        if classes:
            rows.append(("Event classes", f"{len(classes)}: " + ", ".join(map(str, classes))))
        if isinstance(synthetic.get("clips"), dict):
            rows.append(("Clips per split", ", ".join(f"{s} {n}" for s, n in synthetic["clips"].items())))
        rows += [(f"`{k}`", v) for k, v in world.items() if k not in ("seed", "classes")]
        if segmentation:
            rows += [(f"`segmentation.{k}`", v) for k, v in segmentation.items() if k != "appearances"]
        tasks = "`synthetic_avs`" if segmentation else "`synthetic_ave` / `synthetic_avvp`"
        lines = ["**Synthetic features**: generated by this package's synthetic audio-visual-text benchmark, not "
                 "extracted from real recordings. They exercise the pipeline (pretraining, TOC, the cross-modal "
                 f"tasks {tasks}) and say nothing about real-world quality. The facts "
                 "below come from `synthetic.json`.", "", *_table(("Field", "Value"), rows)]
        return lines, {"synthetic": True, "seed": world.get("seed")}
    return ["The manifest records no source (the shards were written by `write_shards` directly).", ""], {}


def render_dataset_card(folder: str | os.PathLike, repo_id: str | None = None, license: str = DEFAULT_LICENSE):
    """The ``README.md`` of a shard folder as a :class:`huggingface_hub.DatasetCard`: metadata
    (licence, tags, size category and an ``hdcid_shards`` block with the splits and their clip counts),
    then the schema, splits, source (converter layout and version, or the synthetic world), licence and
    how to load it. Checks the folder (:func:`check_shard_folder`) and the licence first."""
    from ..hub import check_repo_id

    path, manifest = check_shard_folder(folder)
    license = check_license(license)
    if repo_id is not None:
        check_repo_id(repo_id)
    return _render_card(path, manifest, repo_id, license)


def _render_card(path: Path, manifest: dict, repo_id: str | None, license: str):
    from huggingface_hub import DatasetCard, DatasetCardData

    synthetic = _read_synthetic(path)
    repo = repo_id or "ORG/NAME"
    name = repo.split("/")[-1]
    splits = {str(k): int(v) for k, v in (manifest.get("splits") or {}).items()}
    num_rows = int(manifest.get("num_rows", sum(splits.values())))
    stored = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    modalities = [m for m in ("audio", "video", "text") if m in (stored.get("modalities") or [])]
    source_lines, source_meta = _source_section(manifest, synthetic)
    layout = source_meta.get("layout")
    tags = ["hf-hdcid", "hdcid", "feature-shards", "multimodal", *modalities]
    if synthetic is not None and not isinstance(manifest.get("source"), dict):
        tags.append("synthetic")
    if isinstance(layout, str) and layout:
        tags.append(layout)
    block = {"format": manifest.get("format"), "version": manifest.get("version"), "num_rows": num_rows,
             "splits": splits, "modalities": modalities, "label_width": manifest.get("label_width"),
             **{k: v for k, v in source_meta.items() if v is not None}}
    data = DatasetCardData(license=license, pretty_name=name, tags=tags, size_categories=[_size_category(num_rows)],
                           hdcid_shards=block)
    files = shard_files(path)
    arrow = [f for f in files if f.endswith(".arrow")]
    total = sum((path / f).stat().st_size for f in files)
    pretrain_split = "pretrain" if "pretrain" in splits else next(iter(splits), "train")
    task = "synthetic_ave" if "synthetic" in tags else (layout if layout in ("ave", "avvp") else "TASK")
    train_split = "train" if "train" in splits else pretrain_split
    licence_text = (
        [f"Licence: `{license}`. **Set the licence of the benchmark these features were extracted from** "
         "(`hf-hdcid push-data ... --license ID`, or edit `license:` above): features derived from a dataset "
         "inherit its terms."] if license == DEFAULT_LICENSE and synthetic is None else
        [f"Licence: `{license}`" + (" (synthetic features; set another with `--license`)."
                                    if license == DEFAULT_LICENSE else ".")])
    lines = [
        f"# {name}", "",
        f"H-DCID / DCID feature shards of {num_rows:,} clips ({', '.join(modalities) or 'no modalities recorded'}), "
        "written by the `hf-hdcid` package for the model of *Unlocking the "
        "Potential of Multimodal Unified Discrete Representation through Training-Free Codebook Optimization "
        "and Hierarchical Alignment* ([arXiv:2403.05168](https://arxiv.org/abs/2403.05168)). The repository is "
        "a `datasets` `save_to_disk` folder (memory-mapped Arrow) plus the manifest `hdcid_shards.json`, "
        "exactly as `hf_hdcid.data.shards.write_shards` wrote it; one row is one clip.", "",
        "## Loading", "",
        "```python",
        "from hf_hdcid.data.shards import load_shards",
        "",
        f'data, collate = load_shards("{repo}", split="{train_split}")   # downloaded once into the Hub cache',
        "batch = collate(data[:8])   # audio / video / text tensors [B, T, ...], labels, clip ids",
        "```", "",
        "```bash",
        f"python scripts/pretrain.py --data {repo} --split {pretrain_split}",
        f"hf-hdcid evaluate MODEL --task {task} --direction v2a --data {repo}",
        "```", "",
        "Once downloaded, the shards load from the Hub cache with `HF_HUB_OFFLINE=1`. A local folder named "
        f"`{repo}` (relative to the working directory) takes precedence over this repository.", "",
        "## Splits", "",
        *_table(("Split", "Clips"), [(f"`{s}`", n) for s, n in splits.items()] + [("**all**", num_rows)]), "",
        "## Schema", "",
        "`T` time steps (segments) per clip; features are stored float16 (video, text) or float32 (audio) and "
        "come back in those dtypes from `load_shards`.", "",
        *_table(("Column", "Shape per clip", "Dtype", "Meaning"),
                [(f"`{c}`", s, f"`{d}`", m) for c, s, d, m in _column_rows(manifest.get("columns") or {},
                                                                                 manifest.get("segmentation"))]), "",
        "Feature sizes: " + ", ".join(f"`{k}` = {stored[k]}" for k in _size_fields(modalities) if k in stored)
        + ".", "",
        "## Source", "",
        *source_lines, "",
        "## Licence", "",
        *licence_text, "",
        "## Files", "",
        f"{len(arrow)} Arrow file(s), `{STATE_FILE}`, `{DATASET_INFO_FILE}`, `{_manifest_name()}`"
        + (f", `{SYNTHETIC_FILE}`" if SYNTHETIC_FILE in files else "") + f": {total / 2**20:,.1f} MiB in all.",
        "",
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def check_license(license: Any) -> str:
    """ValueError unless ``license`` looks like a Hub licence identifier (``mit``, ``cc-by-4.0``, ``other``)."""
    if not isinstance(license, str) or not _LICENSE.match(license):
        raise ValueError(f"license: expected a Hub licence identifier in lower case such as 'cc-by-4.0', 'mit' or "
                         f"'other', got {license!r}")
    return license


# =============================================================================================
# Upload
# =============================================================================================
def push_shards(folder: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
                license: str = DEFAULT_LICENSE, commit_message: str = DEFAULT_COMMIT_MESSAGE):
    """Upload a shard folder to the Hub **dataset** repo ``repo_id`` in one commit.

    The commit holds the folder's files unchanged (:func:`shard_files`) and a ``README.md`` dataset
    card (:func:`render_dataset_card`; the folder itself is not modified). Files of the shard format
    that an earlier push left in the repo and this folder does not have (e.g. ``data-00003-of-00004.arrow``
    after re-sharding) are deleted in the same commit; other files (a LICENSE you added) are kept, the
    card is replaced. Creates the repo (private if ``private``) if needed. Returns the
    :class:`huggingface_hub.CommitInfo` (a str: the commit URL).

    Checked before any network call, each a ValueError naming the field: the folder (it must load with
    ``load_shards``), the repo id, the licence, the commit message, the token (``token=`` or
    ``huggingface_hub.get_token()``). An unreachable Hub is a one-line OSError; nothing is committed then.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi, get_token

    from ..hub import check_repo_id, hub_connection

    path, manifest = check_shard_folder(folder)
    check_repo_id(repo_id)
    check_license(license)
    if not isinstance(commit_message, str) or not commit_message.strip():
        raise ValueError(f"commit_message: expected a non-empty string, got {commit_message!r}")
    if not isinstance(private, bool):
        raise ValueError(f"private: expected True or False, got {private!r}")
    token = token or get_token()
    if not token:
        raise ValueError("no Hugging Face token: expected a token from `hf auth login`, the HF_TOKEN "
                         "environment variable or token=..., got none")
    card = str(_render_card(path, manifest, repo_id, license))
    DatasetCard(card)  # the Hub validates the metadata only once uploading has begun; fail here instead
    files = shard_files(path)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path / name)) for name in files]
    operations.append(CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card.encode("utf-8")))

    api = HfApi(token=token)
    with hub_connection("nothing was uploaded"):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        stale = [f for f in api.list_repo_files(repo_id, repo_type="dataset")
                 if _is_shard_format_file(f) and f not in files]
        operations += [CommitOperationDelete(path_in_repo=f) for f in stale]
        return api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="dataset")


# =============================================================================================
# Download and the path-or-id rule
# =============================================================================================
def download_shards(repo_id: str, *, revision: str | None = None, token: str | None = None) -> Path:
    """The snapshot folder of the Hub dataset repo ``repo_id`` (``revision``: branch, tag or commit;
    default ``main``) in the Hub cache, downloaded with ``snapshot_download`` if needed. With
    ``HF_HUB_OFFLINE=1`` it is read from the cache only.

    Errors are one line naming the repo id and what to do: a bad repo id or revision argument, a repo
    or revision the Hub does not have (or cannot show this token): ValueError; not (or only partly) in
    the cache while offline: FileNotFoundError; the Hub unreachable or refusing, and the repo not
    cached: OSError.
    """
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import (HfHubHTTPError, IncompleteSnapshotError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    from ..hub import check_repo_id, transport_errors, unreachable_hub

    check_repo_id(repo_id)
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ValueError(f"revision: expected None or a branch, tag or commit of {repo_id!r}, got {revision!r}")
    repo = f"the Hub dataset repo {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    cache = f"the Hub cache ({constants.HF_HUB_CACHE})"
    instead = "or give the path of a local shard folder"
    try:
        snapshot = huggingface_hub.snapshot_download(repo_id, repo_type="dataset", revision=revision, token=token)
    except RevisionNotFoundError:
        raise ValueError(f"revision: the Hub dataset repo {repo_id!r} at {constants.ENDPOINT} has no revision "
                         f"{revision!r}: expected one of its branches, tags or commits") from None
    except RepositoryNotFoundError:  # also gated / private repos the token cannot read
        raise ValueError(f"the Hub dataset repo {repo_id!r} does not exist at {constants.ENDPOINT}, or it is private "
                         "or gated and the token cannot read it: check the name, log in with `hf auth login` (or "
                         f"set HF_TOKEN), {instead}") from None
    except IncompleteSnapshotError as err:  # an interrupted download, and no answer from the Hub now
        raise FileNotFoundError(f"{repo} is only partly in {cache} ({' '.join(str(err).split())}); "
                                f"{instead}") from None
    except LocalEntryNotFoundError as err:  # not cached and no answer from the Hub
        cause = err.__cause__
        if constants.HF_HUB_OFFLINE or type(cause).__name__ == "OfflineModeIsEnabled":
            raise FileNotFoundError(f"{repo} is not in {cache} and HF_HUB_OFFLINE=1 forbids downloading it: "
                                    f"download it once with network access (unset HF_HUB_OFFLINE), {instead}") from None
        if isinstance(cause, transport_errors()):
            raise unreachable_hub(cause, f"{repo} is not in {cache}: check the connection, {instead}") from None
        raise OSError(f"cannot download {repo} ({' '.join(str(err).split())})") from None
    except transport_errors() as err:
        raise unreachable_hub(err, f"{repo} was not downloaded") from None
    except HfHubHTTPError as err:  # refused by the Hub (401, 403, 5xx) and not cached
        raise OSError(f"cannot download {repo} from {constants.ENDPOINT} ({' '.join(str(err).split())})") from None
    return Path(snapshot)


def shards_repo_id(path_or_repo_id: Any) -> str | None:
    """The Hub dataset repo id that :func:`resolve_shards` downloads ``path_or_repo_id`` from, or None
    when it is a local path (rule in the module docstring). Touches no network."""
    from ..hub import check_repo_id
    from ..loading import looks_like_local_path

    if not isinstance(path_or_repo_id, str) or not path_or_repo_id:
        return None
    if looks_like_local_path(path_or_repo_id) or Path(path_or_repo_id).exists():
        return None  # a local folder named like org/name wins over the Hub id
    try:
        return check_repo_id(path_or_repo_id)
    except ValueError:
        return None


def resolve_shards(path_or_repo_id: Any, *, revision: str | None = None, token: str | None = None) -> Path:
    """A local shard folder for ``path_or_repo_id``: the path itself, or the Hub cache snapshot of the
    dataset repo it names (:func:`download_shards`); rule in the module docstring. A local path is
    returned as given (with ``~`` expanded), whether it exists or not: ``load_shards`` then names
    what is wrong with it."""
    repo_id = shards_repo_id(path_or_repo_id)
    if repo_id is not None:
        try:
            return download_shards(repo_id, revision=revision, token=token)
        except (ValueError, OSError) as err:  # same type, one line saying why the Hub was asked at all
            err.args = (f"no local folder {repo_id!r} (read as a Hub dataset repo id): {err}",)
            raise
    if isinstance(path_or_repo_id, (str, os.PathLike)):
        return Path(path_or_repo_id).expanduser()
    return Path(path_or_repo_id)  # TypeError for what is no path at all, as before


__all__ = ["push_shards", "download_shards", "resolve_shards", "shards_repo_id", "render_dataset_card",
           "check_shard_folder", "check_license", "shard_files", "COLUMN_MEANINGS", "DEFAULT_LICENSE"]
