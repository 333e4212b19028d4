"""Model folders, model cards and Hub upload of a saved H-DCID / DCID model.

A model folder is what ``save_pretrained`` writes (``config.json``, ``model.safetensors``, the
remote-code ``*.py``) plus what the verbs of :mod:`.folder` add: ``training_info.json`` (the
pretraining loop), ``toc_summary.json`` and ``toc_cosine.png`` (:func:`add_toc`),
``downstream_results.json``, ``eval_results.json`` and ``results.png`` (:func:`add_eval_results`),
``loss_curves.png`` and the card ``README.md`` (:func:`refresh_card`). Nothing else writes into a
model folder, so its config, figures, results and card agree.

* :mod:`.card` renders the card (:func:`render_model_card`, :func:`write_model_card`);
* :mod:`.folder` owns the folder (:func:`add_toc`, :func:`add_eval_results`, :func:`refresh_card`);
* :mod:`.push` uploads it in one commit (:func:`push`, ``hf-hdcid push``).

Importing this package costs no more than importing hf_hdcid: huggingface_hub is imported when a
function runs.
"""

from .card import (
    BEHAVIOUR_OPTIONS,
    BIBTEX,
    CARD_FILE,
    CONFIG_FILE,
    EVAL_RESULTS_FILE,
    FIGURES,
    ORIGINAL_CODE_URL,
    PAPER_AUTHORS,
    PAPER_TITLE,
    PAPER_URL,
    TRAINING_INFO_FILE,
    check_model_dir,
    eval_results_from_dicts,
    paper_vs_original_table,
    render_model_card,
    weight_files,
    write_model_card,
)
from .folder import (
    DOWNSTREAM_RESULTS_FILE,
    RESULTS_FIGURE,
    TOC_FIGURE,
    TOC_SUMMARY_FILE,
    add_eval_results,
    add_toc,
    save_converted_model,
    is_own_card,
    refresh_card,
    set_eval_results,
    write_toc_files,
)
from .push import (
    UPLOAD_NAMES,
    UPLOAD_SUFFIXES,
    check_repo_id,
    is_repo_id,
    hub_connection,
    push,
    transport_errors,
    unreachable_hub,
    upload_files,
)

__all__ = ["save_converted_model", "render_model_card", "write_model_card", "push", "upload_files", "check_model_dir", "check_repo_id", "is_repo_id",
           "eval_results_from_dicts", "weight_files", "paper_vs_original_table", "hub_connection", "transport_errors", "unreachable_hub",
           "add_toc", "add_eval_results", "set_eval_results", "refresh_card", "is_own_card", "write_toc_files",
           "BEHAVIOUR_OPTIONS", "FIGURES", "PAPER_TITLE", "PAPER_AUTHORS", "PAPER_URL", "ORIGINAL_CODE_URL", "BIBTEX",
           "CONFIG_FILE", "CARD_FILE", "TRAINING_INFO_FILE", "EVAL_RESULTS_FILE", "DOWNSTREAM_RESULTS_FILE",
           "RESULTS_FIGURE", "TOC_FIGURE", "TOC_SUMMARY_FILE", "UPLOAD_NAMES", "UPLOAD_SUFFIXES"]
