"""AVS-S4 audio-visual segmentation queried by H-DCID / DCID unified codes (paper section 5, Table 4).

``HDCIDForAudioVisualSegmentation`` is AVSBench's S4 segmenter (Zhou et al., ECCV 2022; github
OpenNLPLab/AVSBench ``avs_scripts/avs_s4/model/PVT_AVSModel.py``) with the query of its TPAVI blocks
taken from a frozen :class:`HDCIDModel`: the unified codes of the audio (A2T training) or of the text
(T2A training), or, for the reference row, the raw 128-d VGGish audio features (AVSBench's own model).

Pipeline (shapes for the paper size: F = 5 frames of 224 x 224, PVT-v2-b5, 256 decoder channels)::

    frames [B, F, 3, H, W] in [0, 1] -> ImageNet mean/std -> [B*F, 3, H, W]
      -> AutoBackbone (PVT-v2 or ResNet)       stages  [B*F, 64|128|320|512, H/4 .. H/32]
      -> StageReduction (4 dilated 3x3 convs)  stages  [B*F, 256, H/4 .. H/32]
      -> TPAVI at ``tpavi_stages``             query [B, F, Cq] -> Linear(Cq -> 256)
      -> decoder (RefineNet fusion blocks)     [B*F, 256, H/2, W/2]
      -> output head                           logits [B, F, H, W] (sigmoid = mask probability)

    query [B, T, ...] --frozen encoder.encode--> quantized codes of the chosen layers [B, T, Cq]
      (Cq = layers x D, or the TOC channels) --average over time--> [B, F, Cq]

Differences from AVSBench / the CMG scripts (``CMG:code/AVSBench_dowmstream/avs_scripts/avs_s4``),
all deliberate:

* Time alignment. The CMG scripts tile AVS's 5 audio seconds to 10 steps, map them back to 5 by a
  ``Linear(10 -> 5)`` over time BEFORE the encoder, and never train that Linear (``train_at.py`` passes
  its output through ``torch.no_grad()``; ``train_ta.py`` leaves it out of the optimiser), so a random
  mixing of the seconds is frozen into every query. Here the shards hold the query at the encoder's
  own T steps (each AVS second repeated T/5 times, the contract), the encoder sees the length it was
  pretrained on, and its codes [B, T, C] are average-pooled over time to the F frame queries
  (``adaptive_avg_pool1d``; for T = 10, F = 5 the mean of each second's two steps, so raw features
  repeated 2x pool back to exactly AVSBench's 5 VGGish vectors). No untrained parameter sits
  between the encoder and the segmenter.
* The encoder's weights are part of this model (frozen; ``requires_grad=False``, eval mode even
  under ``.train()``): :meth:`from_encoder` copies a pretrained encoder in. The CMG scripts build the
  DCID encoder with ``model_resume = False`` and a placeholder path, i.e. random codes unless edited.
* TPAVI "dot" attention is computed as ``theta @ (phi^T @ g) / N`` instead of materialising the
  [N, N] (N = F*h*w) affinity: the same function (no softmax in "dot" mode; the audio key is
  constant over space) at linear cost, ~1 GB less per clip at stage 1 (F*56*56 = 15680 positions).
* The decoder's upsampling goes to the size of the next (shallower) stage and the logits are resized
  to the input size: identical to AVSBench's fixed x2 steps at 224 x 224, and well defined for sizes
  not divisible by 32. The deepest fusion block has no skip unit (AVSBench builds one it never calls).
* ``ResidualConvUnit`` is written without in-place ops; AVSBench's ``ReLU(inplace=True)`` on its
  input makes the residual ``relu(x)``, which is what this one computes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoBackbone, AutoConfig, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_hdcid import HDCIDConfig
from .modeling_hdcid import HDCIDModel, check_features

QUERY_SOURCES = ("codes", "features")
QUERY_MODALITIES = ("audio", "text")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: AVSBench's classifier module: four parallel 3x3 convs, dilation = padding = these
STAGE_REDUCTION_DILATIONS = (3, 6, 12, 18)
STAGES = ("stage1", "stage2", "stage3", "stage4")


def pvt_v2_b5_config(**overrides) -> dict:
    """PVT-v2-b5's architecture (AVSBench ``model/pvt.py`` ``pvt_v2_b5``: embed dims 64/128/320/512,
    heads 1/2/5/8, MLP ratio 4, depths 3/6/40/3, SR ratios 8/4/2/1, drop path 0.1) as a transformers
    ``PvtV2Config`` dict with all four stages out. The OpenGVLab/pvt_v2_b5 checkpoint has this shape."""
    values = dict(model_type="pvt_v2", depths=[3, 6, 40, 3], hidden_sizes=[64, 128, 320, 512],
                  num_attention_heads=[1, 2, 5, 8], mlp_ratios=[4, 4, 4, 4], sr_ratios=[8, 4, 2, 1],
                  drop_path_rate=0.1, out_features=list(STAGES))
    values.update(overrides)
    return values


def resnet50_config(**overrides) -> dict:
    """ResNet-50 (AVSBench's alternative backbone; 256/512/1024/2048 channels) as a ``ResNetConfig``
    dict with all four stages out (microsoft/resnet-50 has this shape)."""
    values = dict(model_type="resnet", embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
                  layer_type="bottleneck", out_features=list(STAGES))
    values.update(overrides)
    return values


def _fail(field: str, expected: str, actual: Any):
    raise ValueError(f"{field}: expected {expected}, got {actual!r}")


def backbone_config_from_dict(values) -> PretrainedConfig:
    """A transformers backbone config from its dict (``model_type`` picks the class) or as given."""
    if isinstance(values, PretrainedConfig):
        return values
    if not isinstance(values, dict) or "model_type" not in values:
        _fail("backbone_config", "a transformers backbone config or its dict with a 'model_type'", values)
    values = dict(values)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def load_pretrained_backbone(name_or_path: str):
    """The transformers backbone of a Hub id or local folder (all four stages out), weights loaded.
    Through the config's backbone class: ``AutoBackbone.from_pretrained`` (transformers 5.23) asks the
    Hub whether the repo exists even for a local folder, and fails offline."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING

    config = AutoConfig.from_pretrained(name_or_path)
    if type(config) not in MODEL_FOR_BACKBONE_MAPPING:
        _fail("backbone", "a checkpoint of a transformers backbone family (pvt_v2, resnet, ...)",
              f"{name_or_path} (model_type {config.model_type!r})")
    config.out_features = list(STAGES)
    return MODEL_FOR_BACKBONE_MAPPING[type(config)].from_pretrained(name_or_path, config=config)


class HDCIDSegmentationConfig(PretrainedConfig):
    """Configuration of :class:`HDCIDForAudioVisualSegmentation`.

    Args:
        encoder_config: the frozen H-DCID / DCID encoder's :class:`HDCIDConfig` (or its dict).
        backbone: Hub id the backbone weights came from (provenance, recorded by
            :meth:`HDCIDForAudioVisualSegmentation.from_encoder`; construction never downloads).
        backbone_config: a transformers backbone config (dict with ``model_type``, or the config):
            default PVT-v2-b5's architecture (:func:`pvt_v2_b5_config`); :func:`resnet50_config` is
            AVSBench's alternative. Its ``out_features`` must be the four stages, shallowest first.
        tpavi_stages: 0-based stages with TPAVI audio-visual attention (default all four, as the CMG
            ``train.sh`` ``--tpavi_stages 0 1 2 3 --tpavi_va_flag``).
        decoder_channels: width of the stage reductions, TPAVI and decoder (AVSBench: 256).
        query_source: "codes" (the encoder's unified codes) or "features" (the raw features as
            given, the A2A reference: AVSBench's own model with 128-d VGGish audio).
        query_layers: 1-based encoder layers whose codes form the query (None: all).
        query_toc: keep only the encoder's stored TOC channels (``encoder_config.toc_channels``).
        num_frames: F, frames per clip (AVS-S4: 5).
        image_mean, image_std: per-channel normalisation of the [0, 1] frames (ImageNet, as AVSBench).
        head_channels: the two hidden widths of the output head (AVSBench: 128, 32; smaller for tiny
            models, where the full-resolution 128-channel map dominates the step).
    """

    model_type = "hdcid_avs"

    def __init__(self, encoder_config=None, backbone: str | None = None, backbone_config=None,
                 tpavi_stages=(0, 1, 2, 3), decoder_channels: int = 256, query_source: str = "codes",
                 query_layers=None, query_toc: bool = False, num_frames: int = 5,
                 image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, head_channels=(128, 32), **kwargs):
        if isinstance(encoder_config, HDCIDConfig):
            encoder_config = encoder_config.to_dict()
        self.encoder_config = dict(encoder_config) if encoder_config is not None else HDCIDConfig.hdcid().to_dict()
        self.backbone = backbone
        if isinstance(backbone_config, PretrainedConfig):
            backbone_config = backbone_config.to_dict()
        self.backbone_config = dict(backbone_config) if backbone_config is not None else pvt_v2_b5_config()
        self.tpavi_stages = list(tpavi_stages) if tpavi_stages is not None else []
        self.decoder_channels = decoder_channels
        self.query_source = query_source
        self.query_layers = list(query_layers) if query_layers is not None else None
        self.query_toc = query_toc
        self.num_frames = num_frames
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.head_channels = list(head_channels)
        super().__init__(**kwargs)
        self.validate_segmentation()

    # ------------------------------------------------------------------ derived values
    @property
    def hdcid_config(self) -> HDCIDConfig:
        values = {k: v for k, v in self.encoder_config.items() if k not in ("model_type", "transformers_version")}
        return HDCIDConfig(**values)

    @property
    def backbone_config_object(self) -> PretrainedConfig:
        return backbone_config_from_dict(self.backbone_config)

    @property
    def layer_indices(self) -> list[int]:
        """0-based encoder layers of the query."""
        n = int(self.encoder_config.get("num_layers", 2))
        return list(range(n)) if self.query_layers is None else [k - 1 for k in self.query_layers]

    def query_dim(self, modality: str = "audio") -> int:
        """Cq: the width of one frame query (codes: sum of the chosen layers' D or TOC channels;
        features: the raw feature width of ``modality``)."""
        enc = self.hdcid_config
        if self.query_source == "features":
            return enc.audio_feature_dim if modality == "audio" else enc.text_feature_dim
        if self.query_toc:
            return sum(len(enc.toc_channels[k]) for k in self.layer_indices)
        return enc.hidden_size * len(self.layer_indices)

    # ------------------------------------------------------------------ validation
    def validate_segmentation(self) -> None:
        """ValueError naming the field, the expected and the actual value."""
        enc = self.hdcid_config  # validates the encoder config itself
        if self.query_source not in QUERY_SOURCES:
            _fail("query_source", f"one of {list(QUERY_SOURCES)}", self.query_source)
        if self.query_source == "features" and "audio" not in enc.modalities:
            _fail("query_source", "'codes' for an encoder without audio (the 'features' query is the raw audio, "
                  f"checked against encoder_config; modalities {list(enc.modalities)})", self.query_source)
        for name in ("decoder_channels", "num_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _fail(name, "a positive int", value)
        if self.decoder_channels < 2:
            _fail("decoder_channels", "an int >= 2 (TPAVI halves it inside)", self.decoder_channels)
        if not isinstance(self.query_toc, bool):
            _fail("query_toc", "a bool", self.query_toc)
        if self.query_layers is not None:
            layers = self.query_layers
            if (not layers or any(isinstance(k, bool) or not isinstance(k, int) for k in layers)
                    or sorted(set(layers)) != list(layers) or layers[0] < 1 or layers[-1] > enc.num_layers):
                _fail("query_layers", f"None or increasing layer numbers in 1..{enc.num_layers}", layers)
        if self.query_toc:
            if self.query_source != "codes":
                _fail("query_toc", "False with query_source='features' (TOC selects code channels)", True)
            if enc.toc_channels is None:
                _fail("query_toc", "False, or an encoder_config with toc_channels (compute TOC first)", True)
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
                _fail(name, "three numbers (RGB)", value)
        if (len(self.head_channels) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.head_channels)):
            _fail("head_channels", "two positive ints", self.head_channels)
        if any(v <= 0 for v in self.image_std):
            _fail("image_std", "three positive numbers", self.image_std)
        try:
            backbone = self.backbone_config_object
        except ValueError as error:
            if str(error).startswith("backbone_config"):
                raise
            raise ValueError(f"backbone_config: cannot build a transformers config: {error}") from error
        out = list(getattr(backbone, "out_features", None) or [])
        stage_names = list(getattr(backbone, "stage_names", []))
        order = [stage_names.index(s) for s in out if s in stage_names]
        if len(out) != 4 or len(order) != 4 or order != sorted(set(order)):
            _fail("backbone_config.out_features", "four backbone stages, shallowest first (the decoder fuses "
                  "four strided stages, as AVSBench)", out)
        if (any(isinstance(s, bool) or not isinstance(s, int) for s in self.tpavi_stages)
                or sorted(set(self.tpavi_stages)) != list(self.tpavi_stages)
                or (self.tpavi_stages and not 0 <= self.tpavi_stages[0] <= self.tpavi_stages[-1] <= 3)):
            _fail("tpavi_stages", "increasing 0-based stage indices in 0..3", self.tpavi_stages)
        if self.backbone is not None and not isinstance(self.backbone, str):
            _fail("backbone", "None or a Hub id / folder (str)", self.backbone)


# =============================================================================================
# Building blocks
# =============================================================================================
class StageReduction(nn.Module):
    """AVSBench's ``Classifier_Module``: the sum of four 3x3 convs with dilation = padding in
    (3, 6, 12, 18), mapping one backbone stage to ``out_channels``. [N, C_in, h, w] -> [N, C_out, h, w]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d)
                                   for d in STAGE_REDUCTION_DILATIONS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs[0](x)
        for conv in self.convs[1:]:
            out = out + conv(x)
        return out


class TPAVI(nn.Module):
    """Temporal pixel-wise audio-visual interaction, "dot" mode (AVSBench ``model/TPAVI.py``).

    A non-local block over the F*h*w positions of one clip whose keys come from the frame queries:
    ``z = LayerNorm(x + W_z(theta(x) phi(a)^T g(x) / N))``, with the query [B, F, Cq] first aligned to
    the visual width by ``Linear(Cq -> C)`` (AVSBench: 128 VGGish; CMG: 256 codes; here ``query_dim``)
    and ``W_z`` a 1x1 conv + BatchNorm3d initialised to zero (the block starts as LayerNorm(x)).
    Computed as ``theta @ (phi^T @ g) / N``: the same value as the [N, N] affinity of the original
    (no softmax in "dot" mode, the key of a position is its frame's query), at linear cost.
    """

    def __init__(self, channels: int, query_dim: int):
        super().__init__()
        inner = max(channels // 2, 1)
        self.inner = inner
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Linear(channels, inner)  # a 1x1x1 conv on the query tiled over space = a Linear
        self.g = nn.Conv3d(channels, inner, 1)
        self.w_z = nn.Sequential(nn.Conv3d(inner, channels, 1), nn.BatchNorm3d(channels))
        self.norm = nn.LayerNorm(channels)
        # built (and initialised) last: the only layer whose shape depends on the query, so theta / phi /
        # g / W_z draw the same weights at one seed whatever the query's width
        self.align = nn.Linear(query_dim, channels)  # AVSBench align_channel

    def affinity_output(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """y = theta(x) phi(a)^T g(x) / N, [B, C', F, h, w] (the explicit form is in the tests)."""
        b, _, f, h, w = x.shape
        n = f * h * w
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [B, N, C']
        g = self.g(x).flatten(3).sum(-1).transpose(1, 2)  # [B, F, C'] (sum over the h*w positions of each frame)
        phi = self.phi(self.align(query))  # [B, F, C']
        m = phi.transpose(1, 2) @ g  # [B, C', C'] = sum over all positions j of phi_j g_j^T
        y = theta @ m / n  # [B, N, C']
        return y.transpose(1, 2).reshape(b, self.inner, f, h, w)

    def forward(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """x: visual [B, C, F, h, w]; query: [B, F, Cq] -> [B, C, F, h, w]."""
        z = x + self.w_z(self.affinity_output(x, query))
        return self.norm(z.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class ResidualConvUnit(nn.Module):
    """relu -> 3x3 conv -> relu -> 3x3 conv, plus relu(x) (AVSBench's unit, whose in-place ReLU turns its
    input into relu(x) before the addition). [N, C, h, w] -> [N, C, h, w]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class FusionBlock(nn.Module):
    """RefineNet-style fusion (AVSBench ``FeatureFusionBlock``): (deeper + unit(skip)) -> unit ->
    bilinear (align_corners=True) upsampling to ``size`` (AVSBench: x2)."""

    def __init__(self, channels: int, with_skip: bool = True):
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels) if with_skip else None
        self.unit = ResidualConvUnit(channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size) -> torch.Tensor:
        if skip is not None:
            x = x + self.skip_unit(skip)
        return F.interpolate(self.unit(x), size=size, mode="bilinear", align_corners=True)


class OutputHead(nn.Module):
    """AVSBench's ``output_conv``: 3x3 conv (C -> 128), x2 bilinear, 3x3 conv (128 -> 32), ReLU, 1x1 conv
    (32 -> 1) (widths ``hidden``). [N, C, H/2, W/2] -> [N, 1, H, W]."""

    def __init__(self, channels: int, hidden=(128, 32)):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden[0], 3, padding=1)
        self.conv2 = nn.Conv2d(hidden[0], hidden[1], 3, padding=1)
        self.conv3 = nn.Conv2d(hidden[1], 1, 1)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        x = F.interpolate(self.conv1(x), size=size, mode="bilinear", align_corners=False)
        return self.conv3(F.relu(self.conv2(x)))


def annotated_frame_bce(logits: torch.Tensor, masks: torch.Tensor, mask_valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(logits) against the masks, averaged over the pixels of the
    annotated frames only. AVSBench S4's training loss (``loss.py`` ``F1_IoU_BCELoss``, called "IoU
    loss" there although it is a BCE) is this with frame 0 the only annotated frame of a train clip.
    logits, masks [B, F, H, W]; mask_valid [B, F] bool."""
    chosen = logits[mask_valid]  # [K, H, W]
    return F.binary_cross_entropy_with_logits(chosen, masks[mask_valid].to(chosen.dtype))


# =============================================================================================
# Model
# =============================================================================================
@dataclass
class HDCIDSegmentationOutput(ModelOutput):
    """loss: :func:`annotated_frame_bce` (only when masks were given). logits: [B, F, H, W] (sigmoid
    gives the mask probability). query: the frame queries the TPAVI blocks saw, [B, F, Cq]."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    query: torch.Tensor | None = None


class HDCIDForAudioVisualSegmentation(PreTrainedModel):
    """AVSBench-S4 segmenter whose TPAVI query is a frozen H-DCID / DCID encoder's unified codes of
    the audio or the text (or raw audio features for the A2A reference); module docstring for the
    architecture and the differences from AVSBench / CMG."""

    config_class = HDCIDSegmentationConfig
    # save_pretrained writes auto_map and copies this file (and the modeling files it imports): the
    # folder loads with AutoModel.from_pretrained(..., trust_remote_code=True) without the package
    _auto_class = "AutoModel"
    AUTO_MAP = {"AutoConfig": "segmentation_hdcid.HDCIDSegmentationConfig",
                "AutoModel": "segmentation_hdcid.HDCIDForAudioVisualSegmentation"}
    base_model_prefix = "hdcid_avs"
    main_input_name = "frames"
    _no_split_modules = ["TPAVI", "FusionBlock"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``save_pretrained`` with remote code for AutoConfig and AutoModel (``trust_remote_code=True``)."""
        self.config.auto_map = dict(self.AUTO_MAP)
        return super().save_pretrained(save_directory, *args, **kwargs)

    def __init__(self, config: HDCIDSegmentationConfig):
        super().__init__(config)
        # Every part is built and initialised on its own RNG stream, seeded from one draw of the global
        # generator: at one seed the segmenter's layers are then the same for a DCID and an H-DCID encoder
        # (only the query projections, whose shape is the query's width, differ), and the global RNG moves
        # by one draw whatever the encoder (a shared stream made every later layer depend on the encoder's size).
        # (from_pretrained builds on the meta device: nothing is drawn nor initialised, the weights are loaded)
        base_seed = None if torch.empty(0).device.type == "meta" else int(torch.randint(0, 2**62, (1,)))
        self.encoder = self._build_on_own_stream(base_seed, 0, lambda: HDCIDModel(config.hdcid_config))
        self.encoder.requires_grad_(False)
        self.backbone = self._build_on_own_stream(
            base_seed, 1, lambda: AutoBackbone.from_config(config.backbone_config_object))
        channels = list(self.backbone.channels)
        c = config.decoder_channels
        self.reductions = self._build_on_own_stream(
            base_seed, 2, lambda: nn.ModuleList(StageReduction(ch, c) for ch in channels))
        query_dim = config.query_dim("audio")
        self.tpavi = nn.ModuleDict({str(i): self._build_on_own_stream(base_seed, 10 + int(i), lambda: TPAVI(c, query_dim))
                                    for i in config.tpavi_stages})  # one stream per stage: the query width differs
        self.fusions = self._build_on_own_stream(
            base_seed, 3, lambda: nn.ModuleList(FusionBlock(c, with_skip=(i < 3)) for i in range(4)))
        self.head = self._build_on_own_stream(base_seed, 4, lambda: OutputHead(c, config.head_channels))
        self.post_init()
        self.encoder.eval()

    # ------------------------------------------------------------------ construction
    def _build_on_own_stream(self, base_seed: int | None, part: int, build):
        """``build()`` and this model's initialisation of the result (children first, as ``post_init``,
        which then skips it), on a CPU RNG stream seeded ``base_seed + part`` (re-seeded before the init
        pass, so a layer's weights depend only on the layers initialised before it in this part); the
        global RNG is left as it was. ``base_seed=None`` (on the meta device): only ``build()``."""
        if base_seed is None:
            return build()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(base_seed + part)
            module = build()
            torch.default_generator.manual_seed(base_seed + part)  # the weights are the init pass's draws, in order
            with init.guard_torch_init_functions():
                module.apply(self._initialize_weights)  # a PreTrainedModel part (encoder, backbone) is already done
        return module

    @classmethod
    def from_encoder(cls, encoder, backbone: str | None = None, backbone_config=None,
                     **kwargs) -> "HDCIDForAudioVisualSegmentation":
        """A segmenter around (a copy of the weights of) a pretrained :class:`HDCIDModel` (a pretraining
        model gives its encoder). ``backbone``: a Hub id / folder whose weights the visual backbone
        loads (``AutoBackbone.from_pretrained``, all four stages out; the only download); else a
        random backbone of ``backbone_config`` (default PVT-v2-b5's architecture). ``kwargs``: the other
        :class:`HDCIDSegmentationConfig` fields."""
        encoder = getattr(encoder, "base_model", encoder)
        if not isinstance(encoder, HDCIDModel):
            _fail("encoder", "an HDCIDModel (or HDCIDForPreTraining)", type(encoder).__name__)
        pretrained = load_pretrained_backbone(backbone) if backbone is not None else None
        if pretrained is not None:
            backbone_config = pretrained.config
        config = HDCIDSegmentationConfig(encoder_config=encoder.config.to_dict(), backbone=backbone,
                                         backbone_config=backbone_config, **kwargs)
        model = cls(config)
        model.encoder.load_state_dict(encoder.state_dict())
        if pretrained is not None:
            model.backbone.load_state_dict(pretrained.state_dict())
        return model.to(encoder.device)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, with the encoder frozen again (loading replaces the
        parameters, and with them ``requires_grad=False``)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True: (model, info)
        model.encoder.requires_grad_(False)
        model.encoder.eval()
        return loaded

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the frozen encoder's (what the optimiser gets)."""
        return [p for name, p in self.named_parameters() if not name.startswith("encoder.")]

    @torch.no_grad()
    def _init_weights(self, module):
        """AVSBench's initialisation: stage-reduction convs N(0, 0.01); TPAVI's W_z BatchNorm zero
        (the block starts as LayerNorm(x)); every other layer PyTorch's default."""
        if isinstance(module, StageReduction):
            for conv in module.convs:
                init.normal_(conv.weight, 0.0, 0.01)
        elif isinstance(module, TPAVI):
            init.zeros_(module.w_z[1].weight)
            init.zeros_(module.w_z[1].bias)
        elif isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d, nn.LayerNorm, nn.BatchNorm3d)):
            module.reset_parameters()  # children before parents: StageReduction / TPAVI above still win

    def train(self, mode: bool = True):
        """As nn.Module.train, but the frozen encoder stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    # ------------------------------------------------------------------ inputs
    def _check_frames(self, frames) -> None:
        f = self.config.num_frames
        expected = f"[B, {f}, 3, H, W] float in [0, 1]"
        if not isinstance(frames, torch.Tensor):
            _fail("frames", f"a tensor {expected}", type(frames).__name__)
        if not frames.is_floating_point() or frames.dim() != 5 or frames.shape[1] != f or frames.shape[2] != 3:
            raise ValueError(f"frames: expected {expected}, got {list(frames.shape)} {frames.dtype}")
        if frames.shape[0] == 0 or frames.shape[-1] < 1 or frames.shape[-2] < 1:
            raise ValueError(f"frames: expected {expected} with B >= 1, got {list(frames.shape)}")
        lo, hi = float(frames.min()), float(frames.max())
        if not (0.0 <= lo and hi <= 1.0):
            raise ValueError(f"frames: expected values in [0, 1] (the model applies image_mean / image_std), got "
                             f"min {lo:.4g}, max {hi:.4g}")

    def frame_queries(self, query: torch.Tensor, query_modality: str) -> torch.Tensor:
        """query [B, T, ...] of ``query_modality`` -> frame queries [B, F, Cq]: the frozen encoder's
        quantized codes of the chosen layers (TOC channels when ``query_toc``) or the raw features,
        averaged over time to F steps."""
        cfg = self.config
        if query_modality not in QUERY_MODALITIES:
            _fail("query_modality", f"one of {list(QUERY_MODALITIES)}", query_modality)
        enc_config = self.encoder.config
        if cfg.query_source == "features":
            if query_modality != "audio":
                _fail("query_modality", "'audio' with query_source='features' (the A2A reference: the TPAVI "
                      f"projection takes {cfg.query_dim('audio')}-d raw audio features)", query_modality)
            check_features(enc_config, "audio", query)
            x = query.to(self.dtype)  # [B, T, Cin]
        else:
            with torch.no_grad():
                out = self.encoder.encode(query_modality, query)
            toc = enc_config.toc_channels if cfg.query_toc else None
            parts = []
            for k in cfg.layer_indices:
                q = out.quantized[k]  # [B, T, D]
                parts.append(q if toc is None else q[..., torch.as_tensor(toc[k], device=q.device)])
            x = torch.cat(parts, dim=-1).detach().to(self.dtype)  # [B, T, Cq]
        if x.dim() != 3:
            raise ValueError(f"query: expected [B, T, C], got {list(x.shape)}")
        return F.adaptive_avg_pool1d(x.transpose(1, 2), cfg.num_frames).transpose(1, 2)  # [B, F, Cq]

    # ------------------------------------------------------------------ forward
    def forward(self, frames: torch.Tensor, query: torch.Tensor, query_modality: str = "audio",
                masks: torch.Tensor | None = None, mask_valid: torch.Tensor | None = None, return_dict=None):
        """frames [B, F, 3, H, W] in [0, 1]; query [B, T, ...] features of ``query_modality`` ("audio" |
        "text") at the encoder's T steps; masks [B, F, H, W] 0/1 and mask_valid [B, F] bool (default: all
        frames annotated) for the loss. Returns :class:`HDCIDSegmentationOutput` (logits [B, F, H, W])."""
        self._check_frames(frames)
        b, f, _, h, w = frames.shape
        if not isinstance(query, torch.Tensor) or query.dim() < 3 or query.shape[0] != b:
            raise ValueError(f"query: expected a tensor [B={b}, T, ...] of {query_modality!r} features, got "
                             f"{list(query.shape) if isinstance(query, torch.Tensor) else type(query).__name__}")
        if masks is not None:
            if not isinstance(masks, torch.Tensor) or tuple(masks.shape) != (b, f, h, w):
                raise ValueError(f"masks: expected [B, F, H, W] = {[b, f, h, w]}, got "
                                 f"{list(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__}")
            if mask_valid is None:
                mask_valid = torch.ones(b, f, dtype=torch.bool, device=masks.device)
            if not isinstance(mask_valid, torch.Tensor) or tuple(mask_valid.shape) != (b, f):
                raise ValueError(f"mask_valid: expected [B, F] = {[b, f]} bool, got "
                                 f"{list(mask_valid.shape) if isinstance(mask_valid, torch.Tensor) else mask_valid!r}")
            mask_valid = mask_valid.bool()
            if not bool(mask_valid.any()):
                raise ValueError("mask_valid: no frame of the batch is annotated; the loss needs at least one")
        elif mask_valid is not None:
            raise ValueError("mask_valid: given without masks")

        queries = self.frame_queries(query, query_modality)  # [B, F, Cq]
        x = frames.to(self.dtype).flatten(0, 1)  # [B*F, 3, H, W]
        mean = torch.tensor(self.config.image_mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.image_std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std  # ImageNet normalisation (config values: no buffer to go stale on load)
        stages = self.backbone(pixel_values=x).feature_maps  # 4 x [B*F, C_s, h_s, w_s]
        feats = [red(s) for red, s in zip(self.reductions, stages)]  # 4 x [B*F, c, h_s, w_s]
        for key, block in self.tpavi.items():
            i = int(key)
            v = feats[i]
            v5 = v.unflatten(0, (b, f)).transpose(1, 2)  # [B, c, F, h, w]
            feats[i] = block(v5, queries).transpose(1, 2).flatten(0, 1)  # [B*F, c, h, w]
        y = feats[3]
        for i in (3, 2, 1, 0):  # deepest first; each block ends at the next stage's size (AVSBench: x2)
            target = feats[i - 1].shape[-2:] if i > 0 else (max(h // 2, 1), max(w // 2, 1))
            y = self.fusions[i](y, feats[i] if i < 3 else None, target)  # [B*F, c, target]
        logits = self.head(y, (h, w)).view(b, f, h, w)  # [B, F, H, W]
        loss = annotated_frame_bce(logits, masks, mask_valid) if masks is not None else None
        out = HDCIDSegmentationOutput(loss=loss, logits=logits, query=queries)
        use_dict = self.config.return_dict if return_dict is None else bool(return_dict)
        return out if use_dict else out.to_tuple()


__all__ = ["HDCIDSegmentationConfig", "HDCIDForAudioVisualSegmentation", "HDCIDSegmentationOutput", "TPAVI",
           "StageReduction", "FusionBlock", "OutputHead", "ResidualConvUnit", "annotated_frame_bce",
           "pvt_v2_b5_config", "resnet50_config", "backbone_config_from_dict"]
