"""Checkpoints of a pretraining run: naming, atomic writing, ``latest``, retention.

Layout: ``output_dir/checkpoints/step_XXXXXXX/`` = ``accelerator.save_state`` (the prepared models as
safetensors, codebook buffers included; the main optimiser, the scheduler, every rank's RNG states)
+ ``club_optimizer.pt`` (the CLUB optimiser, which is not prepared: see :mod:`hf_hdcid.training.step`;
read back with ``weights_only=True``) + ``trainer_state.json`` (the loop's counters).

Writing is atomic: everything goes into ``.tmp_step_XXXXXXX`` and the main process renames it only
after every rank has finished its part of ``save_state`` (a barrier), so a folder named ``step_*``
with a ``trainer_state.json`` is always complete. Retention (``save_total_limit``) deletes the
oldest complete checkpoints *before* the rename, so there are never more than the limit.

A write that fails (a full disk: torch reports ``unexpected pos ...``) deletes the partial folder and
is one line naming the checkpoint and the free space (:func:`hf_hdcid.folders.write_error`); the earlier
checkpoints are untouched.

Resuming verifies every file first (:func:`verify_checkpoint`): a damaged file (a disk error, a copy
cut short) is an error naming it, or with ``resume_fallback`` the newest intact checkpoint is used
and the log says so; never a silently different resume.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..folders import OLD_MARK, discard_folder, folder_size, replace_folder, write_error  # noqa: F401 - re-exported

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step_"
TMP_PREFIX = ".tmp_"
STATE_FILE = "trainer_state.json"
CLUB_OPTIMIZER_FILE = "club_optimizer.pt"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:07d}"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of ``output_dir``, oldest first."""
    root = Path(output_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def resolve_checkpoint(resume_from: str | None, output_dir: str | os.PathLike) -> Path | None:
    """None, ``"latest"`` (the newest complete checkpoint; None when there is none) or a path ->
    the folder to resume from; ValueError for a path that is not a complete checkpoint."""
    if resume_from is None:
        return None
    if resume_from == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume_from)
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"resume_from_checkpoint: {path} is not a complete checkpoint (no {STATE_FILE})")
    return path


def verify_checkpoint(path: Path, num_processes: int) -> None:
    """ValueError naming the damaged file unless every file of checkpoint ``path`` is intact: the
    counters parse, the model safetensors are complete (header and length), every torch-saved state
    (optimisers, scheduler, sampler, every rank's RNG states) is a zip archive whose CRCs check, and the
    RNG states load. Accelerate itself skips an unreadable RNG state silently, which would make the
    resumed run differ from an uninterrupted one without a word."""
    import zipfile

    from accelerate.utils import load

    from ..loading import safetensors_header

    path = Path(path)
    try:
        json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: {STATE_FILE} is damaged ({err})") from None
    models = sorted(path.glob("model*.safetensors"))
    if not models:
        raise ValueError(f"checkpoint {path}: no model*.safetensors")
    for file in models:
        safetensors_header(file)
    rng = [path / f"random_states_{rank}.pkl" for rank in range(num_processes)]
    torch_files = sorted(set(path.glob("*.bin")) | {path / CLUB_OPTIMIZER_FILE, *rng})
    for file in torch_files:
        if not file.is_file():
            raise ValueError(f"checkpoint {path}: {file.name} is missing (written by a run with fewer processes, or "
                             "deleted)")
        try:
            with zipfile.ZipFile(file) as archive:
                bad = archive.testzip()
        except (OSError, zipfile.BadZipFile) as err:
            raise ValueError(f"checkpoint {path}: {file.name} is damaged ({err})") from None
        if bad is not None:
            raise ValueError(f"checkpoint {path}: {file.name} is damaged (CRC error in {bad})")
    for file in rng:
        try:
            states = load(file)
            missing = {"random_state", "numpy_random_seed", "torch_manual_seed"} - set(states)
        except Exception as err:  # noqa: BLE001 - unpickling errors have many types
            raise ValueError(f"checkpoint {path}: {file.name} cannot be read ({type(err).__name__}: {err})") from None
        if missing:
            raise ValueError(f"checkpoint {path}: {file.name} lacks {sorted(missing)}")


def resolve_intact_checkpoint(resume_from: str | None, output_dir, num_processes: int, fallback: bool,
                              log=print) -> Path | None:
    """:func:`resolve_checkpoint`, then :func:`verify_checkpoint`. With ``fallback`` and
    ``resume_from="latest"`` a damaged checkpoint is skipped (said through ``log``) for the newest intact
    older one; otherwise the damage is a ValueError naming the file."""
    checkpoint = resolve_checkpoint(resume_from, output_dir)
    if checkpoint is None:
        return None
    candidates = [checkpoint]
    if fallback and resume_from == "latest":
        candidates = list(reversed(list_checkpoints(output_dir)))
    errors = []
    for candidate in candidates:
        try:
            verify_checkpoint(candidate, num_processes)
        except ValueError as err:
            errors.append(str(err))
            if not fallback or resume_from != "latest":
                raise ValueError(f"{err} (resume_fallback=True with resume_from_checkpoint='latest' resumes from "
                                 "the newest intact checkpoint instead)") from None
            log(f"resume: skipping damaged {err}")
            continue
        if candidate != checkpoint:
            log(f"resume: using {candidate.name}, the newest intact checkpoint")
        return candidate
    raise ValueError("no intact checkpoint to resume from: " + "; ".join(errors))


def remove_stale_temporaries(output_dir: str | os.PathLike) -> None:
    """Delete ``.tmp_*`` folders and moved-aside old copies left by a run killed while saving (main
    process, before training, holding the output folder's lock)."""
    root = Path(output_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    for pattern in (TMP_PREFIX + "*", f".*{OLD_MARK}*"):
        for stale in root.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def prune_checkpoints(output_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete the oldest complete checkpoints so that at most ``keep`` (>= 0) remain; returns the
    deleted folders."""
    found = list_checkpoints(output_dir)
    doomed = found[:max(0, len(found) - keep)]
    for path in doomed:
        discard_folder(path)
    return doomed


def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, trainer_state: dict,
                    club_optimizer: torch.optim.Optimizer, save_total_limit: int) -> Path:
    """Write ``checkpoints/step_{step}`` atomically (collective: every process calls it)."""
    root = Path(output_dir) / CHECKPOINT_DIR
    final = root / checkpoint_name(step)
    tmp = root / (TMP_PREFIX + checkpoint_name(step))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))  # main: models, optimiser, scheduler; every rank: its RNG states
        if accelerator.is_main_process:
            torch.save(club_optimizer.state_dict(), tmp / CLUB_OPTIMIZER_FILE)
            (tmp / STATE_FILE).write_text(json.dumps(trainer_state) + "\n")
    except Exception as err:  # noqa: BLE001 - torch, safetensors and the OS report a short write differently
        written = folder_size(tmp)
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint is never left behind
        mapped = write_error(err, final, "writing checkpoint", written)
        if mapped is err:
            raise
        raise mapped from None
    accelerator.wait_for_everyone()  # no rank is still writing into tmp
    if accelerator.is_main_process:
        if save_total_limit:  # room for the new one (0: keep all)
            prune_checkpoints(output_dir, save_total_limit - 1)
        replace_folder(tmp, final)  # a folder named step_* is always complete
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path, club_optimizer: torch.optim.Optimizer) -> dict:
    """Restore ``accelerator.load_state`` and the CLUB optimiser from ``path``; returns the counters."""
    club_file = path / CLUB_OPTIMIZER_FILE
    if not club_file.is_file():
        raise ValueError(f"resume_from_checkpoint: {path} has no {CLUB_OPTIMIZER_FILE} (written by an older "
                         "hf-hdcid whose checkpoints this version cannot resume)")
    accelerator.load_state(str(path))
    club_optimizer.load_state_dict(torch.load(club_file, map_location="cpu", weights_only=True))
    return json.loads((path / STATE_FILE).read_text())


__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_PREFIX", "TMP_PREFIX", "STATE_FILE", "CLUB_OPTIMIZER_FILE", "checkpoint_name",
           "list_checkpoints", "resolve_checkpoint", "remove_stale_temporaries", "discard_folder", "replace_folder", "prune_checkpoints",
           "save_checkpoint", "load_checkpoint", "verify_checkpoint", "resolve_intact_checkpoint"]
