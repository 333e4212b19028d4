"""Upload of a saved H-DCID / DCID folder to the Hub in one commit (``hf-hdcid push``).

:func:`push` uses ``HfApi.upload_folder``, not transformers' ``push_to_hub`` (which replaces
``README.md`` with its own template card). Every argument and file is checked before the first
network call.
"""

from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path
from typing import Any

from .card import CARD_FILE, CONFIG_FILE, EVAL_RESULTS_FILE, TRAINING_INFO_FILE, check_model_dir
from .folder import DOWNSTREAM_RESULTS_FILE, TOC_SUMMARY_FILE, refresh_card

# What push uploads: top-level files only (checkpoints/ and other sub-folders never go up).
UPLOAD_NAMES = (CONFIG_FILE, CARD_FILE, TRAINING_INFO_FILE, EVAL_RESULTS_FILE, DOWNSTREAM_RESULTS_FILE,
                TOC_SUMMARY_FILE, "conversion_report.json")
UPLOAD_SUFFIXES = (".safetensors", ".safetensors.index.json", ".py", ".png")


def upload_files(model_dir: str | os.PathLike) -> list[str]:
    """The files :func:`push` uploads: top-level config.json, *.safetensors (+ index), remote-code *.py,
    README.md, *.png, training_info.json, eval_results.json, downstream_results.json and
    toc_summary.json; nothing in sub-folders."""
    return sorted(p.name for p in Path(model_dir).iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and (p.name in UPLOAD_NAMES or p.name.endswith(UPLOAD_SUFFIXES)))


# =============================================================================================
# Upload
# =============================================================================================
def is_repo_id(repo_id: Any) -> bool:
    """Whether ``repo_id`` is ``ORG/NAME`` as the Hub accepts it (the one repo-id rule of the package)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not (isinstance(repo_id, str) and repo_id.count("/") == 1 and all(repo_id.split("/"))):
        return False
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


def check_repo_id(repo_id: Any, field: str = "repo_id") -> str:
    """ValueError naming ``field`` unless ``repo_id`` is ``ORG/NAME`` as the Hub accepts it (:func:`is_repo_id`)."""
    if not is_repo_id(repo_id):
        raise ValueError(f"{field}: expected 'ORG/NAME' (letters, digits, '-', '_', '.'; no '--' or '..'), "
                         f"got {repo_id!r}")
    return repo_id


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection failures as huggingface_hub's HTTP client raises them (httpx2 / httpx), plus the builtins."""
    import importlib

    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def unreachable_hub(err: BaseException, consequence: str) -> OSError:
    """One-line OSError for a refused, unreachable or timed-out Hub connection, naming the endpoint."""
    from huggingface_hub import constants

    return OSError(f"cannot reach the Hub at {constants.ENDPOINT} ({type(err).__name__}: {' '.join(str(err).split())})"
                   f"; {consequence}")


@contextlib.contextmanager
def hub_connection(consequence: str = "nothing was uploaded"):
    """Turn a connection failure inside the block into :func:`unreachable_hub`'s one-line OSError."""
    try:
        yield
    except transport_errors() as err:
        raise unreachable_hub(err, consequence) from None


def push(model_dir: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
         commit_message: str = "Upload H-DCID model", token: str | None = None):
    """Upload a saved H-DCID / DCID folder to the Hub repo ``repo_id`` in one commit.

    Writes ``README.md`` first if the folder has none (an existing card is never replaced), creates the
    repo (and the branch ``revision``) if needed, then commits config.json, the safetensors weights,
    the remote-code ``*.py``, README.md, figures and the JSON files of :func:`upload_files`; nothing
    else (no checkpoints, no sub-folders). Returns the :class:`huggingface_hub.CommitInfo` (a str: the
    commit URL). Bad folder, repo id, card or eval results, or no token: ValueError before any network call.
    """
    from huggingface_hub import HfApi, ModelCard, get_token

    from ..loading import check_model_folder

    folder = check_model_dir(model_dir)
    check_model_folder(folder)  # truncated / mismatched weights never reach the Hub
    check_repo_id(repo_id)
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ValueError(f"revision: expected None or a branch name, got {revision!r}")
    token = token or get_token()
    if not token:
        raise ValueError("no Hugging Face token: expected a token from `hf auth login`, the HF_TOKEN "
                         "environment variable or token=..., got none")
    card_path = folder / CARD_FILE
    if card_path.is_file():
        try:  # the Hub validates the metadata only once uploading has begun; fail here instead
            ModelCard(card_path.read_text(encoding="utf-8"))
        except Exception as err:  # noqa: BLE001 - yaml and metadata errors have many types
            raise ValueError(f"{card_path}: expected a model card with valid YAML metadata, got {err}") from None
    else:
        refresh_card(folder, repo_id=repo_id)
    files = upload_files(folder)

    api = HfApi(token=token)
    with hub_connection("nothing was uploaded"):  # refused, unreachable, timed out: nothing was committed
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                 commit_message=commit_message, allow_patterns=[glob.escape(name) for name in files])



__all__ = ["push", "upload_files", "check_repo_id", "hub_connection", "transport_errors", "unreachable_hub",
           "UPLOAD_NAMES", "UPLOAD_SUFFIXES"]
