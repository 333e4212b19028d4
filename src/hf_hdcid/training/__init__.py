"""Pretraining: the settings (:mod:`.config`), the step (:mod:`.step`), the Accelerate loop
(:mod:`.loop`, ``scripts/pretrain.py``) with its setup, log and checkpoint modules."""

from .config import PretrainConfig, PretrainConfigError
from .loop import pretrain
from .step import PretrainingStep, StepResult, pretraining_step

__all__ = ["pretraining_step", "PretrainingStep", "StepResult", "PretrainConfig", "PretrainConfigError", "pretrain"]
