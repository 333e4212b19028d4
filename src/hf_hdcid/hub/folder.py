"""The verbs that own a saved model folder: everything written into one after ``save_pretrained``
goes through them, so that config, figures, results and card always agree.

* :func:`add_toc` – TOC channels into ``config.json`` (``toc_channels``), the paper's Fig. 2
  (``toc_cosine.png``), ``toc_summary.json``, the card refreshed (``hf-hdcid toc``);
* :func:`add_eval_results` – downstream run records (as ``hf-hdcid evaluate`` writes them) into
  ``downstream_results.json``, their model-index form into ``eval_results.json``, the results chart
  ``results.png``, the card refreshed (``hf-hdcid evaluate --to-card``, the demo);
* :func:`refresh_card` – ``README.md`` re-rendered from what the folder holds (``hf-hdcid card``,
  the pretraining loop at the end);
* :func:`save_converted_model` – a model converted from an original checkpoint, its
  ``conversion_report.json`` and its card, as one new folder (``hf-hdcid convert-original``).

A run record replaces an older one for the same task, direction, TOC setting (on/off, channels per
layer), protocol and layers (:func:`hf_hdcid.downstream.report.record_key`); records for other
settings are kept. Entries of ``eval_results.json`` that no record produced (hand-written results)
are kept as they are.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .card import (
    CARD_FILE,
    CONFIG_FILE,
    EVAL_RESULTS_FILE,
    TRAINING_INFO_FILE,
    _read_json,
    check_model_dir,
    eval_results_from_dicts,
    write_model_card,
)

DOWNSTREAM_RESULTS_FILE = "downstream_results.json"
RESULTS_FIGURE = "results.png"
TOC_FIGURE = "toc_cosine.png"
TOC_SUMMARY_FILE = "toc_summary.json"
LOSS_FIGURE = "loss_curves.png"
# what add_toc carries from the input folder into the new one: the training is the same
_CARRIED = (TRAINING_INFO_FILE, LOSS_FIGURE)


def _write_json(path: Path, value) -> None:
    """``value`` as indented JSON at ``path``, atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# a sentence of every card render_model_card writes (model_cards/hdcid_card.md): a README.md without it
# was written by hand
OWN_CARD_MARK = "Packaged with the `hf-hdcid` Python package"


def is_own_card(folder: str | os.PathLike) -> bool:
    """Whether ``folder/README.md`` is missing or a card this package rendered (not a hand-written one)."""
    path = Path(folder) / CARD_FILE
    return not path.is_file() or OWN_CARD_MARK in path.read_text(encoding="utf-8", errors="replace")


def refresh_card(folder: str | os.PathLike, repo_id: str | None = None, *, keep_hand_written: bool = False,
                 folder_name: str | None = None) -> Path:
    """Re-render ``README.md`` from the folder's config, weights, ``training_info.json``,
    ``eval_results.json`` and figures; returns its path. With ``keep_hand_written`` a hand-written
    card (:func:`is_own_card` false) is left as it is. ``folder_name``: the name the folder will have
    (its title) when it is written under a temporary name."""
    if keep_hand_written and not is_own_card(folder):
        return Path(folder) / CARD_FILE
    return write_model_card(folder, repo_id=repo_id, folder_name=folder_name)


# =============================================================================================
# TOC
# =============================================================================================
def write_toc_files(folder: str | os.PathLike, model, *, source: str | None = None, figure: bool = True) -> dict:
    """Fig. 2 (``toc_cosine.png``, unless ``figure=False``) and ``toc_summary.json`` of ``model``'s stored
    TOC channels into ``folder``; returns the summary. ``model``: an HDCIDModel or HDCIDForPreTraining
    whose ``config.toc_channels`` are set."""
    from ..toc import cosine_similarity_summary, plot_cosine_heatmaps

    folder = Path(folder)
    base = getattr(model, "hdcid", model)
    channels = model.config.toc_channels
    books = base.codebooks()
    summary = {"model": source if source is not None else folder.name, "settings": model.config.toc_settings,
               "channels": channels, "layers": cosine_similarity_summary(books, channels)}
    if figure:
        plot_cosine_heatmaps(books, channels, folder / TOC_FIGURE)
    _write_json(folder / TOC_SUMMARY_FILE, summary)
    return summary


def add_toc(folder: str | os.PathLike, num_channels: int, *, lam: float = 0.7, normalize: bool = False,
            top: int = 1, bottom: int = 0, out: str | os.PathLike | None = None, overwrite: bool = False,
            repo_id: str | None = None) -> dict:
    """Compute TOC (paper section 4.1) with ``num_channels`` channels per layer and write the model with
    them to ``out`` (default ``<folder>-toc<num_channels>``, never the input folder): ``config.json``
    with ``toc_channels`` / ``toc_settings``, the weights, ``toc_cosine.png``, ``toc_summary.json``,
    ``training_info.json`` and ``loss_curves.png`` of the input, the input's downstream records that
    did not use TOC (with their ``eval_results.json`` and ``results.png``; TOC records used other
    channels and are dropped) and a fresh card. Returns the summary with ``out_dir``.

    ``folder`` is a model folder or a cached Hub id. Checked before anything is computed: the folder's
    weights against its config (:func:`hf_hdcid.loading.check_model_folder`), ``num_channels`` against
    the model and ``out`` (an existing non-empty folder is replaced only with ``overwrite`` and only if
    it is a model folder). The output is written under ``out``'s lock into a temporary folder and
    renamed into place."""
    from ..folders import exclusive_folder, staged_folder
    from ..loading import check_model_folder, load_model, looks_like_local_path
    from ..modeling import HDCIDForPreTraining, HDCIDModel

    name = str(folder)
    local = Path(name).is_dir()
    if local:
        config = check_model_folder(name)
    elif looks_like_local_path(name) or Path(name).exists():
        raise FileNotFoundError(f"{name}: no such model folder")
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(name)
        if getattr(config, "model_type", None) != "hdcid":
            raise ValueError(f"{name}: model_type: expected 'hdcid', got {getattr(config, 'model_type', None)!r}")
    if config.quantizer == "fsq":
        from ..modeling.configuration_hdcid import FSQ_NO_TOC

        raise ValueError(f"{name}: TOC needs a codebook; quantizer='fsq' has none ({FSQ_NO_TOC})")
    if isinstance(num_channels, bool) or not isinstance(num_channels, int) or not 1 <= num_channels <= config.hidden_size:
        raise ValueError(f"num_channels: expected an int in [1, {config.hidden_size}] (the code width), "
                         f"got {num_channels!r}")
    target = Path(out) if out else Path(name.rstrip("/") + f"-toc{num_channels}")
    if Path(name).exists() and target.resolve() == Path(name).resolve():
        raise ValueError(f"out_dir: expected a folder other than the input model {name!r}")
    records = []
    if local and (Path(name) / DOWNSTREAM_RESULTS_FILE).is_file():
        records = [r for r in _read_records(Path(name)) if not r["toc"]["enabled"]]
    pretraining = any("PreTraining" in a for a in (config.architectures or []))
    with exclusive_folder(target, "hf-hdcid toc"), staged_folder(
            target, overwrite=overwrite, replaceable=lambda p: (p / CONFIG_FILE).is_file(), what="model folder") as tmp:
        model = load_model(name, HDCIDForPreTraining if pretraining else HDCIDModel)
        model.compute_toc(num_channels, lam=lam, normalize=normalize, top_bottom=(top, bottom))
        model.save_pretrained(tmp)
        summary = write_toc_files(tmp, model, source=name)
        for carried in _CARRIED if local else ():
            if (Path(name) / carried).is_file():
                shutil.copyfile(Path(name) / carried, tmp / carried)
        if records:
            _write_results(tmp, records, [])
        refresh_card(tmp, repo_id=repo_id, folder_name=target.absolute().name)
    summary["out_dir"] = str(target)
    return summary


# =============================================================================================
# Evaluation results
# =============================================================================================
def _read_records(folder: Path) -> list[dict]:
    path = folder / DOWNSTREAM_RESULTS_FILE
    if not path.is_file():
        return []
    records = _read_json(path)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a JSON list of downstream run records, got {type(records).__name__}")
    return records


def _check_record(record, i: int) -> dict:
    required = ("task", "direction", "protocol", "toc", "metrics", "score", "main_metric", "model_name",
                "num_layers", "layers", "seeds", "data")
    if not isinstance(record, dict):
        raise ValueError(f"records entry {i}: expected a downstream run record (a dict as hf-hdcid evaluate "
                         f"writes it), got {type(record).__name__}")
    missing = [k for k in required if k not in record]
    if missing:
        raise ValueError(f"records entry {i}: expected a downstream run record with the fields {list(required)}, "
                         f"got one without {missing}")
    return {k: v for k, v in record.items() if k not in ("path", "per_seed")}  # no local path, no probe curves


def _write_results(folder: Path, records: list[dict], foreign: list[dict]) -> None:
    """``downstream_results.json``, ``eval_results.json`` (hand-written entries first) and ``results.png``."""
    from ..downstream.report import canonical_order, eval_results, plot_results

    records = canonical_order(records)
    results = foreign + eval_results(records)
    eval_results_from_dicts(results, source=str(folder / EVAL_RESULTS_FILE))  # never write what the card rejects
    _write_json(folder / DOWNSTREAM_RESULTS_FILE, records)
    _write_json(folder / EVAL_RESULTS_FILE, results)
    protocols = sorted({r["protocol"] for r in records})
    title = f"{records[0]['model_name']}: cross-modal generalisation ({', '.join(protocols)} protocol)"
    plot_results(records, folder / RESULTS_FIGURE, title=title)


def add_eval_results(folder: str | os.PathLike, records: list[dict], *, repo_id: str | None = None,
                     dataset_name: str | None = None) -> Path:
    """Add downstream run records (:func:`hf_hdcid.downstream.evaluate_downstream`) to a model folder:
    merged into ``downstream_results.json`` (a record replaces an older one with the same
    :func:`~hf_hdcid.downstream.report.record_key`), converted into ``eval_results.json`` (one
    model-index entry per task, direction, TOC setting and protocol), drawn as ``results.png``, and
    the card refreshed (a hand-written ``README.md`` is kept: :func:`is_own_card`). Holds the folder's
    lock; returns the card's path."""
    from ..downstream.report import eval_results, record_key
    from ..folders import exclusive_folder

    folder = check_model_dir(folder)
    if not isinstance(records, (list, tuple)) or not records:
        raise ValueError(f"records: expected a non-empty list of downstream run records, got {records!r}")
    new = [_check_record(r, i) for i, r in enumerate(records)]
    if dataset_name is not None:
        new = [{**r, "dataset_name": dataset_name} for r in new]
    with exclusive_folder(folder, "add_eval_results"):
        old = _read_records(folder)
        path = folder / EVAL_RESULTS_FILE
        existing = _read_json(path) if path.is_file() else []
        eval_results_from_dicts(existing, source=str(path))  # a broken file is reported, not overwritten
        derived = eval_results(old)
        foreign = [e for e in existing if e not in derived]
        keys = {record_key(r) for r in new}
        merged = [r for r in old if record_key(r) not in keys]
        for r in new:  # the last of several records with one key wins
            merged = [m for m in merged if record_key(m) != record_key(r)] + [r]
        _write_results(folder, merged, foreign)
        return refresh_card(folder, repo_id=repo_id, keep_hand_written=True)


def set_eval_results(folder: str | os.PathLike, results: list, *, repo_id: str | None = None) -> Path:
    """Hand-written results (:class:`huggingface_hub.EvalResult` field dicts, e.g. ``hf-hdcid card
    --results``) become the folder's ``eval_results.json``, followed by the entries of its downstream
    records (which stay their source), and the card is refreshed. The results are checked first: a
    bad entry leaves the folder as it was. Returns the card's path."""
    from ..downstream.report import eval_results
    from ..folders import exclusive_folder

    folder = check_model_dir(folder)
    eval_results_from_dicts(results)
    with exclusive_folder(folder, "hf-hdcid card"):
        derived = eval_results(_read_records(folder))
        _write_json(folder / EVAL_RESULTS_FILE, list(results) + [d for d in derived if d not in results])
        return refresh_card(folder, repo_id=repo_id)


__all__ = ["add_toc", "add_eval_results", "save_converted_model", "CONVERSION_REPORT_FILE", "set_eval_results", "refresh_card", "is_own_card", "OWN_CARD_MARK", "write_toc_files", "DOWNSTREAM_RESULTS_FILE",
           "RESULTS_FIGURE", "TOC_FIGURE", "TOC_SUMMARY_FILE"]


# =============================================================================================
# Converted original checkpoints
# =============================================================================================
CONVERSION_REPORT_FILE = "conversion_report.json"


def save_converted_model(model, report: dict, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """``save_pretrained`` ``model`` (an ``HDCIDForPreTraining`` or its ``HDCIDModel`` encoder) into the
    new folder ``out_dir`` with ``conversion_report.json`` (``report``) and its card; returns the folder.

    Written under the folder's lock into a temporary folder and renamed into place complete
    (:mod:`hf_hdcid.folders`); an existing non-empty ``out_dir`` is replaced only with ``overwrite`` and
    only if it is a model folder (has ``config.json``)."""
    from ..folders import exclusive_folder, staged_folder

    out = Path(out_dir)
    with exclusive_folder(out, "hf-hdcid convert-original"), staged_folder(
            out, overwrite=overwrite, replaceable=lambda p: (p / CONFIG_FILE).is_file(), what="model folder") as tmp:
        model.save_pretrained(tmp)
        _write_json(tmp / CONVERSION_REPORT_FILE, report)
        write_model_card(tmp, folder_name=out.name)
    return out
