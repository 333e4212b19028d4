"""The H-DCID pretraining loop on Accelerate (``scripts/pretrain.py``): :func:`pretrain` =
:func:`~hf_hdcid.training.setup.setup_run` (validation before training, the Accelerator, the model
prepared for DDP, optimisers, data, schedule, resume) -> :func:`run_epochs` (the epoch loop, calling
:class:`~hf_hdcid.training.step.PretrainingStep` for every micro-batch, logging and checkpoints) ->
:func:`finish` (TOC, the model folder, the card, the Hub).

* **The step** is :mod:`hf_hdcid.training.step` (DDP for the main model and, apart, for the CLUB
  networks; ``accelerator.accumulate``; per-module clipping; fp16 loss scaling).
* **Data order** comes from accelerate's seedable sampler (``data_seed = seed``, reseeded with
  ``seed + epoch`` every epoch) and the DataLoader gets its own generator, so iterating never touches
  the global RNG: resuming (``skip_first_batches``) replays exactly the same batches and RNG stream.
* **Gradient accumulation**: ``gradient_accumulation_steps`` micro-batches per optimiser step through
  ``accelerator.accumulate`` (no DDP all-reduce before the last one); the CLUB steps run on every
  micro-batch. A trailing incomplete group at the end of an epoch is stepped (Accelerate's
  ``sync_with_dataloader``), with its loss still divided by ``gradient_accumulation_steps``.
* **Checkpoints** (:mod:`hf_hdcid.training.checkpoints`): every ``save_every_steps`` optimiser steps, at
  the end of every epoch and when ``max_steps`` stops the run; atomic; ``save_total_limit`` kept.
* **Learning rate**: the main optimiser follows ``lr_scheduler`` (:mod:`hf_hdcid.training.schedule`),
  stepped once per optimiser step (the Accelerator is built with ``step_scheduler_with_optimizer=False``:
  its default would step the scheduler once per *process* per step); the CLUB optimiser is constant.
* **Logging** (:mod:`hf_hdcid.training.logs`): one JSONL line per ``log_every`` steps (means over
  processes), the same scalars to the trackers of ``report_to`` (TensorBoard in
  ``output_dir/tensorboard`` when installed), a tqdm bar on the main process, ``loss_curves.png`` at
  the end.
* **Outputs** (main process): ``output_dir/model`` = ``save_pretrained`` folder with the TOC channels,
  ``training_info.json``, ``loss_curves.png``, ``toc_cosine.png`` and ``toc_summary.json`` (when TOC
  channels were computed; the figure only with ``plot``) and, last, the model card ``README.md``
  (:func:`hf_hdcid.hub.refresh_card`), written into a
  temporary folder and renamed into place when complete; with ``push_to_hub`` it is uploaded to
  ``hub_model_id`` in one commit.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from ..folders import disk_errors, folder_size
from .checkpoints import (TMP_PREFIX, list_checkpoints, remove_stale_temporaries, replace_folder,  # noqa: F401
                          resolve_checkpoint, save_checkpoint)
from .config import PretrainConfig, PretrainConfigError  # noqa: F401
from .logs import LOG_FILE, log_step, truncate_log
from .setup import (Run, build_model_config, check_hub_settings, feature_statistics, resolve_trackers,  # noqa: F401
                    setup_run, tracker_config, use_cpu)
from .step import clip_groups  # noqa: F401

TRAINING_INFO_FILE = "training_info.json"
LOSS_PLOT_FILE = "loss_curves.png"
TRACKER_DIR = "tensorboard"
MODEL_DIR = "model"


def pretrain(cfg: PretrainConfig) -> Path:
    """Pretrain an :class:`HDCIDForPreTraining` as ``cfg`` says; returns ``output_dir/model`` (written by
    ``save_pretrained`` with the TOC channels). Everything is validated before the first step
    (:class:`PretrainConfigError`)."""
    run = setup_run(cfg)
    try:
        start_run_files(run)
        train_time = run_epochs(run)
        return finish(run, train_time)
    finally:
        run.release()


def start_run_files(run: Run) -> None:
    """Main process: stale temporaries removed, the settings written, the log truncated to the resumed
    step (or started afresh); then the trackers."""
    acc, cfg = run.accelerator, run.cfg
    if acc.is_main_process:
        remove_stale_temporaries(run.output_dir)
        (run.output_dir / "pretrain_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        truncate_log(run.output_dir / LOG_FILE, run.state["global_step"] if run.checkpoint is not None else None)
    acc.wait_for_everyone()
    if run.trackers:
        acc.init_trackers(TRACKER_DIR, config=tracker_config(cfg))


def _checkpointer(run: Run):
    """save(step, epoch, batches_in_epoch): a checkpoint unless that step was saved already."""
    last_saved = [run.state["global_step"] if run.checkpoint is not None else -1]

    def save(step: int, epoch: int, batches_in_epoch: int) -> None:
        if step == last_saved[0]:
            return
        check_finite_weights(run.model, f"step {step}")  # every rank: the replicas are equal, all stop together
        save_checkpoint(run.accelerator, run.output_dir, step,
                        {"global_step": step, "epoch": epoch, "batches_in_epoch": batches_in_epoch},
                        run.club_optimizer, run.cfg.save_total_limit)
        last_saved[0] = step

    return save


def run_epochs(run: Run) -> float:
    """The epoch loop from the resume state to ``epochs`` / ``max_steps``; returns the training time (s)."""
    acc, cfg = run.accelerator, run.cfg
    save = _checkpointer(run)
    log_path = run.output_dir / LOG_FILE
    progress = None
    if cfg.progress and acc.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=run.total_steps, initial=run.state["global_step"], desc="pretrain", dynamic_ncols=True)
    step, start_epoch = run.state["global_step"], run.state["epoch"]
    batches_per_epoch, total_steps = run.batches_per_epoch, run.total_steps
    train_start = time.perf_counter()
    done = step >= total_steps
    for epoch in range(start_epoch, cfg.epochs):
        if done:
            break
        skip = run.state["batches_in_epoch"] if epoch == start_epoch else 0
        if skip >= batches_per_epoch:
            continue
        run.loader.set_epoch(epoch)
        epoch_loader = acc.skip_first_batches(run.loader, skip) if skip else run.loader
        epoch_loader.set_epoch(epoch)
        t0 = time.perf_counter()
        for batch_index, batch in enumerate(epoch_loader, start=skip):
            lr_used = run.main_optimizer.param_groups[0]["lr"]
            result = run.step(run.collate.model_inputs(batch), epoch)
            if not result.optimizer_stepped:
                continue
            run.scheduler.step()
            step += 1
            elapsed, t0 = time.perf_counter() - t0, time.perf_counter()
            if step % cfg.log_every == 0:
                log_step(run, result, step=step, epoch=epoch, batch=batch_index + 1, lr=lr_used, elapsed=elapsed,
                         log_path=log_path, progress=progress)
            if progress is not None:
                progress.update(1)
            done = step >= total_steps
            if batch_index + 1 == batches_per_epoch:
                save(step, epoch + 1, 0)
            elif done or (cfg.save_every_steps and step % cfg.save_every_steps == 0):
                save(step, epoch, batch_index + 1)
            if done:
                break
        if not done:
            save(step, epoch + 1, 0)
    if progress is not None:
        progress.close()
    run.state.update(global_step=step)
    return time.perf_counter() - train_start


def write_model_folder(run: Run, model_dir: Path, train_time: float) -> None:
    """Main process: TOC, ``save_pretrained``, ``training_info.json``, loss curves, the TOC figure and
    summary (when TOC channels were computed) and, last, the card into ``model_dir`` (a fresh folder)."""
    from ..data.hub_shards import shards_repo_id
    from ..hub.folder import refresh_card, write_toc_files
    from .plots import plot_loss_curves, read_log

    cfg, model_config, model = run.cfg, run.model_config, run.model
    if run.toc_num_channels:  # checked against the model before training (setup.resolve_toc_num_channels)
        model.compute_toc(num_channels=run.toc_num_channels)
    model.save_pretrained(model_dir)
    log_path = run.output_dir / LOG_FILE
    records = read_log(log_path)
    info = {
        "pretrain_config": cfg.to_dict(),
        "data": {"path": str(run.data_path), "split": cfg.split, "num_clips": len(run.dataset),
                 "modalities": list(model_config.modalities),
                 "dataset": shards_repo_id(cfg.data) or run.data_path.name},  # the Hub id when read from the Hub
        "num_processes": run.world, "distributed_type": str(run.accelerator.distributed_type.value),
        "global_batch_size": run.global_batch,
        "steps": run.state["global_step"], "epochs": cfg.epochs, "train_time_s": round(train_time, 3),
        "final_metrics": records[-1] if records else {},
        "hf_hdcid_version": _package_version(),
    }
    (model_dir / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    if cfg.plot and records:
        title = f"{'H-DCID' if model_config.num_layers > 1 else 'DCID'} pretraining ({cfg.preset})"
        plot_loss_curves(log_path, run.output_dir / LOSS_PLOT_FILE, title=title)
        shutil.copyfile(run.output_dir / LOSS_PLOT_FILE, model_dir / LOSS_PLOT_FILE)
    if run.toc_num_channels:
        write_toc_files(model_dir, model, source=str(run.output_dir / MODEL_DIR), figure=cfg.plot)
    refresh_card(model_dir, repo_id=cfg.hub_model_id if cfg.push_to_hub else None, folder_name=MODEL_DIR)


def finish(run: Run, train_time: float) -> Path:
    """Rank states (optional), the model folder (atomic), the Hub push, the trackers closed."""
    acc, cfg = run.accelerator, run.cfg
    model_dir = run.output_dir / MODEL_DIR
    if cfg.save_rank_states:
        (run.output_dir / "rank_states").mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()},
                   run.output_dir / "rank_states" / f"rank{acc.process_index}.pt")
    acc.wait_for_everyone()
    if acc.is_main_process:
        check_finite_weights(run.model, "the trained model")
        tmp = run.output_dir / (TMP_PREFIX + MODEL_DIR)
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            with disk_errors(model_dir, "writing the model folder", lambda: folder_size(tmp)):
                write_model_folder(run, tmp, train_time)
                replace_folder(tmp, model_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if cfg.push_to_hub:
            from ..hub import push

            result = push(model_dir, cfg.hub_model_id, private=cfg.hub_private,
                          commit_message=f"Upload {run.model_config.num_layers}-layer HDCID pretrained with hf-hdcid "
                                         f"({run.state['global_step']} steps)")
            acc.print(f"pushed {model_dir} to {cfg.hub_model_id}: {result}")
    # not accelerator.end_training(): it also destroys the process group, and pretrain() is a library
    # call after which the caller may go on (evaluate, a second run)
    for tracker in acc.trackers:
        tracker.finish()
    acc.wait_for_everyone()
    return model_dir


def check_finite_weights(model, what: str) -> None:
    """FloatingPointError naming the first tensors if any parameter or codebook buffer of ``model`` is
    NaN/inf: a diverged run is never saved as a success (one host sync per call)."""
    tensors = dict(model.named_parameters())
    tensors.update((n, b) for n, b in model.named_buffers() if b.is_floating_point())
    names = list(tensors)
    flags = torch.stack([torch.isfinite(t).all() for t in tensors.values()]).cpu().tolist()
    bad = [n for n, ok in zip(names, flags) if not ok]
    if bad:
        raise FloatingPointError(f"{what}: {len(bad)} of {len(names)} tensors hold NaN/inf ({', '.join(bad[:3])}"
                                 f"{' ...' if len(bad) > 3 else ''}); not saved. Lower lr, check the data "
                                 "(check_finite_inputs) or resume from an earlier checkpoint")


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("hf-hdcid")
    except Exception:  # noqa: BLE001 - running from a source tree without installing
        return "unknown"


__all__ = ["PretrainConfig", "PretrainConfigError", "pretrain", "run_epochs", "finish", "start_run_files",
           "write_model_folder", "use_cpu", "build_model_config", "clip_groups", "list_checkpoints",
           "resolve_checkpoint", "resolve_trackers", "check_hub_settings", "feature_statistics"]
