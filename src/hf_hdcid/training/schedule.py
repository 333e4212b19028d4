"""Learning-rate schedules of the main optimiser (the CLUB optimiser keeps a constant rate, as in the
original code).

* ``constant`` (default): the original's effective schedule: its ``MultiStepLR(milestones=[10, 20, 30],
  gamma=0.5)`` stepped per epoch never fires in its 5 pretraining epochs.
* ``multistep``: that MultiStepLR for longer runs: the rate is multiplied by ``lr_gamma`` at the start
  of every epoch listed in ``lr_milestones`` (counted in optimiser steps, so it is exact when resuming).
* ``constant_with_warmup`` / ``linear`` / ``cosine``: ``transformers.get_scheduler`` with
  ``warmup_steps`` and the planned length ``epochs x steps_per_epoch`` (``max_steps`` stops a run early
  but does not compress the schedule, so a run stopped and resumed follows the same curve).

All are ``LambdaLR`` whose state (a step counter) is saved and restored by ``accelerator.save_state`` /
``load_state`` (``weights_only=True`` loading).
"""

from __future__ import annotations

import functools

import torch

LR_SCHEDULERS = ("constant", "multistep", "constant_with_warmup", "linear", "cosine")


def multistep_factor(step: int, milestones: tuple[int, ...], gamma: float) -> float:
    """gamma ** (number of milestones <= step): MultiStepLR as a function of the optimiser step."""
    return gamma ** sum(1 for m in milestones if step >= m)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, name: str, *, steps_per_epoch: int, epochs: int,
                       warmup_steps: int = 0, milestones_epochs=(10, 20, 30),
                       gamma: float = 0.5) -> torch.optim.lr_scheduler.LambdaLR:
    """The ``name`` schedule over ``epochs x steps_per_epoch`` optimiser steps (see the module docstring)."""
    if name not in LR_SCHEDULERS:
        raise ValueError(f"lr_scheduler: expected one of {LR_SCHEDULERS}, got {name!r}")
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(multistep_factor, milestones=(),
                                                                              gamma=1.0))
    if name == "multistep":
        steps = tuple(int(m) * steps_per_epoch for m in milestones_epochs)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(multistep_factor, milestones=steps,
                                                                              gamma=gamma))
    from transformers import get_scheduler

    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps,
                         num_training_steps=steps_per_epoch * epochs)


__all__ = ["LR_SCHEDULERS", "build_lr_scheduler", "multistep_factor"]
