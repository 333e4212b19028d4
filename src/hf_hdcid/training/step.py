"""One H-DCID pretraining step: one encoder pass, the CLUB steps, the loss of eq. 14."""

from __future__ import annotations

import torch

from ..modeling import HDCIDForPreTraining, HDCIDPreTrainingOutput


def pretraining_step(model: HDCIDForPreTraining, batch: dict, epoch: int, main_optimizer: torch.optim.Optimizer,
                     club_optimizer: torch.optim.Optimizer, club_steps: int = 5) -> HDCIDPreTrainingOutput:
    """Encoder pass with the EMA codebook update, ``club_steps`` updates of the CLUB networks on the
    detached features (the original re-ran the encoder for each), then one update of everything else
    on the loss of eq. 14. Returns the output of :meth:`HDCIDForPreTraining.compute_losses`."""
    if club_steps < 0:
        raise ValueError(f"club_steps: expected an int >= 0, got {club_steps}")
    features = model.extract_features(batch, epoch)
    for _ in range(club_steps):
        club_optimizer.zero_grad()
        model.club_loss(features).backward()
        club_optimizer.step()
    out = model.compute_losses(batch, epoch, features=features)
    main_optimizer.zero_grad()
    out.loss.backward()
    main_optimizer.step()
    return out
