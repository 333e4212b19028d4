"""The H-DCID pretraining step: the only copy. :class:`PretrainingStep` is what the Accelerate loop
(:mod:`hf_hdcid.training.loop`) calls for every micro-batch; :func:`pretraining_step` is the same step
for one process without Accelerate (tests, benchmarks, notebooks).

One micro-batch, ``club_update_order="before_main"`` (the original's order, the default)::

    features = model.extract_features(batch, epoch)        # encoder pass + EMA codebook update
    club_steps x: club_opt.zero_grad(); club(features).backward(); clip CLUB nets; club_opt.step()
    with accelerator.accumulate(main):                      # DDP: no all-reduce until the last micro-batch
        out = main(**batch, epoch=epoch, features=features)  # eq. 14 (the DDP-wrapped model's forward)
        accelerator.backward(out.loss)                      # / gradient_accumulation_steps, fp16 scaling
        if accelerator.sync_gradients: unscale (fp16), clip per module
        main_opt.step(); main_opt.zero_grad()               # no-ops until the last micro-batch

``"after_main"``: ``out = main(**batch, epoch=epoch)`` (encoder pass, codebook update and eq. 14 all in
``forward``), backward and the main step, then the CLUB steps on ``out.features`` detached: the MI term
of this batch uses CLUB networks trained up to the previous batch.

How the processes stay in step:

* The main model is wrapped by ``accelerator.prepare`` (DistributedDataParallel with several
  processes): its gradients are averaged by DDP's bucketed hooks, overlapped with the backward.
  ``find_unused_parameters=True``: before ``warm_start_epoch`` the upper layers take no part, DDP marks
  them unused on every rank and leaves their gradient ``None``, so Adam does not touch them.
  ``broadcast_buffers=False``: the codebooks synchronise themselves (EMA statistics all-reduced,
  resets broadcast, :mod:`hf_hdcid.modeling.codebook_hdcid`); DDP must not overwrite them.
  ``gradient_as_bucket_view=True``: the gradients live in DDP's buckets (one copy less, ~170 MB less
  per process at the paper size; an unused layer's gradient still stays ``None``).
* The CLUB networks are ignored by that DDP and trained through :class:`CLUBObjective`, a module of
  their own that Accelerate wraps separately: each CLUB step all-reduces only the CLUB gradients.
  Their optimiser is a plain ``torch.optim.Adam``, not prepared: a prepared optimiser skips its step on
  every micro-batch but the last of an accumulation group, and the CLUB steps run on every
  micro-batch. Their objective is computed in float32 (no loss scaling needed under fp16).
* Clipping is per module (the original's ``clip_grad_norm_`` on each encoder / decoder / CPC / CLUB
  network, max norm 0.5): :func:`clip_groups`; under fp16 the gradients are unscaled once
  (``accelerator.unscale_gradients``) before the per-module norms are taken.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..modeling import HDCIDForPreTraining, HDCIDPreTrainingOutput
from .config import CLUB_UPDATE_ORDERS, ENCODER_PASSES


def check_encoder_passes(encoder_passes: str) -> None:
    if encoder_passes not in ENCODER_PASSES:
        raise ValueError(f"encoder_passes: expected one of {ENCODER_PASSES}, got {encoder_passes!r}")


class CLUBObjective(nn.Module):
    """The CLUB networks' own objective, :meth:`HDCIDForPreTraining.club_loss`, as a module holding
    only the CLUB networks (``model.club``), so that Accelerate / DDP can wrap it apart from the main
    model. The pretraining model is kept as a plain attribute, not a submodule."""

    def __init__(self, model: HDCIDForPreTraining):
        super().__init__()
        self.club = model.club
        self.__dict__["pretraining_model"] = model  # not registered: DDP must see only the CLUB parameters

    def forward(self, features) -> torch.Tensor:
        return self.pretraining_model.club_loss(features)


def club_parameter_names(model: HDCIDForPreTraining) -> list[str]:
    """Names (in ``model``) of the CLUB parameters, which the main model's DDP ignores."""
    return [f"club.{name}" for name, _ in model.club.named_parameters()]


def clip_groups(model: HDCIDForPreTraining) -> list[tuple[str, list, bool]]:
    """(name, parameters, is_club) of every module whose gradient norm is clipped separately: the text
    encoder; per layer k and modality m the modality-general encoder, the modality-specific encoder and
    the decoder; the CPC module of each layer; every CLUB network; anything else as one group."""
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
    """``clip_grad_norm_`` on every group of the given kind that has gradients (``max_norm`` falsy: off)."""
    if not max_norm:
        return
    for _, params, is_club in groups:
        if is_club == club:
            grads = [p for p in params if p.grad is not None]
            if grads:
                torch.nn.utils.clip_grad_norm_(grads, max_norm)


def club_step_features(model: HDCIDForPreTraining, batch: dict, epoch: int, features):
    """The features one CLUB step trains on: the step's shared ``features`` (``encoder_passes="once"``)
    or, when they are None (``"per_club_step"``), a fresh gradient-free train-mode encoder pass."""
    if features is not None:
        return features
    with torch.no_grad():
        return model.extract_features(batch, epoch)


@dataclass
class StepResult:
    """What one micro-batch gives: the eq. 14 output, the last CLUB loss (None without CLUB steps),
    whether the main optimiser stepped (last micro-batch of an accumulation group) and whether
    that step was skipped by the fp16 loss scaler (inf / NaN gradients)."""

    output: HDCIDPreTrainingOutput
    club_loss: torch.Tensor | None
    optimizer_stepped: bool
    step_skipped: bool = False


class PretrainingStep:
    """One micro-batch of pretraining (see the module docstring).

    model: the unwrapped :class:`HDCIDForPreTraining`; main_module / club_module: what to call for the
    main loss and the CLUB objective (``accelerator.prepare`` results; default ``model`` and a fresh
    :class:`CLUBObjective`); accelerator: None for one process without Accelerate (no accumulation,
    no mixed precision)."""

    def __init__(self, model: HDCIDForPreTraining, main_optimizer: torch.optim.Optimizer,
                 club_optimizer: torch.optim.Optimizer, *, club_steps: int = 5, encoder_passes: str = "once",
                 club_update_order: str = "before_main", clip: float | None = None, accelerator=None,
                 main_module: nn.Module | None = None, club_module: nn.Module | None = None):
        if isinstance(club_steps, bool) or not isinstance(club_steps, int) or club_steps < 0:
            raise ValueError(f"club_steps: expected an int >= 0, got {club_steps}")
        check_encoder_passes(encoder_passes)
        if club_update_order not in CLUB_UPDATE_ORDERS:
            raise ValueError(f"club_update_order: expected one of {CLUB_UPDATE_ORDERS}, got {club_update_order!r}")
        if encoder_passes == "per_club_step" and club_update_order != "before_main":
            raise ValueError("encoder_passes: 'per_club_step' exists only with club_update_order='before_main'")
        self.model = model
        self.main_optimizer, self.club_optimizer = main_optimizer, club_optimizer
        self.club_steps, self.encoder_passes, self.order, self.clip = club_steps, encoder_passes, club_update_order, clip
        self.accelerator = accelerator
        self.main_module = model if main_module is None else main_module
        self.club_module = CLUBObjective(model) if club_module is None else club_module
        self.groups = clip_groups(model) if clip else []  # walked once per step only when clipping

    def autocast(self):
        return self.accelerator.autocast() if self.accelerator is not None else contextlib.nullcontext()

    def club_updates(self, batch: dict, epoch: int, features) -> torch.Tensor | None:
        """``club_steps`` updates of the CLUB networks on detached features (float32, no loss scaling)."""
        loss = None
        for _ in range(self.club_steps):
            self.club_optimizer.zero_grad(set_to_none=True)
            loss = self.club_module(club_step_features(self.model, batch, epoch, features))
            loss.backward()
            clip_(self.groups, self.clip, club=True)
            self.club_optimizer.step()
        return loss

    def main_update(self, batch: dict, epoch: int, features) -> tuple[HDCIDPreTrainingOutput, bool, bool]:
        acc = self.accelerator
        context = acc.accumulate(self.main_module) if acc is not None else contextlib.nullcontext()
        with context:
            # return_dict=True: the output object whatever config.return_dict says
            out = self.main_module(**batch, epoch=epoch, features=features, return_dict=True)
            if acc is not None:
                acc.backward(out.loss)
            else:
                out.loss.backward()
            sync = acc.sync_gradients if acc is not None else True
            if sync and self.clip:
                if acc is not None:
                    acc.unscale_gradients(optimizer=self.main_optimizer)  # fp16 only; a no-op otherwise
                clip_(self.groups, self.clip, club=False)
            self.main_optimizer.step()  # prepared: skipped until the last micro-batch of the group
            self.main_optimizer.zero_grad(set_to_none=True)
        skipped = bool(sync and acc is not None and acc.optimizer_step_was_skipped)
        return out, sync, skipped

    def graph_epoch(self, epoch: int) -> int:
        """The epoch as the model sees it: the loss depends on it only through the warm start, so every
        epoch before ``warm_start_epoch`` is passed as 0 and every later one as ``warm_start_epoch``.
        Same losses; a compiled forward (``dynamo_backend``) then sees two values, specialised as
        constants (``specialize_int``), and compiles twice instead of tracing the epoch as a symbolic int
        (which dynamo fails on at the warm start: "SymNodeVariable() is not a constant", torch 2.13)."""
        warm = self.model.config.warm_start_epoch
        return warm if epoch >= warm else 0

    def __call__(self, batch: dict, epoch: int) -> StepResult:
        import torch._dynamo

        with torch._dynamo.config.patch(specialize_int=True):
            return self._step(batch, self.graph_epoch(epoch))

    def _step(self, batch: dict, epoch: int) -> StepResult:
        features, club_loss = None, None
        if self.order == "before_main":
            if self.encoder_passes == "once":
                with self.autocast():
                    features = self.model.extract_features(batch, epoch)
            club_loss = self.club_updates(batch, epoch, features)
            if features is None:  # per_club_step: the main loss gets the last encoder pass
                with self.autocast():
                    features = self.model.extract_features(batch, epoch)
        out, stepped, skipped = self.main_update(batch, epoch, features)
        if self.order == "after_main":
            club_loss = self.club_updates(batch, epoch, out.features)
        return StepResult(output=out, club_loss=club_loss, optimizer_stepped=stepped, step_skipped=skipped)


def pretraining_step(model: HDCIDForPreTraining, batch: dict, epoch: int, main_optimizer: torch.optim.Optimizer,
                     club_optimizer: torch.optim.Optimizer, club_steps: int = 5, encoder_passes: str = "once",
                     club_update_order: str = "before_main", clip: float | None = None) -> HDCIDPreTrainingOutput:
    """One step of :class:`PretrainingStep` in one process without Accelerate (the loop's step with
    ``gradient_accumulation_steps=1``, ``mixed_precision="no"``): encoder pass with the EMA codebook
    update, ``club_steps`` CLUB updates on the detached features, one update of everything else on the
    loss of eq. 14 (``club_update_order`` / ``encoder_passes`` as in the module docstring). Returns the
    output of :meth:`HDCIDForPreTraining.compute_losses`."""
    step = PretrainingStep(model, main_optimizer, club_optimizer, club_steps=club_steps, encoder_passes=encoder_passes,
                           club_update_order=club_update_order, clip=clip)
    return step(batch, epoch).output


__all__ = ["PretrainingStep", "StepResult", "CLUBObjective", "pretraining_step", "clip_groups", "clip_",
           "club_parameter_names", "club_step_features", "check_encoder_passes", "ENCODER_PASSES",
           "CLUB_UPDATE_ORDERS"]
