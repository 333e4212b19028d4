"""Pretraining (the Accelerate loop arrives with issue 6; the single step lives here already)."""

from .step import pretraining_step

__all__ = ["pretraining_step"]
