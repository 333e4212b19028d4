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
from .toc_hdcid import inter_code_similarity, inter_code_variance, select_channels, toc_scores

__all__ = [
    "MODALITIES", "HDCIDConfig", "HDCIDModel", "HDCIDForPreTraining", "HDCIDPreTrainedModel",
    "HDCIDEncoderOutput", "HDCIDModelOutput", "HDCIDPreTrainingOutput", "HDCIDPreTrainingFeatures",
    "MultimodalEMACodebook", "inter_code_similarity", "inter_code_variance", "toc_scores", "select_channels",
]
