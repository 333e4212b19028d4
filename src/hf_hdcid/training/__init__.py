"""Pretraining: the single step and the Accelerate loop (``scripts/pretrain.py``)."""

from .loop import PretrainConfig, pretrain
from .step import pretraining_step

__all__ = ["pretraining_step", "PretrainConfig", "pretrain"]
