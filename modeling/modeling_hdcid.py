"""H-DCID and DCID as transformers models.

``HDCIDModel`` maps audio, video or text features to per-layer discrete unified codes;
``HDCIDForPreTraining`` adds the reconstruction decoders, cross-modal CPC, CLUB networks and the
loss of eq. 14 with the layer warm start. Paper: arXiv 2403.05168 (section 4.2 and appendix A);
equation numbers below are the main text's unless they say "appendix".

Self-contained (torch + transformers, relative imports) so that the same files serve as Hub remote
code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_hdcid import FSQ_NO_TOC, MODALITIES, HDCIDConfig
from .convolution_hdcid import ChannelsLastConv2d, ChannelsLastConvTranspose2d
from .objectives_hdcid import CLUBEstimator, CrossModalCPC, cross_modal_code_matching
from .codebook_hdcid import CodebookOutput, MultimodalEMACodebook
from .quantizer_family_hdcid import FiniteDiscreteTokens, build_quantizer
from .recurrent_hdcid import AutocastLSTM
from .toc_hdcid import select_channels

AUTO_MAP = {
    "AutoConfig": "configuration_hdcid.HDCIDConfig",
    "AutoModel": "modeling_hdcid.HDCIDModel",
    "AutoModelForPreTraining": "modeling_hdcid.HDCIDForPreTraining",
}


# =============================================================================================
# Outputs
# =============================================================================================
@dataclass
class HDCIDEncoderOutput(ModelOutput):
    """Discrete unified representation of one modality.

    semantic: per layer the modality-general feature z_k before quantisation, [B, T, D] each.
    quantized: per layer the straight-through code e_{l,k} (appendix eq. 3), [B, T, D] each.
    indices: per layer the code indices, [B, T] long each (rvq: the first stage's; fdt: the top token).
    unified: the layers' codes concatenated on the last axis, [B, T, num_layers * D], or, with
        ``apply_toc=True``, only the TOC channels of each layer, [B, T, sum_k Q_k].
    """

    semantic: tuple | None = None
    quantized: tuple | None = None
    indices: tuple | None = None
    unified: torch.Tensor | None = None


@dataclass
class HDCIDModelOutput(ModelOutput):
    """:class:`HDCIDEncoderOutput` of each modality that was given (others are None).

    modalities: the names of the encoded modalities, in input order.
    """

    modalities: tuple | None = None
    audio: HDCIDEncoderOutput | None = None
    video: HDCIDEncoderOutput | None = None
    text: HDCIDEncoderOutput | None = None


@dataclass
class HDCIDLayerFeatures:
    """Everything one layer computed during pretraining, per modality name.

    inputs: x_{m,k} [B, T, d_in] (video layer 0: [B, T, H, W, C]); semantic: z_{m,k} [B, T, D];
    specific: z-bar_{m,k} [B, T, d_spec] (CLUB target, next layer's input); video_map: the
    modality-specific video map [B, T, h, w, C'] (layer 0 only); codes: the codebook call.
    """

    inputs: dict
    semantic: dict
    specific: dict
    codes: CodebookOutput
    video_map: torch.Tensor | None = None


@dataclass
class HDCIDPreTrainingFeatures:
    """The features of every layer that enters the loss at ``epoch`` (reused by the CLUB steps)."""

    layers: list
    epoch: int


class TermName(NamedTuple):
    """A loss / diagnostic name taken apart: ``family[/modality]/layer<k>``; modality and layer are
    None where the name has none (``loss``, ``lr``, ``club_loss``)."""

    family: str
    modality: str | None
    layer: int | None


_TERM_NAME = re.compile(r"^(?P<family>[^/]+)(?:/(?P<modality>[^/]+))?/layer(?P<layer>\d+)$")


def term_name(family: str, layer: int, modality: str | None = None) -> str:
    """The name of a per-layer loss or diagnostic: ``recon/audio/layer1``, ``cpc/layer2`` (layers from 1).
    The one place these names are built; :func:`parse_term_name` takes them apart."""
    return f"{family}/{modality}/layer{layer}" if modality is not None else f"{family}/layer{layer}"


def parse_term_name(name: str) -> TermName:
    """:func:`term_name` backwards: ``recon/audio/layer1`` -> TermName("recon", "audio", 1); a name
    without a layer (``loss``, ``lr``) -> TermName(name, None, None)."""
    match = _TERM_NAME.match(name)
    if match is None:
        return TermName(name, None, None)
    return TermName(match["family"], match["modality"], int(match["layer"]))


@dataclass
class HDCIDPreTrainingOutput(ModelOutput):
    """Loss of eq. 14 with the warm start.

    loss: total = L_1 + upper_layer_loss_weight * sum_{k>1} L_k (layers k>1 once warm).
    losses: every named term (:func:`term_name`), ``"<term>/<modality>/layer<k>"`` for recon, commit,
        mi and ``"<term>/layer<k>"`` for cpc and cmcm, plus ``"total/layer<k>"`` (unweighted L_k).
    diagnostics: detached statistics (perplexity, active codes, equal_num, CPC accuracy).
    features: the :class:`HDCIDPreTrainingFeatures` the loss was computed from.
    """

    loss: torch.Tensor | None = None
    losses: dict | None = None
    diagnostics: dict | None = None
    features: HDCIDPreTrainingFeatures | None = None


# =============================================================================================
# Building blocks
# =============================================================================================
class ResidualStack(nn.Module):
    """Residual 3x3 -> 1x1 conv blocks then ReLU, on channels-last maps [N, H, W, C].

    Each block computes x = relu(x) + W1 relu(W3 relu(x)): the original's block starts with an
    in-place ReLU, so its skip path carries relu(x)."""

    def __init__(self, channels: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(ChannelsLastConv2d(channels, channels, 3, padding=1, bias=False), nn.ReLU(),
                          ChannelsLastConv2d(channels, channels, 1, bias=False))
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x.relu()
            x = x + layer(x)
        return x.relu()


class TemporalTransformer(nn.Module):
    """Linear projection to D then post-LayerNorm transformer layers over time (no positional
    encoding, no mask; the original's InternalTemporalRelationModule)."""

    def __init__(self, input_dim: int, config: HDCIDConfig):
        super().__init__()
        self.projection = nn.Linear(input_dim, config.hidden_size)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                config.hidden_size, config.num_attention_heads, config.intermediate_size,
                dropout=config.dropout, activation="relu", layer_norm_eps=config.layer_norm_eps,
                batch_first=True, norm_first=False,
            )
            for _ in range(config.num_transformer_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection(x)  # [B, T, D]
        for layer in self.layers:
            x = layer(x)
        return x


class VideoChannelAttentionPooling(nn.Module):
    """Squeeze-excitation channel attention with residual, then pooling over positions:
    [B, T, H, W, C] -> [B, T, C] (the video front of the modality-general encoder)."""

    def __init__(self, config: HDCIDConfig):
        super().__init__()
        c = config.video_feature_dim
        self.excitation = nn.Sequential(
            nn.Linear(c, c // config.video_se_reduction, bias=False), nn.ReLU(),
            nn.Linear(c // config.video_se_reduction, c, bias=False), nn.Sigmoid(),
        )
        self.pooling = config.video_spatial_pooling

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, t, h, w, c = video.shape
        x = video.reshape(b, t, h * w, c)  # [B, T, P, C]
        attention = self.excitation(x.mean(2, keepdim=True))  # [B, T, 1, C]
        x = x * attention + x
        return x.sum(2) if self.pooling == "sum" else x.mean(2)  # [B, T, C]


class VideoSpecificEncoder(nn.Module):
    """Modality-specific video encoder Psi (layer 1): unpadded 3x3, 3x3, 1x1 convs + residual stack
    (7x7 -> 3x3 map), and an MLP on the spatially pooled map back to ``video_feature_dim``.

    The convolutions run on channels-last maps (:mod:`.convolution_hdcid`: one GEMM each on the CPU)."""

    def __init__(self, config: HDCIDConfig):
        super().__init__()
        c_in, (c1, c2) = config.video_feature_dim, config.video_conv_channels
        self.convs = nn.Sequential(
            ChannelsLastConv2d(c_in, c1, 3), nn.ReLU(), ChannelsLastConv2d(c1, c2, 3), nn.ReLU(),
            ChannelsLastConv2d(c2, c2, 1),
            ResidualStack(c2, config.video_residual_layers),
        )
        self.mlp = nn.Sequential(
            nn.Linear(c2, config.video_feedforward_dim), nn.ReLU(),
            nn.Linear(config.video_feedforward_dim, config.video_feature_dim),
        )

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, H, W, C] -> (map [B, T, H-4, W-4, C2], pooled feature [B, T, C])."""
        b, t, h, w, c = video.shape
        maps = self.convs(video.reshape(b * t, h, w, c))  # [B*T, h, w, C2]
        pooled = self.mlp(maps.mean((1, 2)).view(b, t, -1))  # [B, T, C]
        return maps.reshape(b, t, maps.shape[1], maps.shape[2], -1), pooled


class LinearSpecificEncoder(nn.Module):
    """Modality-specific encoder Psi for vector features: ReLU(Linear)."""

    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, output_dim)

    def forward(self, x: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, self.linear(x).relu()


class ModalityGeneralEncoder(nn.Module):
    """Modality-general encoder Phi_{m,k} (appendix eq. 1): [video pooling] + temporal transformer."""

    def __init__(self, config: HDCIDConfig, layer: int, modality: str):
        super().__init__()
        self.video_pooling = (
            VideoChannelAttentionPooling(config) if layer == 0 and modality == "video" else None
        )
        self.transformer = TemporalTransformer(config.layer_input_dim(layer, modality), config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.video_pooling is not None:
            x = self.video_pooling(x)  # [B, T, C]
        return self.transformer(x)  # [B, T, D]


def modality_specific_encoder(config: HDCIDConfig, layer: int, modality: str) -> nn.Module:
    """Psi_{m,k}: the convolutional video encoder for layer 1, ReLU(Linear) otherwise."""
    if layer == 0 and modality == "video":
        return VideoSpecificEncoder(config)
    return LinearSpecificEncoder(config.layer_input_dim(layer, modality), config.specific_dim(layer, modality))


class TextTokenEncoder(nn.Module):
    """Bidirectional LSTM over the BERT token features: [B, T, text_feature_dim] -> [B, T, 2h].

    Under autocast the output is in the autocast dtype; on CPUs without a reduced-precision oneDNN
    LSTM (AVX2-only) the LSTM itself runs in float32 (:class:`AutocastLSTM`)."""

    def __init__(self, config: HDCIDConfig):
        super().__init__()
        self.lstm = AutocastLSTM(config.text_feature_dim, config.text_lstm_hidden_size,
                            config.text_lstm_num_layers, batch_first=True, bidirectional=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lstm(tokens)[0]


class HDCIDLayer(nn.Module):
    """One disentanglement layer k: Phi_{m,k} and Psi_{m,k} per modality and the shared quantizer e_k
    (``config.quantizer``; the attribute keeps the name ``codebook`` for checkpoint compatibility)."""

    def __init__(self, config: HDCIDConfig, layer: int):
        super().__init__()
        self.general = nn.ModuleDict({m: ModalityGeneralEncoder(config, layer, m) for m in config.modalities})
        self.specific = nn.ModuleDict({m: modality_specific_encoder(config, layer, m) for m in config.modalities})
        self.codebook = build_quantizer(config)


class VideoReconstructionDecoder(nn.Module):
    """Reconstructs the video map from the layer-1 code (projected, tiled over the specific map and
    concatenated before it) with transposed convolutions: 3x3 -> 5x5 -> 7x7."""

    def __init__(self, config: HDCIDConfig):
        super().__init__()
        c_out, (c1, c2), d = config.video_feature_dim, config.video_conv_channels, config.hidden_size
        self.code_projection = nn.Linear(d, d)
        self.deconvs = nn.Sequential(
            ChannelsLastConvTranspose2d(c2 + d, c1, 3), ResidualStack(c1, config.video_residual_layers),
            ChannelsLastConvTranspose2d(c1, c_out, 3), nn.ReLU(), ChannelsLastConvTranspose2d(c_out, c_out, 1),
        )

    def forward(self, code: torch.Tensor, specific_map: torch.Tensor) -> torch.Tensor:
        """code [B, T, D], specific_map [B, T, h, w, C2] -> reconstruction [B, T, h+4, w+4, C]."""
        b, t, h, w, _ = specific_map.shape
        tiled = self.code_projection(code)[:, :, None, None, :].expand(b, t, h, w, -1)
        x = torch.cat([tiled, specific_map], dim=-1).reshape(b * t, h, w, -1)  # [B*T, h, w, D+C2]
        x = self.deconvs(x)  # [B*T, H, W, C] (channels-last)
        return x.reshape(b, t, x.shape[1], x.shape[2], -1)


class FeatureReconstructionDecoder(nn.Module):
    """Reconstructs a vector feature from [Linear(code), specific feature] with one Linear."""

    def __init__(self, code_dim: int, specific_dim: int, output_dim: int):
        super().__init__()
        self.code_projection = nn.Linear(code_dim, specific_dim)
        self.output = nn.Linear(2 * specific_dim, output_dim)

    def forward(self, code: torch.Tensor, specific: torch.Tensor) -> torch.Tensor:
        return self.output(torch.cat([self.code_projection(code), specific], dim=-1))


def reconstruction_decoder(config: HDCIDConfig, layer: int, modality: str) -> nn.Module:
    """D_{m,k} of appendix eq. 4: rebuilds x_{m,k} from the code and Psi_{m,k}'s feature."""
    if layer == 0 and modality == "video":
        return VideoReconstructionDecoder(config)
    target = (config.audio_feature_dim if layer == 0 and modality == "audio"
              else config.layer_input_dim(layer, modality))
    return FeatureReconstructionDecoder(config.hidden_size, config.specific_dim(layer, modality), target)


# =============================================================================================
# Input checks
# =============================================================================================
def expected_shape(config: HDCIDConfig, modality: str) -> tuple:
    """Per-sample shape of a modality's input features (after the batch axis)."""
    t = config.num_frames
    if modality == "audio":
        return (t, config.audio_feature_dim)
    if modality == "video":
        return (t, config.video_spatial_size, config.video_spatial_size, config.video_feature_dim)
    return (t, config.text_feature_dim)


def check_features(config: HDCIDConfig, modality, features, check_finite: bool = True) -> None:
    """ValueError naming the modality, the expected and the actual shape for any bad input."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}: expected one of {list(MODALITIES)}")
    if modality not in config.modalities:
        raise ValueError(f"modality {modality!r} is not in this model's modalities {config.modalities}")
    shape = "[B, " + ", ".join(str(s) for s in expected_shape(config, modality)) + "]"
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"{modality}: expected a tensor of shape {shape}, got {type(features).__name__}")
    if not features.is_floating_point():
        raise ValueError(f"{modality}: expected floating-point features of shape {shape}, got dtype {features.dtype}")
    if features.dim() != 1 + len(expected_shape(config, modality)) or tuple(features.shape[1:]) != expected_shape(config, modality):
        raise ValueError(f"{modality}: expected shape {shape}, got {list(features.shape)}")
    if features.shape[0] == 0:
        raise ValueError(f"{modality}: expected shape {shape} with B >= 1, got {list(features.shape)}")
    if check_finite and config.check_finite_inputs and not bool(torch.isfinite(features).all()):
        raise ValueError(f"{modality}: features of shape {list(features.shape)} contain NaN or inf values")


def check_batch(config: HDCIDConfig, batch: dict, require_all: bool, check_finite: bool = True) -> int:
    """Check every modality of ``batch`` and that they share one batch size; returns it.
    ``check_finite=False`` skips the NaN/inf scan (``config.check_finite_inputs``) for this call."""
    if require_all:
        missing = [m for m in config.modalities if batch.get(m) is None]
        if missing:
            raise ValueError(f"pretraining needs every modality of the model {config.modalities}; missing {missing}")
    given = {m: x for m, x in batch.items() if x is not None}
    if not given:
        raise ValueError(f"no features given: expected any of {config.modalities}")
    for m, x in given.items():
        check_features(config, m, x, check_finite=check_finite)
    sizes = {m: x.shape[0] for m, x in given.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"batch sizes differ between modalities: {sizes}")
    return next(iter(sizes.values()))


# =============================================================================================
# Models
# =============================================================================================
class HDCIDPreTrainedModel(PreTrainedModel):
    """Weight initialisation, Hub (remote code) wiring and the fp32 codebook rule."""

    config_class = HDCIDConfig
    base_model_prefix = "hdcid"
    main_input_name = "video"
    _keep_in_fp32_modules_strict = ["codebook"]
    # device_map="auto" places each of these whole: a layer's encoders with its quantizer (the codebook call
    # reads the encoders' outputs and, in training, the codebook buffers on one device), the text BiLSTM
    _no_split_modules = ["HDCIDLayer", "TextTokenEncoder"]
    supports_gradient_checkpointing = False

    def _use_return_dict(self, return_dict) -> bool:
        """``return_dict`` resolved the transformers way: None means ``config.return_dict`` (what
        transformers' deprecated ``config.use_return_dict`` reads; True unless set)."""
        return self.config.return_dict if return_dict is None else bool(return_dict)

    @torch.no_grad()
    def _init_weights(self, module):
        """PyTorch default initialisation (as the original) through the loaded-tensor-aware init
        functions; codebooks start as :meth:`MultimodalEMACodebook.reset_codebook` describes."""
        if isinstance(module, MultimodalEMACodebook):
            b = module.init_bound
            init.uniform_(module.embed, -b, b)
            init.copy_(module.ema_weight, module.embed * module.initial_weight_scale)
            init.constant_(module.ema_count, module.config.codebook_init_count)
            init.constant_(module.unused_steps, -1)
        elif isinstance(module, FiniteDiscreteTokens):
            init.normal_(module.tokens)
        elif isinstance(module, nn.MultiheadAttention):
            module._reset_parameters()
        elif isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.LSTM, nn.LayerNorm)):
            module.reset_parameters()

    def compute_toc(self, num_channels: int = 128, lam: float = 0.7, normalize: bool = False,
                    top_bottom=(1, 0), unbiased_variance: bool = True, stage: int = 0) -> list[list[int]]:
        """TOC (section 4.1): select ``num_channels`` channels of every layer's codebook and store them,
        with the settings, in ``config.toc_channels`` / ``config.toc_settings`` so that
        ``save_pretrained`` and the Hub carry them; ``encode(..., apply_toc=True)`` then uses them.
        Returns the per-layer channel indices.

        The codebook is the one of :meth:`HDCIDModel.codebooks`: with ``quantizer="rvq"`` the codebook
        of ``stage`` (0 = first; the channels then apply to the sum of stage codes), with "fdt" the
        token bank; "fsq" has no codebook and raises ValueError."""
        base = self.base_model  # the HDCIDModel (itself, or .hdcid of the pretraining model)
        books = base.codebooks(stage)
        channels = [select_channels(book, num_channels, lam=lam, normalize=normalize, top_bottom=tuple(top_bottom),
                                    unbiased_variance=unbiased_variance).tolist() for book in books]
        settings = {"num_channels": num_channels, "lam": lam, "normalize": normalize,
                    "top_bottom": list(top_bottom), "unbiased_variance": unbiased_variance}
        if self.config.quantizer == "rvq":
            settings["stage"] = stage
        self.config.toc_channels, previous = channels, self.config.toc_channels
        try:
            self.config.validate_toc()
        except ValueError:
            self.config.toc_channels = previous
            raise
        self.config.toc_settings = settings
        return channels

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``save_pretrained`` with remote code for AutoConfig, AutoModel and AutoModelForPreTraining."""
        self.config.auto_map = dict(AUTO_MAP)
        return super().save_pretrained(save_directory, *args, **kwargs)


class HDCIDModel(HDCIDPreTrainedModel):
    """H-DCID (``num_layers=2``) or DCID (``num_layers=1``) encoder: features -> discrete unified codes.

    Per layer k and modality m a modality-general encoder Phi_{m,k} and a modality-specific encoder
    Psi_{m,k}; layer k+1 takes layer k's modality-specific feature (appendix eqs. 1-2); one codebook
    per layer shared by all modalities.
    """

    _auto_class = "AutoModel"
    # a HDCIDForPreTraining checkpoint loads into HDCIDModel: its pretraining heads are dropped quietly
    _keys_to_ignore_on_load_unexpected = [r"^(decoders|cpc|club)\."]

    def __init__(self, config: HDCIDConfig):
        super().__init__(config)
        self.text_encoder = TextTokenEncoder(config) if "text" in config.modalities else None
        self.layers = nn.ModuleList(HDCIDLayer(config, k) for k in range(config.num_layers))
        self._normalization_cache = {}  # (modality, device, dtype) -> (stats, mean, std): see layer_input
        self.post_init()

    def codebooks(self, stage: int = 0) -> list[torch.Tensor]:
        """The [L, D] matrix of every layer that TOC ranks: the codebook (mmema), the codebook of
        ``stage`` (rvq, 0 = first), the token bank (fdt). ValueError for fsq, which has no codebook."""
        return [layer.codebook.toc_codebook(stage) for layer in self.layers]

    def layer_input(self, modality: str, features: torch.Tensor) -> torch.Tensor:
        """x_{m,1}: the checked features in the model's dtype, standardised per channel where
        ``config.input_normalization`` has statistics for the modality (text: through the BiLSTM)."""
        x = features.to(self.dtype) if not torch.is_autocast_enabled(features.device.type) else features
        stats = (self.config.input_normalization or {}).get(modality)
        if stats is not None:  # per-channel standardisation of the raw features (last axis)
            mean, std = self._normalization_tensors(modality, stats, x.device, x.dtype)
            x = (x - mean) / std
        return self.text_encoder(x) if modality == "text" else x

    def _normalization_tensors(self, modality: str, stats: dict, device, dtype):
        """(mean [C], std [C]) of ``stats`` on ``device`` in ``dtype``, built once per key (no host-to-
        device copy per call); rebuilt if the config's statistics object is replaced."""
        cache, key = self._normalization_cache, (modality, device, dtype)
        hit = cache.get(key)
        if hit is None or hit[0] is not stats:
            hit = (stats, torch.tensor(stats["mean"], device=device, dtype=dtype),
                   torch.tensor(stats["std"], device=device, dtype=dtype))
            cache[key] = hit
        return hit[1], hit[2]

    def encode(self, modality: str, features: torch.Tensor, apply_toc: bool = False) -> HDCIDEncoderOutput:
        """Features of one modality -> per-layer semantic features, codes and indices.

        features: audio [B, T, 128], video [B, T, 7, 7, 512] or text BERT token features
        [B, T, text_feature_dim]. ``apply_toc`` restricts ``unified`` to ``config.toc_channels``.
        Never changes a buffer, in train or eval mode.
        """
        check_features(self.config, modality, features)
        return self._encode(modality, features, apply_toc)

    def _encode(self, modality: str, features: torch.Tensor, apply_toc: bool) -> HDCIDEncoderOutput:
        if apply_toc and self.config.quantizer == "fsq":
            raise ValueError(f"apply_toc=True is not available with quantizer='fsq': {FSQ_NO_TOC}")
        if apply_toc and self.config.toc_channels is None:
            raise ValueError("apply_toc=True but config.toc_channels is None: compute TOC channels first")
        x = self.layer_input(modality, features)
        semantic, quantized, indices = [], [], []
        for k, layer in enumerate(self.layers):
            z = layer.general[modality](x)  # [B, T, D]
            idx, q = layer.codebook.encode(z)  # [B, T], [B, T, D]
            semantic.append(z)
            indices.append(idx)
            quantized.append(q)
            if k + 1 < len(self.layers):
                x = layer.specific[modality](x)[1]  # x_{m,k+1} = z-bar_{m,k}
        return HDCIDEncoderOutput(
            semantic=tuple(semantic), quantized=tuple(quantized), indices=tuple(indices),
            unified=self.unify(quantized, apply_toc),
        )

    def unify(self, quantized, apply_toc: bool = False) -> torch.Tensor:
        """Concatenate per-layer codes [B, T, D] on the last axis, optionally only TOC channels."""
        if not apply_toc:
            return torch.cat(list(quantized), dim=-1)
        self.config.validate_toc()  # stored indices may have been edited by hand
        parts = [q[..., torch.tensor(idx, device=q.device)] for q, idx in zip(quantized, self.config.toc_channels)]
        return torch.cat(parts, dim=-1)

    def forward(self, audio=None, video=None, text=None, apply_toc: bool = False, return_dict=None, **kwargs):
        """Encode every modality given; returns :class:`HDCIDModelOutput`, or its ``to_tuple()`` with
        ``return_dict=False`` (default: ``config.return_dict``)."""
        if kwargs:
            raise ValueError(f"unexpected inputs {sorted(kwargs)}: expected audio, video and/or text")
        batch = {"audio": audio, "video": video, "text": text}
        check_batch(self.config, batch, require_all=False)  # every modality checked once, here
        outputs = {m: self._encode(m, x, apply_toc) for m, x in batch.items() if x is not None}
        output = HDCIDModelOutput(modalities=tuple(outputs), **outputs)
        return output if self._use_return_dict(return_dict) else output.to_tuple()


class HDCIDForPreTraining(HDCIDPreTrainedModel):
    """:class:`HDCIDModel` + reconstruction decoders, cross-modal CPC and CLUB networks per layer,
    with the loss of eq. 14 and the warm start of the upper layers.

    Training step (one encoder pass; the original ran the encoder 6 times)::

        features = model.extract_features(batch, epoch)           # EMA codebook update happens here
        for _ in range(club_steps):                               # CLUB nets, own optimiser
            club_opt.zero_grad(); model.club_loss(features).backward(); club_opt.step()
        out = model.compute_losses(batch, epoch, features=features)
        main_opt.zero_grad(); out.loss.backward(); main_opt.step()

    (``hf_hdcid.training.PretrainingStep`` is this step.) Several processes: the codebooks synchronise
    themselves (statistics all-reduced, resets broadcast); the training step wraps this model in
    DistributedDataParallel (``find_unused_parameters=True`` for the warm start, ``broadcast_buffers=False``,
    the CLUB parameters ignored) and calls ``forward(..., features=features)`` for the loss, and wraps the
    CLUB networks separately (``hf_hdcid.training.step.CLUBObjective``).
    """

    _auto_class = "AutoModelForPreTraining"

    def __init__(self, config: HDCIDConfig):
        super().__init__(config)
        self.hdcid = HDCIDModel(config)
        mods, layers = config.modalities, range(config.num_layers)
        self.decoders = nn.ModuleList(
            nn.ModuleDict({m: reconstruction_decoder(config, k, m) for m in mods}) for k in layers
        )
        self.cpc = nn.ModuleList(CrossModalCPC(config) for _ in layers)
        self.club = nn.ModuleList(
            nn.ModuleDict({m: CLUBEstimator(config.hidden_size, config.specific_dim(k, m), config.club_hidden_size)
                           for m in mods})
            for k in layers
        )
        self.post_init()

    # ------------------------------------------------------------------ parameter groups
    def club_parameters(self) -> list[nn.Parameter]:
        """Parameters of the CLUB networks (trained by :meth:`club_loss` with their own optimiser)."""
        return list(self.club.parameters())

    def main_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (encoders, text BiLSTM, decoders, CPC): trained by the eq. 14 loss."""
        club = {id(p) for p in self.club.parameters()}
        return [p for p in self.parameters() if id(p) not in club]

    def active_layers(self, epoch: int) -> int:
        """Layers in the loss at ``epoch``: only the first before ``warm_start_epoch``."""
        return self.config.num_layers if epoch >= self.config.warm_start_epoch else 1

    # ------------------------------------------------------------------ forward pieces
    def extract_features(self, batch: dict, epoch: int = 0) -> HDCIDPreTrainingFeatures:
        """Run every layer in the loss at ``epoch`` on all modalities; in training mode this is the one
        call that updates the codebooks (multimodal EMA + dead-code reset)."""
        cfg = self.config
        batch = {m: batch.get(m) for m in cfg.modalities} if isinstance(batch, dict) else batch
        if not isinstance(batch, dict):
            raise ValueError(f"batch: expected a dict with keys {cfg.modalities}, got {type(batch).__name__}")
        # in training mode (the pretraining step) no NaN/inf scan of the inputs: one host sync per call, and
        # shards are validated when written; inference and eval-mode losses keep it (check_finite_inputs)
        check_batch(cfg, batch, require_all=True, check_finite=not self.training)
        active = self.active_layers(epoch)
        run = cfg.num_layers if (self.training and cfg.update_upper_codebooks_before_warm_start) else active
        x = {m: self.hdcid.layer_input(m, batch[m]) for m in cfg.modalities}
        features = []
        for k in range(run):
            with torch.set_grad_enabled(torch.is_grad_enabled() and k < active):
                layer_features, x = self._layer_forward(k, x, update=self.training)
            if k < active:
                features.append(layer_features)
        return HDCIDPreTrainingFeatures(layers=features, epoch=epoch)

    def _layer_forward(self, k: int, x: dict, update: bool):
        layer = self.hdcid.layers[k]
        semantic = {m: layer.general[m](x[m]) for m in x}  # z_{m,k} [B, T, D]
        specific, video_map = {}, None
        for m in x:
            maps, specific[m] = layer.specific[m](x[m])  # z-bar_{m,k}
            if maps is not None:
                video_map = maps
        codes = layer.codebook(semantic, update=update)
        return HDCIDLayerFeatures(inputs=x, semantic=semantic, specific=specific, codes=codes,
                                  video_map=video_map), specific

    def club_pairs(self, features: HDCIDPreTrainingFeatures):
        """(layer, modality, x, y) for every CLUB estimator in the loss: x the code (or the semantic
        feature, ``club_input``), y the modality-specific feature."""
        for k, lf in enumerate(features.layers):
            for m in self.config.modalities:
                x = lf.codes.quantized[m] if self.config.club_input == "quantized" else lf.semantic[m]
                yield k, m, x, lf.specific[m]

    def club_loss(self, features: HDCIDPreTrainingFeatures) -> torch.Tensor:
        """Negative log-likelihood of the CLUB networks on detached features (their own objective;
        call it for each CLUB step, the encoder is not re-run). Computed in float32 whatever the
        autocast (the CLUB networks are a small part of the step; no loss scaling is needed for them)."""
        pairs = list(self.club_pairs(features))
        device_type = pairs[0][2].device.type if pairs else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):  # float32 under any mixed precision
            terms = [-self.club[k][m].log_likelihood(x.detach().to(self.dtype), y.detach().to(self.dtype))
                     for k, m, x, y in pairs]
        return torch.stack(terms).sum()

    def compute_losses(self, batch: dict | None = None, epoch: int = 0,
                       features: HDCIDPreTrainingFeatures | None = None) -> HDCIDPreTrainingOutput:
        """Every named term of eq. 14 per layer and the total with the warm start.

        L_k = sum_m (recon_{m,k} + commit_{m,k} + mi_{m,k}) + cpc_k + cmcm_k, with
        mi_{m,k} = max(CLUB estimate, ``club_min_estimate``) (the raw estimate when it is None);
        loss = L_1 + upper_layer_loss_weight * sum_{k>1} L_k (k > 1 only from ``warm_start_epoch``).
        """
        if features is None:
            if batch is None:
                raise ValueError("compute_losses needs a batch or precomputed features")
            features = self.extract_features(batch, epoch)
        elif features.epoch != epoch:
            raise ValueError(f"features were extracted for epoch {features.epoch}, not epoch {epoch}")
        cfg = self.config
        losses, diagnostics, total = {}, {}, None
        mi = {(k, m): self.club[k][m].mi_upper_bound(x.to(self.dtype), y, cfg.club_estimator)
              for k, m, x, y in self.club_pairs(features)}
        if cfg.club_min_estimate is not None:  # the raw estimates stay in the diagnostics
            for (k, m), value in mi.items():
                diagnostics[term_name("mi_estimate", k + 1, m)] = value.detach()
            mi = {key: value.clamp_min(cfg.club_min_estimate) for key, value in mi.items()}
        for k, lf in enumerate(features.layers):
            layer = k + 1
            layer_terms = []
            for m in cfg.modalities:
                recon = self.reconstruction_loss(k, m, lf)
                losses[term_name("recon", layer, m)] = recon
                losses[term_name("commit", layer, m)] = lf.codes.commitment[m]
                losses[term_name("mi", layer, m)] = mi[(k, m)]
                layer_terms += [recon, lf.codes.commitment[m], mi[(k, m)]]
            cpc, cpc_acc = self.cpc[k](lf.semantic)
            losses[term_name("cpc", layer)] = cpc
            layer_terms.append(cpc)
            if cfg.use_cmcm:
                cmcm = cross_modal_code_matching(lf.semantic, lf.codes.codebook, self.config.cmcm_temperature)
                losses[term_name("cmcm", layer)] = cmcm
                layer_terms.append(cmcm)
            layer_total = torch.stack([t.to(torch.float32) if t.dtype in (torch.float16, torch.bfloat16) else t
                                       for t in layer_terms]).sum()
            losses[term_name("total", layer)] = layer_total
            weighted = layer_total if k == 0 else cfg.upper_layer_loss_weight * layer_total
            total = weighted if total is None else total + weighted
            diagnostics[term_name("cpc_accuracy", layer)] = cpc_acc.detach()
            diagnostics[term_name("equal_num", layer)] = lf.codes.equal_num
            diagnostics[term_name("active_codes", layer)] = lf.codes.active_codes
            for m in cfg.modalities:
                diagnostics[term_name("perplexity", layer, m)] = lf.codes.perplexity[m]
            for name, value in lf.codes.diagnostics.items():  # quantizer-specific (rvq stages, fdt support)
                family, _, modality = name.partition("/")
                diagnostics[term_name(family, layer, modality or None)] = value
        return HDCIDPreTrainingOutput(loss=total, losses=losses, diagnostics=diagnostics, features=features)

    def reconstruction_loss(self, k: int, modality: str, lf: HDCIDLayerFeatures) -> torch.Tensor:
        """MSE(D_{m,k}(code, Psi feature), x_{m,k}) (appendix eq. 4). Targets that are trainable
        (text BiLSTM output, upper-layer inputs) are detached when ``detach_reconstruction_targets``."""
        target = lf.inputs[modality]
        if self.config.detach_reconstruction_targets and (k > 0 or modality == "text"):
            target = target.detach()
        specific = lf.video_map if (k == 0 and modality == "video") else lf.specific[modality]
        code = lf.codes.quantized[modality].to(specific.dtype)
        recon = self.decoders[k][modality](code, specific)
        return F.mse_loss(recon, target.to(recon.dtype))

    def forward(self, audio=None, video=None, text=None, epoch: int = 0, features: HDCIDPreTrainingFeatures | None = None,
                return_dict=None, **kwargs):
        """Loss of eq. 14 for one batch (see :meth:`compute_losses`). ``features``: the output of
        :meth:`extract_features` for this batch (the training step passes it when the CLUB networks are
        updated between the encoder pass and the loss); the batch is then not encoded again. Returns
        :class:`HDCIDPreTrainingOutput`, or its ``to_tuple()`` with ``return_dict=False`` (default:
        ``config.return_dict``)."""
        if kwargs:
            raise ValueError(f"unexpected inputs {sorted(kwargs)}: expected audio, video, text, epoch, features "
                             "and return_dict")
        if features is not None:
            output = self.compute_losses(epoch=epoch, features=features)
        else:
            output = self.compute_losses({"audio": audio, "video": video, "text": text}, epoch)
        return output if self._use_return_dict(return_dict) else output.to_tuple()


__all__ = [
    "HDCIDPreTrainedModel", "HDCIDModel", "HDCIDForPreTraining", "HDCIDEncoderOutput", "HDCIDModelOutput",
    "HDCIDPreTrainingOutput", "HDCIDPreTrainingFeatures", "HDCIDLayerFeatures", "HDCIDConfig", "TermName",
    "term_name", "parse_term_name",
]
