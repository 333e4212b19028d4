"""The H-DCID model definition (also uploaded verbatim as Hub remote code)."""

from .configuration_hdcid import MODALITIES, HDCIDConfig
from .modeling_hdcid import (
    HDCIDEncoderOutput,
    HDCIDForPreTraining,
    HDCIDModel,
    HDCIDModelOutput,
    HDCIDPreTrainedModel,
    HDCIDPreTrainingFeatures,
    HDCIDPreTrainingOutput,
)
from .quantization_hdcid import MultimodalEMACodebook

__all__ = [
    "MODALITIES", "HDCIDConfig", "HDCIDModel", "HDCIDForPreTraining", "HDCIDPreTrainedModel",
    "HDCIDEncoderOutput", "HDCIDModelOutput", "HDCIDPreTrainingOutput", "HDCIDPreTrainingFeatures",
    "MultimodalEMACodebook",
]
