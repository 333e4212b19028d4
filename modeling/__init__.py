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
    TermName,
    parse_term_name,
    term_name,
)
from .codebook_hdcid import MultimodalEMACodebook
from .quantizer_family_hdcid import FiniteDiscreteTokens, FiniteScalarQuantizer, ResidualEMACodebook, build_quantizer, sparsemax
from .recurrent_hdcid import AutocastLSTM, lstm_runs_in_autocast_dtype
from .segmentation_hdcid import (
    HDCIDForAudioVisualSegmentation,
    HDCIDSegmentationConfig,
    HDCIDSegmentationOutput,
    pvt_v2_b5_config,
    resnet50_config,
)
from .toc_hdcid import inter_code_similarity, inter_code_variance, select_channels, toc_scores

__all__ = [
    "MODALITIES", "HDCIDConfig", "HDCIDModel", "HDCIDForPreTraining", "HDCIDPreTrainedModel",
    "HDCIDEncoderOutput", "HDCIDModelOutput", "HDCIDPreTrainingOutput", "HDCIDPreTrainingFeatures", "TermName", "term_name", "parse_term_name",
    "MultimodalEMACodebook", "ResidualEMACodebook", "FiniteScalarQuantizer", "FiniteDiscreteTokens",
    "build_quantizer", "sparsemax", "AutocastLSTM", "lstm_runs_in_autocast_dtype", "inter_code_similarity", "inter_code_variance", "toc_scores", "select_channels",
    "HDCIDSegmentationConfig", "HDCIDForAudioVisualSegmentation", "HDCIDSegmentationOutput", "pvt_v2_b5_config",
    "resnet50_config",
]
