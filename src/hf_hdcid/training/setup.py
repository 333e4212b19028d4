"""Setting up a pretraining run: everything that is checked before the first step (settings, data,
output folder, trackers, Hub), the Accelerator, the model and its DDP wrapping, optimisers, data
loader, schedule and resume state. :func:`setup_run` returns a :class:`Run`; anything that cannot work
raises :class:`~hf_hdcid.training.config.PretrainConfigError` before training starts.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import PretrainConfig, PretrainConfigError


def build_model_config(cfg: PretrainConfig, data_path: Path):
    """``HDCIDConfig.<preset>`` with the feature sizes of the shards' schema
    (``FeatureSchema.from_manifest(...).config_overrides()``), then ``cfg.model_config`` (which wins);
    ValueError if the config's modalities are not all in the shards."""
    from ..data.schema import MANIFEST_NAME, FeatureSchema, read_manifest
    from ..modeling import HDCIDConfig

    manifest_path = data_path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ValueError(f"data: {data_path} is not a shard folder (no {MANIFEST_NAME}); write one with "
                         "hf_hdcid.data.shards.write_shards or build_synthetic_shards")
    stored = FeatureSchema.from_manifest(read_manifest(data_path), manifest_path)
    from_data = {k: v for k, v in stored.config_overrides().items() if k not in cfg.model_config}
    known = HDCIDConfig.tiny()  # PretrainedConfig would silently keep unknown keys as attributes
    unknown = sorted(k for k in cfg.model_config if not hasattr(known, k))
    if unknown:
        raise ValueError(f"model_config: invalid HDCIDConfig for preset {cfg.preset!r}: unknown option(s) {unknown}")
    try:
        config = getattr(HDCIDConfig, cfg.preset)(**{**from_data, **cfg.model_config})
    except (TypeError, ValueError) as err:
        raise ValueError(f"model_config: invalid HDCIDConfig for preset {cfg.preset!r}: {err}") from err
    present = list(stored.modalities)
    missing = [m for m in config.modalities if m not in present]
    if missing:
        raise ValueError(f"data: the model's modalities {list(config.modalities)} need {missing}, which the shards "
                         f"at {data_path} do not have (they have {present})")
    return config


def feature_statistics(dataset, collate, config, chunk: int = 256) -> dict:
    """Per-channel mean and std (float64 sums over every clip and position) of the audio / video
    features of ``dataset`` -> ``{modality: {"mean": [C], "std": [C]}}`` for
    ``HDCIDConfig.input_normalization``; a constant channel gets std 1."""
    sums = {}
    for start in range(0, len(dataset), chunk):
        batch = collate(dataset[start:start + chunk])
        for m in ("audio", "video"):
            if m in config.modalities:
                x = batch[m].double().reshape(-1, batch[m].shape[-1])  # [N*T(*H*W), C]
                n, s1, s2 = sums.get(m, (0, 0.0, 0.0))
                sums[m] = (n + x.shape[0], s1 + x.sum(0), s2 + x.pow(2).sum(0))
    stats = {}
    for m, (n, s1, s2) in sums.items():
        if not bool(torch.isfinite(s1).all() and torch.isfinite(s2).all()):
            raise ValueError(f"data: the {m} features hold NaN/inf (found while computing the input statistics; "
                             "check_finite_inputs=False let them through the loader)")
        mean = s1 / n
        std = (s2 / n - mean.pow(2)).clamp_min(0).sqrt()
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        stats[m] = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    return stats


def check_output_dir(path: Path) -> None:
    from ..folders import check_writable_folder

    check_writable_folder(path, "output_dir")


def resolve_trackers(report_to) -> list[str]:
    """Tracker names for ``Accelerator(log_with=...)``; ValueError for an unknown or uninstalled one."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS
    from accelerate.utils import is_tensorboard_available

    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if names == ["none"]:
        return []
    if names == ["auto"]:
        return ["tensorboard"] if is_tensorboard_available() else []
    unknown = [n for n in names if n not in LOGGER_TYPE_TO_CLASS]
    if unknown:
        raise ValueError(f"report_to: expected \"auto\", \"none\" or tracker names from {sorted(LOGGER_TYPE_TO_CLASS)}, "
                         f"got {unknown}")
    missing = [n for n in names if not _tracker_available(n)]
    if missing:
        raise ValueError(f"report_to: tracker(s) {missing} requested but not installed "
                         f"(pip install {' '.join(missing)}, or report_to=\"none\")")
    return names


def _tracker_available(name: str) -> bool:
    from accelerate import utils

    check = getattr(utils, f"is_{name}_available", None)
    return bool(check()) if check is not None else True


def check_hub_settings(cfg: PretrainConfig) -> None:
    """Before training: a valid ``hub_model_id`` and a token, when ``push_to_hub`` is set."""
    if not cfg.push_to_hub:
        return
    from huggingface_hub import get_token

    from ..hub import check_repo_id

    check_repo_id(cfg.hub_model_id, "hub_model_id")
    if get_token() is None:
        raise ValueError("push_to_hub: no Hugging Face token found; run `hf auth login` or set HF_TOKEN "
                         "(or drop push_to_hub)")


def tracker_config(cfg: PretrainConfig) -> dict:
    """The settings as the flat scalar dict trackers accept (nested values as JSON strings)."""
    flat = {}
    for key, value in cfg.to_dict().items():
        flat[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls and convolutions in hardware-backed oneDNN kernels
    (AVX-512 and above). On AVX2-only CPUs bf16 is emulated: measured 21x slower per step than
    float32 at the paper configuration (BENCHMARKS.md, issue 13)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else torch.backends.cpu.get_cpu_capability() not in ("AVX2", "DEFAULT")


def warn_if_slow_bf16(mixed_precision: str, device: torch.device) -> str | None:
    """The warning (also returned) for ``mixed_precision="bf16"`` on a CPU without fast bf16."""
    if mixed_precision != "bf16" or device.type != "cpu" or cpu_has_fast_bf16():
        return None
    message = (f"mixed_precision: 'bf16' on a CPU without bf16 kernels (torch CPU capability "
               f"{torch.backends.cpu.get_cpu_capability()}, no AVX-512): it trains correctly but emulates bf16, "
               "about 21x slower per step than float32 at the paper configuration; use mixed_precision='no'")
    import warnings

    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return message


def use_cpu() -> bool:
    """``cpu=`` for Accelerator / PartialState: True without an accelerator. Needed for several CPU
    processes: ``accelerate launch --multi_gpu`` (torchrun) on a CPU-only machine gives MULTI_CPU (gloo)
    only with ``cpu=True``; without it every process silently believes it is alone."""
    return not torch.cuda.is_available()



def check_mixed_precision_device(mixed_precision: str, device: torch.device) -> None:
    """fp16 needs a GPU: Accelerate would run it on a CPU as float32 without saying so."""
    if mixed_precision == "fp16" and device.type == "cpu":
        raise ValueError("mixed_precision: 'fp16' needs a GPU (Accelerate runs fp16 with loss scaling on "
                         "cuda / xpu / npu / mps devices; on this CPU it would silently train in float32); use "
                         "'bf16' or 'no' here")


def build_accelerator(cfg: PretrainConfig, trackers: list[str]):
    """The run's Accelerator: seedable data order, the scheduler stepped by the loop, DDP options of
    :mod:`hf_hdcid.training.step`, gradient accumulation and (optionally) torch.compile."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, TorchDynamoPlugin

    extra = {}
    if cfg.dynamo_backend.lower() != "no":  # else a launcher's --dynamo_backend (environment) still applies
        extra["dynamo_plugin"] = TorchDynamoPlugin(backend=cfg.dynamo_backend.lower())
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True, broadcast_buffers=False,
                                        gradient_as_bucket_view=True)
    return Accelerator(cpu=use_cpu(), mixed_precision=cfg.mixed_precision,
                       gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                       dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
                       step_scheduler_with_optimizer=False,  # stepped once per optimiser step by the loop
                       kwargs_handlers=[ddp], log_with=trackers or None, project_dir=cfg.output_dir, **extra)


@dataclass
class Run:
    """Everything one pretraining run works with (built by :func:`setup_run`)."""

    cfg: PretrainConfig
    accelerator: object
    model_config: object
    data_path: Path
    output_dir: Path
    dataset: object
    collate: object
    trackers: list
    checkpoint: Path | None
    model: object = None
    step: object = None  # hf_hdcid.training.step.PretrainingStep
    main_optimizer: object = None
    club_optimizer: object = None
    scheduler: object = None
    loader: object = None
    state: dict = field(default_factory=lambda: {"global_step": 0, "epoch": 0, "batches_in_epoch": 0})
    toc_num_channels: int = 0  # TOC channels per layer computed at the end (0: none); checked up front
    lock: contextlib.ExitStack | None = None  # the output folder's lock (main process)

    def release(self) -> None:
        """Release the output folder's lock (idempotent)."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def global_batch(self) -> int:
        """Clips per optimiser step over all processes and micro-batches."""
        return self.cfg.batch_size * self.world * self.cfg.gradient_accumulation_steps

    @property
    def batches_per_epoch(self) -> int:  # per process
        return len(self.loader)

    @property
    def steps_per_epoch(self) -> int:  # optimiser steps (a trailing incomplete group is stepped)
        return -(-self.batches_per_epoch // self.cfg.gradient_accumulation_steps)

    @property
    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.cfg.epochs
        return total if self.cfg.max_steps is None else min(total, self.cfg.max_steps)


def validate_run(cfg: PretrainConfig) -> Run:
    """Every check that needs no model: settings, data, output folder, trackers, Hub; builds the
    Accelerator. PretrainConfigError on anything that cannot work."""
    from ..data.hub_shards import resolve_shards
    from ..data.shards import load_shards
    from .checkpoints import resolve_intact_checkpoint

    if not isinstance(cfg, PretrainConfig):
        raise PretrainConfigError(f"cfg: expected a PretrainConfig, got {type(cfg).__name__}")
    try:
        cfg.validate()
        if cfg.data is None:
            raise ValueError("data: expected the path of a shard folder, got None")
        data_path, output_dir = resolve_shards(cfg.data), Path(cfg.output_dir)  # a Hub id: its cached snapshot
        trackers = resolve_trackers(cfg.report_to)
        check_hub_settings(cfg)
        accelerator = build_accelerator(cfg, trackers)
        check_mixed_precision_device(cfg.mixed_precision, accelerator.device)
        warn_if_slow_bf16(cfg.mixed_precision, accelerator.device)
        model_config = build_model_config(cfg, data_path)
        dataset, collate = load_shards(data_path, model_config, split=cfg.split)
        if cfg.inputs_normalized() and model_config.input_normalization is None:
            model_config.input_normalization = feature_statistics(dataset, collate, model_config)
            model_config.validate_hdcid()
        world = accelerator.num_processes
        if cfg.batch_size * world > len(dataset):
            raise ValueError(f"batch_size: {cfg.batch_size} x {world} process(es) = {cfg.batch_size * world} is larger "
                             f"than the {len(dataset)} clips of split {cfg.split!r} in {data_path} (no full batch to "
                             "train on)")
        toc_num_channels = resolve_toc_num_channels(cfg, model_config)
        check_output_dir(output_dir)  # every process: each must be able to write (and none waits on a failed one)
        lock = lock_output_dir(accelerator, output_dir)
    except PretrainConfigError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise PretrainConfigError(str(err)) from err
    try:  # under the lock: no other run is writing checkpoints into output_dir now
        checkpoint = resolve_intact_checkpoint(cfg.resume_from_checkpoint, output_dir, accelerator.num_processes,
                                               cfg.resume_fallback, log=accelerator.print)
    except (ValueError, FileNotFoundError) as err:
        if lock is not None:
            lock.close()
        raise PretrainConfigError(str(err)) from err
    return Run(cfg=cfg, accelerator=accelerator, model_config=model_config, data_path=data_path, output_dir=output_dir,
               dataset=dataset, collate=collate, trackers=trackers, checkpoint=checkpoint,
               toc_num_channels=toc_num_channels, lock=lock)


def resolve_toc_num_channels(cfg: PretrainConfig, model_config) -> int:
    """Number of TOC channels per layer to compute after training, checked against the model before
    training: ``toc_num_channels`` None -> ``hidden_size // 2`` (none for ``quantizer="fsq"``, which has no codebook);
    0 -> none; an explicit count must be in [1, hidden_size] and needs a quantizer with a codebook."""
    from ..modeling.configuration_hdcid import FSQ_NO_TOC

    count = cfg.toc_num_channels
    if count is None:
        return 0 if model_config.quantizer == "fsq" else model_config.hidden_size // 2
    if count and model_config.quantizer == "fsq":
        raise ValueError(f"toc_num_channels: expected 0 or None with quantizer='fsq' ({FSQ_NO_TOC}), got {count}")
    if count > model_config.hidden_size:
        raise ValueError(f"toc_num_channels: expected at most hidden_size = {model_config.hidden_size} channels per "
                         f"layer (0: no TOC), got {count}")
    return count


def lock_output_dir(accelerator, output_dir: Path) -> contextlib.ExitStack | None:
    """The main process takes the output folder's exclusive lock (:func:`hf_hdcid.folders.exclusive_folder`)
    for the whole run; when another run holds it, every process fails with the same message."""
    from ..folders import FolderBusyError, exclusive_folder

    lock, message = None, None
    if accelerator.is_main_process:
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(exclusive_folder(output_dir, "scripts/pretrain.py"))
        except (FolderBusyError, OSError) as err:
            lock, message = None, f"output_dir: {err}"
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        message = broadcast_object_list([message])[0]
    if message is not None:
        raise ValueError(message)
    return lock


def adam(params, lr: float, device: torch.device, fused: bool = True) -> torch.optim.Adam:
    """Adam with torch's fused kernel where it exists (CPU, CUDA): the same update as the default
    per-tensor loop, one kernel over all tensors (paper configuration on the CPU: 0.08 s against
    0.39-0.50 s per step; BENCHMARKS.md, issue 15)."""
    return torch.optim.Adam(params, lr=lr, fused=fused and device.type in ("cpu", "cuda"))


def setup_run(cfg: PretrainConfig) -> Run:
    """:func:`validate_run`, then the model (DDP-wrapped through ``accelerator.prepare``), the CLUB
    objective (wrapped apart), the optimisers, the loader, the schedule and the resume state. The
    output folder's lock (taken by :func:`validate_run`) is released if anything here fails, else by
    :func:`hf_hdcid.training.loop.pretrain` at the end."""
    run = validate_run(cfg)
    try:
        return _build_run(run)
    except BaseException:
        run.release()
        raise


def _build_run(run: Run) -> Run:
    from accelerate.utils import set_seed
    from torch.nn.parallel import DistributedDataParallel

    from ..data.shards import make_dataloader
    from ..modeling import HDCIDForPreTraining
    from .checkpoints import load_checkpoint
    from .schedule import build_lr_scheduler
    from .step import CLUBObjective, PretrainingStep, club_parameter_names

    cfg, acc = run.cfg, run.accelerator
    set_seed(cfg.seed)
    model = HDCIDForPreTraining(run.model_config).train().to(acc.device)
    main_opt = adam(model.main_parameters(), cfg.lr, acc.device)
    club_opt = adam(model.club_parameters(), cfg.club_lr, acc.device)  # not prepared: see training.step
    loader = make_dataloader(run.dataset, run.collate, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                             generator=torch.Generator().manual_seed(cfg.seed), num_workers=cfg.num_workers)
    # the main model's DDP leaves the CLUB parameters to the CLUB objective's own DDP
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, club_parameter_names(model))
    main_module, club_module, main_opt, loader = acc.prepare(model, CLUBObjective(model), main_opt, loader)
    run.model, run.main_optimizer, run.club_optimizer, run.loader = model, main_opt, club_opt, loader
    run.scheduler = acc.prepare_scheduler(build_lr_scheduler(
        main_opt, cfg.lr_scheduler, steps_per_epoch=run.steps_per_epoch, epochs=cfg.epochs,
        warmup_steps=cfg.warmup_steps, milestones_epochs=cfg.lr_milestones, gamma=cfg.lr_gamma))
    run.step = PretrainingStep(model, main_opt, club_opt, club_steps=cfg.club_steps, encoder_passes=cfg.encoder_passes,
                               club_update_order=cfg.club_update_order, clip=cfg.clip, accelerator=acc,
                               main_module=main_module, club_module=club_module)
    if run.checkpoint is not None:
        try:
            run.state.update(load_checkpoint(acc, run.checkpoint, club_opt))
        except ValueError as err:
            raise PretrainConfigError(str(err)) from err
        acc.print(f"resumed from {run.checkpoint} (step {run.state['global_step']}, epoch {run.state['epoch']}, "
                  f"{run.state['batches_in_epoch']} batches into it)")
    return run
