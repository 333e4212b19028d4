"""The H-DCID pretraining loop on Accelerate: config, checkpoints, resume, logging.

One optimiser step is :func:`hf_hdcid.training.pretraining_step` spread over several processes::

    features = model.extract_features(batch, epoch)        # EMA codebook update (codebooks sync themselves)
    club_steps x: club_loss(features) -> backward -> average CLUB grads -> clip -> club_opt.step()
    out = model.compute_losses(batch, epoch, features=features)
    backward(out.loss / grad_accum) -> (after grad_accum micro-batches) average main grads -> clip -> step

Design choices:

* **The model is not wrapped in DistributedDataParallel.** ``extract_features`` / ``club_loss`` /
  ``compute_losses`` bypass ``DDP.forward``, so DDP would not synchronise anything anyway. Only the
  optimisers and the DataLoader go through ``accelerator.prepare``; the model is moved with
  ``.to(accelerator.device)``; its ``state_dict`` (codebook buffers included) is checkpointed as
  ``model_state.safetensors`` by this module (accelerate's ``register_for_checkpointing`` would pickle it
  and reload it with ``weights_only=False``). With several
  processes the gradients are averaged by hand: one flat ``all_reduce`` for the main parameters per
  optimiser step and one for the CLUB parameters per CLUB step (only parameters that have a gradient:
  upper layers before ``warm_start_epoch`` keep ``grad = None`` so Adam leaves them alone, exactly as in
  one process). Every rank starts from the same seed, hence the same weights; identical averaged
  gradients keep them identical.
* **Data order** comes from accelerate's seedable sampler (``data_seed = seed``, reseeded with
  ``seed + epoch`` every epoch) and the DataLoader gets its own generator, so iterating never touches
  the global RNG: resuming (``skip_first_batches``) replays exactly the same batches and RNG stream.
* **Clipping** (``clip``, max grad norm 0.5 like the original) is applied per module, not globally:
  the text encoder; for every layer k and modality m the modality-general encoder
  ``hdcid.layers[k].general[m]``, the modality-specific encoder ``hdcid.layers[k].specific[m]`` and
  the decoder ``decoders[k][m]``; the CPC module ``cpc[k]``; and every CLUB network ``club[k][m]``
  (clipped before each CLUB step). See :func:`clip_groups`.
* **Gradient accumulation** is done here (not with ``accelerator.accumulate``, which needs a prepared
  model): CLUB steps run on every micro-batch, the main loss is divided by the number of micro-batches
  and the main optimiser steps once per ``gradient_accumulation_steps`` micro-batches. A trailing
  incomplete group at the end of an epoch is dropped (its gradients are zeroed).
* **Checkpoints** ``output_dir/checkpoints/step_XXXXXXX`` (``accelerator.save_state`` plus
  ``trainer_state.json`` with the counters) are written under a temporary name and renamed once
  complete, every ``save_every_steps`` optimiser steps, at the end of every epoch and when
  ``max_steps`` stops the run.
* **Encoder passes**: ``encoder_passes="once"`` (default) runs the encoder once per batch and the CLUB
  steps reuse its detached outputs; ``"per_club_step"`` reproduces the original's 6 passes per batch
  (see :mod:`hf_hdcid.training.step`).
* **Learning rate**: the main optimiser follows ``lr_scheduler`` (:mod:`hf_hdcid.training.schedule`),
  stepped once per optimiser step (the Accelerator is built with ``step_scheduler_with_optimizer=False``:
  its default would step the scheduler once per *process* per step); the CLUB optimiser is constant.
* **Logging**: one JSONL line per ``log_every`` steps (means over processes), the same scalars to the
  Accelerate trackers of ``report_to`` (TensorBoard in ``output_dir/tensorboard`` when installed), a
  tqdm bar on the main process, and ``loss_curves.png`` at the end.
* **Outputs** (main process): ``output_dir/model`` = ``save_pretrained`` folder with the TOC channels,
  ``training_info.json`` (settings, data, counters, final metrics), ``loss_curves.png`` and the model
  card ``README.md``; with ``push_to_hub`` that folder is uploaded to ``hub_model_id`` in one commit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .schedule import LR_SCHEDULERS, build_lr_scheduler
from .step import ENCODER_PASSES, club_step_features

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step_"
TMP_PREFIX = ".tmp_"
STATE_FILE = "trainer_state.json"
MODEL_STATE_FILE = "model_state.safetensors"
LOG_FILE = "train_log.jsonl"
TRAINING_INFO_FILE = "training_info.json"
LOSS_PLOT_FILE = "loss_curves.png"
TRACKER_DIR = "tensorboard"
PRESETS = ("tiny", "hdcid", "dcid", "original_hdcid", "original_dcid")
MIXED_PRECISION = ("no", "bf16")
# HDCIDConfig fields filled from the shard manifest unless given in model_config
DATA_FIELDS = ("num_frames", "audio_feature_dim", "video_feature_dim", "video_spatial_size", "text_feature_dim")


class PretrainConfigError(ValueError):
    """A setting that cannot work (bad value, data, output folder, Hub settings); raised by
    :func:`pretrain` before any training step."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class PretrainConfig:
    """Settings of :func:`pretrain` (also the JSON accepted by ``scripts/pretrain.py --config``).

    data: shard folder (:mod:`hf_hdcid.data.shards`) with a ``split`` split (default "pretrain").
    preset / model_config: the model is ``HDCIDConfig.<preset>(**model_config)``; feature sizes
        (``num_frames``, ``*_feature_dim``, ``video_spatial_size``) come from the shard manifest unless
        given in ``model_config``.
    lr / club_lr: Adam learning rates of the main and the CLUB parameters; club_steps: CLUB updates per batch.
    clip: max gradient norm per module (None or 0: no clipping).
    batch_size: per process; gradient_accumulation_steps micro-batches per optimiser step.
    save_every_steps: checkpoint every so many optimiser steps (0: only at the end of epochs).
    log_every: JSONL line every so many optimiser steps. max_steps: stop after so many optimiser steps
        in total (a checkpoint is written there; None: run all epochs).
    resume_from_checkpoint: None, "latest" (the newest checkpoint in output_dir, none: start afresh)
        or the path of a checkpoint folder.
    toc_channels: TOC channels per layer at the end (None: hidden_size // 2; 0: no TOC).
    save_rank_states: each process also writes its final ``state_dict`` to
        ``output_dir/rank_states/rank{r}.pt`` (for checking that ranks agree).
    mixed_precision: "no" or "bf16" (autocast through Accelerate; codebooks, weights and optimiser
        states stay fp32; on CPUs without a bf16 oneDNN LSTM, e.g. AVX2-only, the LSTMs alone run in fp32:
        :class:`hf_hdcid.modeling.AutocastLSTM`). fp16 is not offered: it needs loss scaling, which the hand-averaged and
        per-module-clipped gradients would have to unscale first; bf16 needs none.
    encoder_passes: "once" (default) or "per_club_step" (the original's club_steps + 1 passes per batch).
    lr_scheduler: one of ``LR_SCHEDULERS`` (:mod:`hf_hdcid.training.schedule`), with warmup_steps
        (constant_with_warmup / linear / cosine) or lr_milestones (epochs) and lr_gamma (multistep).
    report_to: Accelerate trackers besides the JSONL log: "auto" (TensorBoard when installed), "none",
        or a tracker name / list of names ("tensorboard", "wandb", ...; must be installed).
    plot: write ``loss_curves.png`` (output_dir and the model folder) at the end.
    normalize_inputs: compute per-channel mean / std of the audio and video features of ``split`` before
        training and store them as ``config.input_normalization`` (the encoders then see standardised
        features; the statistics travel with the checkpoint). Ignored when ``model_config`` gives them.
        None (default) means True, except for the ``original_*`` presets (the original feeds raw
        features); the issue-14 robustness sweep chose it (BENCHMARKS.md).
    push_to_hub / hub_model_id / hub_private: upload the final model folder (weights, config, remote
        code, card, figures) to the Hub repo ``hub_model_id`` (checked, with the token, before training).
    """

    data: str | None = None
    preset: str = "tiny"
    model_config: dict = field(default_factory=dict)
    split: str = "pretrain"
    epochs: int = 8
    batch_size: int = 16
    lr: float = 4e-4
    club_lr: float = 1e-3
    club_steps: int = 5
    clip: float | None = 0.5
    seed: int = 0
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    output_dir: str = "outputs/pretrain"
    save_every_steps: int = 500
    log_every: int = 1
    max_steps: int | None = None
    resume_from_checkpoint: str | None = None
    toc_channels: int | None = None
    num_workers: int = 0
    progress: bool = True
    save_rank_states: bool = False
    encoder_passes: str = "once"
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    lr_milestones: list = field(default_factory=lambda: [10, 20, 30])
    lr_gamma: float = 0.5
    report_to: str | list = "auto"
    plot: bool = True
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False
    normalize_inputs: bool | None = None

    def __post_init__(self):
        if self.data is not None:
            self.data = str(self.data)
        self.output_dir = str(self.output_dir)
        if self.resume_from_checkpoint is not None:
            self.resume_from_checkpoint = str(self.resume_from_checkpoint)
        self.validate()

    def inputs_normalized(self) -> bool:
        """``normalize_inputs`` resolved: None means True except for the ``original_*`` presets."""
        if self.normalize_inputs is None:
            return not self.preset.startswith("original_")
        return self.normalize_inputs

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        def fail(name, expected):
            raise ValueError(f"{name}: expected {expected}, got {getattr(self, name)!r}")

        if self.preset not in PRESETS:
            fail("preset", f"one of {PRESETS}")
        if not isinstance(self.model_config, dict):
            fail("model_config", "a dict of HDCIDConfig overrides")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "log_every"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "an int >= 1")
        for name in ("club_steps", "save_every_steps", "num_workers"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                fail(name, "an int >= 0")
        if not _is_int(self.seed):
            fail("seed", "an int")
        for name in ("lr", "club_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
                fail(name, "a positive finite number")
        if self.clip is not None and (isinstance(self.clip, bool) or not isinstance(self.clip, (int, float))
                                      or not self.clip >= 0 or math.isinf(self.clip)):
            fail("clip", "None or a number >= 0")
        if self.mixed_precision not in MIXED_PRECISION:
            fail("mixed_precision", f"one of {MIXED_PRECISION}")
        if self.max_steps is not None and (not _is_int(self.max_steps) or self.max_steps < 1):
            fail("max_steps", "None or an int >= 1")
        if self.toc_channels is not None and (not _is_int(self.toc_channels) or self.toc_channels < 0):
            fail("toc_channels", "None or an int >= 0")
        if not isinstance(self.split, str) or not self.split:
            fail("split", "a non-empty string")
        if not self.output_dir:
            fail("output_dir", "a folder path")
        if self.encoder_passes not in ENCODER_PASSES:
            fail("encoder_passes", f"one of {ENCODER_PASSES}")
        if self.normalize_inputs is not None and not isinstance(self.normalize_inputs, bool):
            fail("normalize_inputs", "None, True or False")
        if self.lr_scheduler not in LR_SCHEDULERS:
            fail("lr_scheduler", f"one of {LR_SCHEDULERS}")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            fail("warmup_steps", "an int >= 0")
        if (not isinstance(self.lr_milestones, (list, tuple))
                or not all(_is_int(m) and m >= 1 for m in self.lr_milestones)):
            fail("lr_milestones", "a list of epoch numbers >= 1")
        if isinstance(self.lr_gamma, bool) or not isinstance(self.lr_gamma, (int, float)) or not 0 < self.lr_gamma <= 1:
            fail("lr_gamma", "a number in (0, 1]")
        trackers = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        if not isinstance(trackers, (list, tuple)) or not trackers or not all(isinstance(t, str) and t for t in trackers):
            fail("report_to", '"auto", "none", a tracker name or a list of tracker names')
        for name in ("plot", "push_to_hub", "hub_private", "progress", "save_rank_states"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "true or false")
        if self.push_to_hub and not (isinstance(self.hub_model_id, str) and self.hub_model_id):
            fail("hub_model_id", "ORG/NAME (push_to_hub is set)")

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "PretrainConfig":
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object of settings, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; expected only {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides) -> "PretrainConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except OSError as err:
            raise ValueError(f"{path}: cannot read the config file: {err}") from err
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from err
        if isinstance(values, dict):
            values = {**values, **overrides}
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ============================================================================================ helpers
def build_model_config(cfg: PretrainConfig, data_path: Path):
    """``HDCIDConfig.<preset>`` with the shard manifest's feature sizes and ``cfg.model_config``;
    ValueError if the config's modalities are not all in the shards."""
    from ..data.shards import MANIFEST_NAME
    from ..modeling import HDCIDConfig

    manifest_path = data_path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ValueError(f"data: {data_path} is not a shard folder (no {MANIFEST_NAME}); write one with "
                         "hf_hdcid.data.shards.write_shards or build_synthetic_shards")
    manifest = json.loads(manifest_path.read_text())
    stored = manifest.get("config", {})
    from_data = {k: stored[k] for k in DATA_FIELDS if k in stored and k not in cfg.model_config}
    known = HDCIDConfig.tiny()  # PretrainedConfig would silently keep unknown keys as attributes
    unknown = sorted(k for k in cfg.model_config if not hasattr(known, k))
    if unknown:
        raise ValueError(f"model_config: invalid HDCIDConfig for preset {cfg.preset!r}: unknown option(s) {unknown}")
    try:
        config = getattr(HDCIDConfig, cfg.preset)(**{**from_data, **cfg.model_config})
    except (TypeError, ValueError) as err:
        raise ValueError(f"model_config: invalid HDCIDConfig for preset {cfg.preset!r}: {err}") from err
    present = stored.get("modalities", [])
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
        mean = s1 / n
        std = (s2 / n - mean.pow(2)).clamp_min(0).sqrt()
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        stats[m] = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    return stats


def check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test_{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"output_dir: {path} is not writable: {err}") from err


def clip_groups(model) -> list[tuple[str, list, bool]]:
    """(name, parameters, is_club) of every module whose gradient norm is clipped separately."""
    groups = []
    hdcid = model.hdcid
    if hdcid.text_encoder is not None:
        groups.append(("hdcid.text_encoder", list(hdcid.text_encoder.parameters()), False))
    for k, layer in enumerate(hdcid.layers):
        for m in model.config.modalities:
            groups.append((f"hdcid.layers.{k}.general.{m}", list(layer.general[m].parameters()), False))
            groups.append((f"hdcid.layers.{k}.specific.{m}", list(layer.specific[m].parameters()), False))
            groups.append((f"decoders.{k}.{m}", list(model.decoders[k][m].parameters()), False))
        groups.append((f"cpc.{k}", list(model.cpc[k].parameters()), False))
        for m in model.config.modalities:
            groups.append((f"club.{k}.{m}", list(model.club[k][m].parameters()), True))
    covered = {id(p) for _, params, _ in groups for p in params}
    rest = [p for p in model.parameters() if id(p) not in covered]
    if rest:  # anything a future module adds is still clipped (as one group)
        groups.append(("other", rest, False))
    return [g for g in groups if g[1]]


def clip_(groups, max_norm, club: bool) -> None:
    if not max_norm:
        return
    for _, params, is_club in groups:
        if is_club == club:
            grads = [p for p in params if p.grad is not None]
            if grads:
                torch.nn.utils.clip_grad_norm_(grads, max_norm)


def average_gradients_(params, world_size: int) -> None:
    """Average the gradients of ``params`` over the processes with one flat all_reduce. Only parameters
    with a gradient take part (the same set on every rank: it depends only on the epoch)."""
    if world_size <= 1:
        return
    import torch.distributed as dist

    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in with_grad])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p in with_grad:
        n = p.numel()
        p.grad.copy_(flat[offset: offset + n].view_as(p.grad))
        offset += n


def list_checkpoints(output_dir: Path) -> list[Path]:
    root = output_dir / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def resolve_checkpoint(cfg: PretrainConfig) -> Path | None:
    if cfg.resume_from_checkpoint is None:
        return None
    if cfg.resume_from_checkpoint == "latest":
        found = list_checkpoints(Path(cfg.output_dir))
        return found[-1] if found else None
    path = Path(cfg.resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"resume_from_checkpoint: {path} is not a complete checkpoint (no {STATE_FILE})")
    return path


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
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(cfg.hub_model_id)
        if cfg.hub_model_id.count("/") != 1:
            raise HFValidationError("no namespace")
    except HFValidationError as err:
        raise ValueError(f"hub_model_id: expected ORG/NAME (a valid Hub repo id), got {cfg.hub_model_id!r}: {err}") \
            from err
    if get_token() is None:
        raise ValueError("push_to_hub: no Hugging Face token found; run `hf auth login` or set HF_TOKEN "
                         "(or drop push_to_hub)")


def _tracker_config(cfg: PretrainConfig) -> dict:
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


def _scalar_items(prefix: str, values: dict) -> tuple[list[str], list[torch.Tensor]]:
    keys, tensors = [], []
    for k, v in values.items():
        t = torch.as_tensor(v).detach()
        if t.numel() == 1:
            keys.append(prefix + k)
            tensors.append(t.reshape(()).to(torch.float64).cpu())
    return keys, tensors


# ============================================================================================ the loop
def pretrain(cfg: PretrainConfig) -> Path:
    """Pretrain an :class:`HDCIDForPreTraining` as ``cfg`` says; returns ``output_dir/model`` (written by
    ``save_pretrained`` with the TOC channels). Everything is validated before the first step."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    from ..data.shards import load_shards, make_dataloader
    from ..modeling import HDCIDForPreTraining

    if not isinstance(cfg, PretrainConfig):
        raise PretrainConfigError(f"cfg: expected a PretrainConfig, got {type(cfg).__name__}")
    # ---------------------------------------------------------------- validation before training
    try:
        cfg.validate()
        if cfg.data is None:
            raise ValueError("data: expected the path of a shard folder, got None")
        data_path = Path(cfg.data)
        output_dir = Path(cfg.output_dir)
        trackers = resolve_trackers(cfg.report_to)
        check_hub_settings(cfg)
        accelerator = Accelerator(cpu=use_cpu(), mixed_precision=cfg.mixed_precision,
                                  dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True,
                                                                            data_seed=cfg.seed),
                                  step_scheduler_with_optimizer=False,  # we step it once per optimiser step
                                  log_with=trackers or None, project_dir=str(output_dir))
        warn_if_slow_bf16(cfg.mixed_precision, accelerator.device)
        world = accelerator.num_processes
        model_config = build_model_config(cfg, data_path)
        dataset, collate = load_shards(data_path, model_config, split=cfg.split)
        if cfg.inputs_normalized() and model_config.input_normalization is None:
            model_config.input_normalization = feature_statistics(dataset, collate, model_config)
            model_config.validate_hdcid()
        global_batch = cfg.batch_size * world
        if global_batch > len(dataset):
            raise ValueError(f"batch_size: {cfg.batch_size} x {world} process(es) = {global_batch} is larger than "
                             f"the {len(dataset)} clips of split {cfg.split!r} in {data_path} (no full batch to "
                             "train on)")
        check_output_dir(output_dir)  # every process: each must be able to write (and none waits on a failed one)
        checkpoint = resolve_checkpoint(cfg)
    except PretrainConfigError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise PretrainConfigError(str(err)) from err

    # ---------------------------------------------------------------- model, optimisers, data
    set_seed(cfg.seed)
    model = HDCIDForPreTraining(model_config).train().to(accelerator.device)
    main_params, club_params = model.main_parameters(), model.club_parameters()
    main_opt = torch.optim.Adam(main_params, lr=cfg.lr)
    club_opt = torch.optim.Adam(club_params, lr=cfg.club_lr)
    loader = make_dataloader(dataset, collate, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                             generator=torch.Generator().manual_seed(cfg.seed), num_workers=cfg.num_workers)
    # the model is deliberately NOT prepared (no DDP wrapper: see the module docstring)
    main_opt, club_opt, loader = accelerator.prepare(main_opt, club_opt, loader)
    batches_per_epoch = len(loader)  # per process
    steps_per_epoch = batches_per_epoch // cfg.gradient_accumulation_steps
    if steps_per_epoch < 1:
        raise PretrainConfigError(f"gradient_accumulation_steps: {cfg.gradient_accumulation_steps} micro-batches per step but "
                         f"only {batches_per_epoch} batches per epoch and process")
    scheduler = accelerator.prepare_scheduler(build_lr_scheduler(
        main_opt, cfg.lr_scheduler, steps_per_epoch=steps_per_epoch, epochs=cfg.epochs,
        warmup_steps=cfg.warmup_steps, milestones_epochs=cfg.lr_milestones, gamma=cfg.lr_gamma))
    # the model's state (codebook buffers included) is checkpointed by us as safetensors:
    # accelerate's register_for_checkpointing would pickle it and load it with weights_only=False
    groups = clip_groups(model)

    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    state = {"global_step": 0, "epoch": 0, "batches_in_epoch": 0}
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        model.load_state_dict(load_file(checkpoint / MODEL_STATE_FILE))  # CPU tensors, copied to the device
        state.update(json.loads((checkpoint / STATE_FILE).read_text()))
        accelerator.print(f"resumed from {checkpoint} (step {state['global_step']}, epoch {state['epoch']}, "
                          f"{state['batches_in_epoch']} batches into it)")

    log_path = output_dir / LOG_FILE
    if accelerator.is_main_process:
        (output_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        for stale in (output_dir / CHECKPOINT_DIR).glob(TMP_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        (output_dir / "pretrain_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        # keep the log of the steps already done (resume) and drop anything after them
        kept = []
        if log_path.exists() and checkpoint is not None:
            for line in log_path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= state["global_step"]:
                        kept.append(line)
                except json.JSONDecodeError:
                    pass
        log_path.write_text("".join(line + "\n" for line in kept))
    accelerator.wait_for_everyone()
    if trackers:
        accelerator.init_trackers(TRACKER_DIR, config=_tracker_config(cfg))

    last_saved = state["global_step"] if checkpoint is not None else -1

    def save_checkpoint(step: int, epoch: int, batches_in_epoch: int) -> None:
        nonlocal last_saved
        if step == last_saved:
            return
        root = output_dir / CHECKPOINT_DIR
        final = root / f"{CHECKPOINT_PREFIX}{step:07d}"
        tmp = root / f"{TMP_PREFIX}{CHECKPOINT_PREFIX}{step:07d}"
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        if accelerator.is_main_process:
            save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
                      tmp / MODEL_STATE_FILE)
            (tmp / STATE_FILE).write_text(json.dumps({"global_step": step, "epoch": epoch,
                                                      "batches_in_epoch": batches_in_epoch}) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)  # atomic: a checkpoint folder named step_* is always complete
        accelerator.wait_for_everyone()
        last_saved = step

    progress = None
    if cfg.progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=state["global_step"], desc="pretrain", dynamic_ncols=True)

    autocast = accelerator.autocast
    train_start = time.perf_counter()
    step = state["global_step"]
    start_epoch = state["epoch"]
    done = step >= total_steps
    for epoch in range(start_epoch, cfg.epochs):
        if done:
            break
        skip = state["batches_in_epoch"] if epoch == start_epoch else 0
        if skip >= batches_per_epoch:
            continue
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        epoch_loader.set_epoch(epoch)
        if epoch_loader is not loader:
            loader.set_epoch(epoch)
        micro = 0
        t0 = time.perf_counter()
        for batch_index, batch in enumerate(epoch_loader, start=skip):
            inputs = collate.model_inputs(batch)
            features = None  # per_club_step: each CLUB step encodes afresh, the main loss encodes last
            if cfg.encoder_passes == "once":
                with autocast():
                    features = model.extract_features(inputs, epoch)
            club_loss = None
            for _ in range(cfg.club_steps):
                club_opt.zero_grad(set_to_none=True)
                with autocast():
                    club_loss = model.club_loss(club_step_features(model, inputs, epoch, features))
                accelerator.backward(club_loss)
                average_gradients_(club_params, world)
                clip_(groups, cfg.clip, club=True)
                club_opt.step()
            with autocast():
                if features is None:
                    features = model.extract_features(inputs, epoch)
                out = model.compute_losses(inputs, epoch, features=features)
            accelerator.backward(out.loss / cfg.gradient_accumulation_steps)
            micro += 1
            if micro < cfg.gradient_accumulation_steps:
                continue
            micro = 0
            average_gradients_(main_params, world)
            clip_(groups, cfg.clip, club=False)
            main_opt.step()
            main_opt.zero_grad(set_to_none=True)
            lr_used = main_opt.param_groups[0]["lr"]
            scheduler.step()
            step += 1
            elapsed = time.perf_counter() - t0
            t0 = time.perf_counter()

            if step % cfg.log_every == 0:
                keys, values = ["loss"], [out.loss.detach().to(torch.float64).cpu()]
                for prefix, terms in (("", out.losses), ("", out.diagnostics)):
                    k, v = _scalar_items(prefix, terms)
                    keys += k
                    values += v
                if club_loss is not None:
                    keys.append("club_loss")
                    values.append(club_loss.detach().to(torch.float64).cpu())
                flat = torch.stack(values).to(accelerator.device)
                if world > 1:  # mean over processes (every rank takes part)
                    flat = accelerator.reduce(flat, reduction="mean")
                record = {"step": step, "epoch": epoch, "batch": batch_index + 1}
                record.update({k: float(v) for k, v in zip(keys, flat.cpu().tolist())})
                record["lr"] = lr_used  # the rate of this step's update
                record["club_lr"] = club_opt.param_groups[0]["lr"]
                record["samples_per_s"] = global_batch * cfg.gradient_accumulation_steps / max(elapsed, 1e-9)
                if accelerator.is_main_process:
                    with log_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                if trackers:
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
                    if progress is not None:
                        progress.set_postfix(epoch=epoch, loss=f"{record['loss']:.4f}")
            if progress is not None:
                progress.update(1)

            if step >= total_steps:
                done = True
            end_of_epoch = batch_index + 1 + cfg.gradient_accumulation_steps > batches_per_epoch
            if end_of_epoch:
                save_checkpoint(step, epoch + 1, 0)
            elif done or (cfg.save_every_steps and step % cfg.save_every_steps == 0):
                save_checkpoint(step, epoch, batch_index + 1)
            if done:
                break
        if micro:  # incomplete accumulation group at the end of the epoch: dropped
            main_opt.zero_grad(set_to_none=True)
        if not done:
            save_checkpoint(step, epoch + 1, 0)
    if progress is not None:
        progress.close()
    train_time = time.perf_counter() - train_start

    # ---------------------------------------------------------------- final model
    model_dir = output_dir / "model"
    if cfg.save_rank_states:
        (output_dir / "rank_states").mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                   output_dir / "rank_states" / f"rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        num_channels = model_config.hidden_size // 2 if cfg.toc_channels is None else cfg.toc_channels
        if num_channels:
            model.compute_toc(num_channels=num_channels)
        model.save_pretrained(model_dir)
        from .plots import plot_loss_curves, read_log

        records = read_log(log_path)
        info = {
            "pretrain_config": cfg.to_dict(),
            "data": {"path": str(data_path), "split": cfg.split, "num_clips": len(dataset),
                     "modalities": list(model_config.modalities), "dataset": data_path.name},
            "num_processes": world, "global_batch_size": global_batch * cfg.gradient_accumulation_steps,
            "steps": step, "epochs": cfg.epochs, "train_time_s": round(train_time, 3),
            "final_metrics": records[-1] if records else {},
            "hf_hdcid_version": _package_version(),
        }
        (model_dir / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if cfg.plot and records:
            title = f"{'H-DCID' if model_config.num_layers > 1 else 'DCID'} pretraining ({cfg.preset})"
            plot_loss_curves(log_path, output_dir / LOSS_PLOT_FILE, title=title)
            shutil.copyfile(output_dir / LOSS_PLOT_FILE, model_dir / LOSS_PLOT_FILE)
        from ..hub import write_model_card

        write_model_card(model_dir, repo_id=cfg.hub_model_id if cfg.push_to_hub else None)
        if cfg.push_to_hub:
            from ..hub import push

            result = push(model_dir, cfg.hub_model_id, private=cfg.hub_private,
                          commit_message=f"Upload {model_config.num_layers}-layer HDCID pretrained with hf-hdcid "
                                         f"({step} steps)")
            accelerator.print(f"pushed {model_dir} to {cfg.hub_model_id}: {result}")
    # not accelerator.end_training(): it also destroys the process group, and pretrain() is a library
    # call after which the caller may go on (evaluate, a second run)
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.wait_for_everyone()
    return model_dir


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("hf-hdcid")
    except Exception:  # noqa: BLE001 - running from a source tree without installing
        return "unknown"


__all__ = ["PretrainConfig", "PretrainConfigError", "pretrain", "use_cpu", "build_model_config", "clip_groups", "average_gradients_",
           "list_checkpoints", "resolve_checkpoint", "resolve_trackers", "check_hub_settings"]
