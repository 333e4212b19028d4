"""One H-DCID pretraining step: the encoder pass(es), the CLUB steps, the loss of eq. 14."""

from __future__ import annotations

import torch

from ..modeling import HDCIDForPreTraining, HDCIDPreTrainingOutput

#: ``"once"``: one encoder pass per step, the CLUB steps reuse its detached outputs (default, ~6x less
#: encoder work). ``"per_club_step"``: the original code's schedule (``pretrain_ml.train_epoch``): every
#: CLUB step re-runs the encoder in training mode (EMA update and dead-code counting included), then a
#: last pass feeds the main loss: ``club_steps + 1`` encoder passes and codebook updates per batch.
ENCODER_PASSES = ("once", "per_club_step")


def check_encoder_passes(encoder_passes: str) -> None:
    if encoder_passes not in ENCODER_PASSES:
        raise ValueError(f"encoder_passes: expected one of {ENCODER_PASSES}, got {encoder_passes!r}")


def club_step_features(model: HDCIDForPreTraining, batch: dict, epoch: int, features):
    """The features one CLUB step trains on: the step's shared ``features`` (``encoder_passes="once"``)
    or, when they are None (``"per_club_step"``), a fresh gradient-free train-mode encoder pass."""
    if features is not None:
        return features
    with torch.no_grad():
        return model.extract_features(batch, epoch)


def pretraining_step(model: HDCIDForPreTraining, batch: dict, epoch: int, main_optimizer: torch.optim.Optimizer,
                     club_optimizer: torch.optim.Optimizer, club_steps: int = 5,
                     encoder_passes: str = "once") -> HDCIDPreTrainingOutput:
    """Encoder pass with the EMA codebook update, ``club_steps`` updates of the CLUB networks on the
    detached features, then one update of everything else on the loss of eq. 14. With
    ``encoder_passes="per_club_step"`` every CLUB step gets its own encoder pass (no gradient is kept
    for it) as in the original code. Returns the output of :meth:`HDCIDForPreTraining.compute_losses`."""
    if isinstance(club_steps, bool) or not isinstance(club_steps, int) or club_steps < 0:
        raise ValueError(f"club_steps: expected an int >= 0, got {club_steps}")
    check_encoder_passes(encoder_passes)
    features = None if encoder_passes == "per_club_step" else model.extract_features(batch, epoch)
    for _ in range(club_steps):
        club_optimizer.zero_grad()
        model.club_loss(club_step_features(model, batch, epoch, features)).backward()
        club_optimizer.step()
    if features is None:
        features = model.extract_features(batch, epoch)
    out = model.compute_losses(batch, epoch, features=features)
    main_optimizer.zero_grad()
    out.loss.backward()
    main_optimizer.step()
    return out
