"""hf-hdcid: H-DCID, DCID and TOC as Hugging Face models.

Importing this package registers ``HDCIDConfig`` with ``AutoConfig`` and the models with
``AutoModel`` / ``AutoModelForPreTraining`` (model type ``"hdcid"``).
"""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

from .modeling import (
    MODALITIES,
    HDCIDConfig,
    HDCIDEncoderOutput,
    HDCIDForPreTraining,
    HDCIDModel,
    HDCIDModelOutput,
    HDCIDPreTrainedModel,
    HDCIDPreTrainingFeatures,
    HDCIDPreTrainingOutput,
    MultimodalEMACodebook,
)

__version__ = "0.1.0"

AutoConfig.register(HDCIDConfig.model_type, HDCIDConfig, exist_ok=True)
AutoModel.register(HDCIDConfig, HDCIDModel, exist_ok=True)
AutoModelForPreTraining.register(HDCIDConfig, HDCIDForPreTraining, exist_ok=True)

__all__ = [
    "MODALITIES", "HDCIDConfig", "HDCIDModel", "HDCIDForPreTraining", "HDCIDPreTrainedModel",
    "HDCIDEncoderOutput", "HDCIDModelOutput", "HDCIDPreTrainingOutput", "HDCIDPreTrainingFeatures",
    "MultimodalEMACodebook", "__version__",
]
