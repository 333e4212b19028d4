"""Configuration of H-DCID (hierarchical dual cross-modal information disentanglement) and DCID.

Every hyper-parameter of the paper ("Unlocking the Potential of Multimodal Unified Discrete
Representation through Training-Free Codebook Optimization and Hierarchical Alignment",
arXiv 2403.05168) and of the authors' original code lives here. Where the paper and the original
code differ, the behaviour is an explicit option whose docstring says which value is which.

This file is self-contained (torch-free, transformers only) because it is uploaded to the Hub as
remote code next to ``modeling_hdcid.py``.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PretrainedConfig

MODALITIES = ("audio", "video", "text")

_PRESET_TINY = dict(
    hidden_size=16,
    codebook_size=24,
    num_frames=6,
    audio_feature_dim=8,
    video_feature_dim=12,
    video_spatial_size=5,
    text_feature_dim=20,
    text_lstm_hidden_size=8,
    num_attention_heads=2,
    intermediate_size=32,
    video_se_reduction=4,
    video_conv_channels=[16, 24],
    video_feedforward_dim=16,
    audio_specific_dim=16,
    text_specific_dim=16,
    club_hidden_size=16,
    dead_code_threshold=30,
    active_code_threshold=10,
)

# The options where the paper and the authors' code (github haihuangcode/TOC_H-DCID @7eb9588, CMG for
# DCID) differ: per option the original code's value (what original_hdcid() / original_dcid() set; a
# dict where the two original repositories differ) and what the values mean. The one table the
# original_* presets, the model card (hf_hdcid.hub) and the README's option table are built from.
PAPER_VS_ORIGINAL = {
    "video_spatial_pooling": ("sum", "pooling of the channel-attended video map over positions: `sum` is the "
                                     "original code, `mean` the same up to a factor H·W"),
    "commitment_own_weight": (2.0, "weight (×β) of the own-modality commitment term; original 2.0, paper 1.0"),
    "commitment_cross_weight": (1.0, "total weight (×β) of the cross-modal commitment terms; original 1.0, "
                                     "paper 0.0"),
    "ema_self_weight": (0.5, "multimodal EMA: weight of a code's own-modality features (original 0.5)"),
    "codebook_init_bound": (1.0 / 400.0, "codes start U(-b, b); `None` is 1/codebook_size, the original 1/400"),
    "codebook_init_count": (0.0, "initial EMA usage count of every code (original 0)"),
    "dead_code_reset": ("stale_ema", "`full` keeps a reset code in the EMA statistics; `stale_ema` is the "
                                     "original (overwritten by the next update); `none` disables resets"),
    "use_cmcm": ({"hdcid": False, "dcid": True}, "cross-modal code matching loss (paper eq. 14 and DCID code: "
                                                 "on; original H-DCID code: off)"),
    "cpc_softmax_over": ("predictions", "InfoNCE normalisation: `predictions` is the original code, `targets` "
                                        "the paper's eq. 13"),
    "club_estimator": ("sampled", "`sampled` is the original CLUB estimator, `full` the paper's eq. 12"),
    "club_input": ("quantized", "what CLUB conditions on: `quantized` (original) or `semantic` (paper)"),
    "club_min_estimate": (None, "lower clamp of the CLUB MI term (default 0.0, a stabiliser in neither the "
                                "paper nor the original; `None` = the raw estimate, as the original)"),
    "detach_reconstruction_targets": (False, "stop gradients through trainable reconstruction targets "
                                             "(original: no)"),
    "update_upper_codebooks_before_warm_start": (True, "update the layer-2 codebook before its warm start "
                                                       "(original: yes)"),
}


def _original_preset(variant: str) -> dict:
    """The PAPER_VS_ORIGINAL values of the original ``variant`` ("hdcid" or "dcid")."""
    return {name: value[variant] if isinstance(value, dict) else value
            for name, (value, _) in PAPER_VS_ORIGINAL.items()}


# the values both original repositories share (every option but use_cmcm)
_PRESET_ORIGINAL = {name: value for name, (value, _) in PAPER_VS_ORIGINAL.items() if not isinstance(value, dict)}


QUANTIZERS = ("mmema", "rvq", "fsq", "fdt")
# the FSQ paper's 1000-code configuration (levels 8, 5, 5, 5): the fsq_levels used when it is None
DEFAULT_FSQ_LEVELS = (8, 5, 5, 5)
# options read only by the EMA codebooks (mmema, rvq), with their defaults: any other quantizer rejects
# a non-default value; the tiny preset drops its values of these for fsq / fdt
_EMA_ONLY = dict(
    ema_decay=0.99, ema_epsilon=1e-5, ema_self_weight=0.5, codebook_init_bound=None, codebook_init_count=0.0,
    dead_code_threshold=300, active_code_threshold=100, dead_code_reset="full", dead_code_noise=1.0 / 1024.0,
    sync_codebook=True, commitment_cost=0.25, commitment_own_weight=2.0, commitment_cross_weight=0.0,
)
# options read only by one quantizer, with their defaults
_QUANTIZER_ONLY = dict(
    num_quantizers=("rvq", 1), fsq_levels=("fsq", None), fdt_num_tokens=("fdt", None),
    fdt_temperature=("fdt", 1.0), fdt_query_hidden_size=("fdt", None),
)


FSQ_NO_TOC = ("TOC ranks the channels of a learnt codebook; FSQ has none: its codes are a fixed, "
              "symmetric grid of prod(fsq_levels) points, identical statistics on every channel of equal "
              "levels, mapped to D channels by a linear projection")


def _fail(field: str, expected: str, actual: Any) -> None:
    raise ValueError(f"HDCIDConfig.{field}: expected {expected}, got {actual!r}")


class HDCIDConfig(PretrainedConfig):
    r"""Configuration of :class:`HDCIDModel` and :class:`HDCIDForPreTraining`.

    Defaults are the paper's values (D=256, codebook 400, T=10, VGG19 video 7x7x512, VGGish audio
    128, BERT-base text tokens 768 through a 2-layer BiLSTM of 2x128, 2 transformer layers x 4 heads
    x FFN 1024, beta=0.25, gamma=0.99, eps=1e-5, dead-code thresholds 300/100, layer-2 warm start at
    epoch 3 with weight 0.3). Presets: :meth:`hdcid`, :meth:`dcid`, :meth:`tiny`,
    :meth:`original_hdcid`, :meth:`original_dcid`. The options where the paper and the original code
    differ, with the original's values, are listed once in the module's ``PAPER_VS_ORIGINAL`` (the
    source of the ``original_*`` presets and of the model card's option table); each is explained
    in full below, where it is read.

    Architecture
        num_layers (int): 1 = DCID, 2 = H-DCID (layers > 2 stack further the same way: layer k takes
            layer k-1's modality-specific features, appendix eq. 2).
        modalities (list[str]): any two or all three of ``"audio"``, ``"video"``, ``"text"``, in the
            order in which the multimodal EMA visits them (original: audio, video, text).
        hidden_size (int): D, width of the unified space and of every codebook.
        codebook_size (int): L (called M in the code), number of codes per layer.
        num_frames (int): T, time steps per clip (one-second segments; token slots for text).
        audio_feature_dim (int): width of the audio input (VGGish: 128).
        video_feature_dim (int): channels of the video input map (VGG19 pool5: 512).
        video_spatial_size (int): height = width of the video input map (7).
        text_feature_dim (int): width of the BERT token features (768 for BERT-base, 384 MiniLM).
        text_lstm_hidden_size (int), text_lstm_num_layers (int): the text BiLSTM; its output width is
            ``2 * text_lstm_hidden_size``.
        num_attention_heads, num_transformer_layers, intermediate_size, dropout, layer_norm_eps:
            the post-LayerNorm transformer of every modality-general encoder.
        video_se_reduction (int): channel-attention bottleneck ratio (512 -> 64).
        video_spatial_pooling (str): how the modality-general video branch pools the channel-attended
            map over positions. ``"sum"`` is what the original code computes (its spatial softmax
            runs over an axis of size 1, so every weight is 1); ``"mean"`` (default) is the same up to
            a factor of H*W and better conditioned.
        video_conv_channels (list[int]): the two 3x3 convolutions of the modality-specific video
            encoder (1024, 2048); the last one is also the width of its 1x1 conv and residual stack.
        video_residual_layers (int): residual layers after the convolutions (1).
        video_feedforward_dim (int): hidden width of the MLP from the pooled map to the
            ``video_feature_dim``-wide specific feature (1024).
        audio_specific_dim, text_specific_dim (int): width of the layer-1 specific features (256).

    Codebook (one per layer, :class:`MultimodalEMACodebook`)
        commitment_cost (float): beta.
        commitment_own_weight (float): weight (times beta) of ||z_m - sg[q_m]||^2. Original 2.0;
            paper (appendix eq. 4) 1.0.
        commitment_cross_weight (float): total weight (times beta) of ||z_m - sg[q_o]||^2 over the
            other modalities o, split equally. Default 0.0, as in the paper (no cross terms); the
            original has 1.0 (0.5 + 0.5 with three modalities, 1.0 with two; the ``original_*``
            presets). Issue 14: pulling z_a to the code of the video of the *same second* collapses
            the features when the two seconds do not show the same event (offsets, distractors,
            heavy nuisance); 0.0 raised cross-modal accuracy on every setting of the robustness
            sweep (BENCHMARKS.md).
        ema_decay (float): gamma. ema_epsilon (float): Laplace smoothing epsilon.
        ema_self_weight (float): multimodal EMA: weight of a code's own-modality features; the rest is
            split equally among the other modalities (original 0.5 / 0.25 / 0.25, no cross-attention).
        codebook_init_bound (float or None): codes start U(-b, b); ``None`` means 1/codebook_size
            (the original hard-codes 1/400 whatever the size).
        codebook_init_count (float): initial EMA usage count N of every code, with W = N * E so that
            E = W / N holds from the start. The original starts N at 0 (with W = E), so a code
            missed by the first updates is divided by an epsilon-sized count, flies off to norms
            in the hundreds and stays dead until reset; with N = 1 it stays where it started. The
            default stays 0: on the synthetic benchmark 1 lowered code agreement (BENCHMARKS.md).
        dead_code_threshold (int): a code unused for more than this many updates is reset (300).
        active_code_threshold (int): codes used within this many updates are "active" and serve as
            reset sources (100).
        dead_code_reset (str): ``"full"`` (default) writes the reset code into the EMA statistics too,
            so it survives the next update; ``"stale_ema"`` is the original: only the code vector is
            written and the next EMA update overwrites it; ``"none"`` disables resets.
        dead_code_noise (float): reset noise U(-n, n) added to the copied active code (1/1024).
        sync_codebook (bool): all-reduce EMA statistics and broadcast resets across processes when a
            ``torch.distributed`` group exists, so every rank holds the identical codebook.
        use_cmcm (bool): cross-modal code matching loss. On in the paper (eq. 14) and the DCID code;
            off in the original H-DCID code. On by default: measured on the synthetic benchmark it is
            what makes codes agree across modalities (BENCHMARKS.md).
        cmcm_temperature (float): tau of CMCM's soft code assignment softmax(-||z - e_k|| / tau); 1.0 in
            the paper and the original code (issue 14 study).

    Inputs
        input_normalization (dict or None): per-channel standardisation (x - mean) / std of the raw
            audio / video features before every encoder, ``{"audio": {"mean": [A], "std": [A]},
            "video": {"mean": [C], "std": [C]}}`` (either key may be left out; video statistics are per
            channel over all positions). None (the paper and the original) feeds the raw features.
            ``pretrain()`` computes it on the pretraining split and stores it here, so it travels with
            the checkpoint (``normalize_inputs``, on by default except for the ``original_*`` presets;
            issue 14).

    Pretraining objectives
        cpc_prediction_steps (int): R. cpc_min_start_steps (int): earliest context step (1).
        cpc_num_layers (int): layers of each autoregressive context LSTM (2).
        cpc_self_weight, cpc_cross_weight (float): weights of same-modality (0.1) and cross-modal
            (1.0) prediction pairs.
        cpc_softmax_over (str): InfoNCE normalisation. ``"predictions"`` is the original code (its
            LogSoftmax without dim normalises, for a fixed target, over the predictions of the other
            samples); ``"targets"`` is the paper's eq. 13 (negatives are other targets).
        cpc_context_steps (str): ``"one"`` (default; the paper and the original): one context step t
            per batch, drawn uniformly; ``"all"``: eq. 13 averaged over every valid t (the same
            contexts, T - R - min_start times the prediction pairs per step; issue 14 study).
        club_hidden_size (int): CLUB networks' hidden size (their layers are half of it, as in the
            original).
        club_estimator (str): ``"sampled"`` is the original estimator (one shuffled negative per
            sample, squared error and log-variance averaged over time before dividing); ``"full"`` is
            the paper's eq. 12 (all N negatives, per time step).
        club_input (str): what CLUB conditions on: ``"quantized"`` (original, straight-through codes)
            or ``"semantic"`` (the paper's continuous modality-general feature).
        club_min_estimate (float or None): the MI term of eq. 14 is ``max(CLUB estimate, value)``.
            0.0 (default; in neither the paper nor the original code, which use the raw estimate, None):
            the sampled CLUB estimate is unbounded below (squared errors of the unnormalised
            modality-specific features, a log-variance bounded by tanh), and minimising it lets the
            encoders scale those features up until it diverges (the synthetic demo's run: BENCHMARKS.md).
            True mutual information is never negative, so a negative estimate carries no signal worth
            following; with the clamp that run stays bounded.
        detach_reconstruction_targets (bool): stop gradients through reconstruction targets that are
            themselves trainable (the text BiLSTM output, layer-k>1 inputs). The original does not
            (False, default). Detaching removes the pull of the targets towards the decoder's output,
            but on the synthetic benchmark it cut cross-modal code agreement (BENCHMARKS.md), so it is
            off by default.
        warm_start_epoch (int): layers above the first enter the loss from this epoch (3).
        upper_layer_loss_weight (float): weight of each layer above the first once warm (0.3; the
            paper does not state it, the original code uses 0.3).
        update_upper_codebooks_before_warm_start (bool): the original updates the layer-2 codebook
            from epoch 0 although layer 2 is not trained yet (True); default False skips that work.
        check_finite_inputs (bool): reject NaN/inf inputs (one host sync per call on accelerators).

    Quantizer (one per layer, built by ``build_quantizer``; all share one calling convention)
        quantizer (str): ``"mmema"`` (default) the multimodal EMA codebook above; ``"rvq"``
            ``num_quantizers`` residual stages, each a multimodal EMA codebook of ``codebook_size``
            codes quantising what the stages before left (a position's code is the sum of its stage
            codes, its index the first stage's); ``"fsq"`` finite scalar quantisation: a projection to
            ``len(fsq_levels)`` channels, each bounded and rounded to its levels, and a projection
            back (``prod(fsq_levels)`` implicit codes, no codebook, no EMA, no commitment loss;
            needs ``use_cmcm=False`` and has no TOC); ``"fdt"`` FDT's finite discrete tokens: a
            token bank learnt by gradient, a query MLP, sparsemax weights over the tokens, output =
            weights @ tokens (index = the top token; no EMA, no commitment loss). The EMA and
            commitment options above apply to mmema and rvq only; the others reject non-default values.
        num_quantizers (int): rvq stages (1 = the plain codebook).
        fsq_levels (list[int] or None): fsq levels per channel (each >= 2); None = [8, 5, 5, 5].
        fdt_num_tokens (int or None): fdt token-bank size; None = ``codebook_size``.
        fdt_temperature (float): fdt scores are q.e / sqrt(D) / temperature (FDT ships 1000 with its
            512-d tokens; 1.0 default here).
        fdt_query_hidden_size (int or None): hidden width of the fdt query MLP; None = ``hidden_size``.

    TOC
        toc_channels (list[list[int]] or None): per layer the selected channel indices, in order.
        toc_settings (dict or None): the TOC settings that produced ``toc_channels``.
    """

    model_type = "hdcid"

    def __init__(
        self,
        num_layers: int = 2,
        modalities: list[str] | tuple[str, ...] = MODALITIES,
        hidden_size: int = 256,
        codebook_size: int = 400,
        num_frames: int = 10,
        audio_feature_dim: int = 128,
        video_feature_dim: int = 512,
        video_spatial_size: int = 7,
        text_feature_dim: int = 768,
        text_lstm_hidden_size: int = 128,
        text_lstm_num_layers: int = 2,
        num_attention_heads: int = 4,
        num_transformer_layers: int = 2,
        intermediate_size: int = 1024,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-5,
        video_se_reduction: int = 8,
        video_spatial_pooling: str = "mean",
        video_conv_channels: list[int] | tuple[int, ...] = (1024, 2048),
        video_residual_layers: int = 1,
        video_feedforward_dim: int = 1024,
        audio_specific_dim: int = 256,
        text_specific_dim: int = 256,
        commitment_cost: float = 0.25,
        commitment_own_weight: float = 2.0,
        commitment_cross_weight: float = 0.0,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        ema_self_weight: float = 0.5,
        codebook_init_bound: float | None = None,
        codebook_init_count: float = 0.0,
        dead_code_threshold: int = 300,
        active_code_threshold: int = 100,
        dead_code_reset: str = "full",
        dead_code_noise: float = 1.0 / 1024.0,
        sync_codebook: bool = True,
        use_cmcm: bool = True,
        cmcm_temperature: float = 1.0,
        cpc_prediction_steps: int = 1,
        cpc_min_start_steps: int = 1,
        cpc_num_layers: int = 2,
        cpc_self_weight: float = 0.1,
        cpc_cross_weight: float = 1.0,
        cpc_softmax_over: str = "predictions",
        cpc_context_steps: str = "one",
        input_normalization: dict | None = None,
        club_hidden_size: int = 256,
        club_estimator: str = "sampled",
        club_input: str = "quantized",
        club_min_estimate: float | None = 0.0,
        detach_reconstruction_targets: bool = False,
        warm_start_epoch: int = 3,
        upper_layer_loss_weight: float = 0.3,
        update_upper_codebooks_before_warm_start: bool = False,
        check_finite_inputs: bool = True,
        quantizer: str = "mmema",
        num_quantizers: int = 1,
        fsq_levels: list[int] | tuple[int, ...] | None = None,
        fdt_num_tokens: int | None = None,
        fdt_temperature: float = 1.0,
        fdt_query_hidden_size: int | None = None,
        toc_channels: list[list[int]] | None = None,
        toc_settings: dict | None = None,
        **kwargs,
    ):
        self.num_layers = num_layers
        self.modalities = list(modalities) if isinstance(modalities, (list, tuple)) else modalities
        self.hidden_size = hidden_size
        self.codebook_size = codebook_size
        self.num_frames = num_frames
        self.audio_feature_dim = audio_feature_dim
        self.video_feature_dim = video_feature_dim
        self.video_spatial_size = video_spatial_size
        self.text_feature_dim = text_feature_dim
        self.text_lstm_hidden_size = text_lstm_hidden_size
        self.text_lstm_num_layers = text_lstm_num_layers
        self.num_attention_heads = num_attention_heads
        self.num_transformer_layers = num_transformer_layers
        self.intermediate_size = intermediate_size
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.video_se_reduction = video_se_reduction
        self.video_spatial_pooling = video_spatial_pooling
        self.video_conv_channels = (
            list(video_conv_channels) if isinstance(video_conv_channels, (list, tuple)) else video_conv_channels
        )
        self.video_residual_layers = video_residual_layers
        self.video_feedforward_dim = video_feedforward_dim
        self.audio_specific_dim = audio_specific_dim
        self.text_specific_dim = text_specific_dim
        self.commitment_cost = commitment_cost
        self.commitment_own_weight = commitment_own_weight
        self.commitment_cross_weight = commitment_cross_weight
        self.ema_decay = ema_decay
        self.ema_epsilon = ema_epsilon
        self.ema_self_weight = ema_self_weight
        self.codebook_init_bound = codebook_init_bound
        self.codebook_init_count = codebook_init_count
        self.dead_code_threshold = dead_code_threshold
        self.active_code_threshold = active_code_threshold
        self.dead_code_reset = dead_code_reset
        self.dead_code_noise = dead_code_noise
        self.sync_codebook = sync_codebook
        self.use_cmcm = use_cmcm
        self.cmcm_temperature = cmcm_temperature
        self.cpc_prediction_steps = cpc_prediction_steps
        self.cpc_min_start_steps = cpc_min_start_steps
        self.cpc_num_layers = cpc_num_layers
        self.cpc_self_weight = cpc_self_weight
        self.cpc_cross_weight = cpc_cross_weight
        self.cpc_softmax_over = cpc_softmax_over
        self.cpc_context_steps = cpc_context_steps
        self.input_normalization = input_normalization
        self.club_hidden_size = club_hidden_size
        self.club_estimator = club_estimator
        self.club_input = club_input
        self.club_min_estimate = club_min_estimate
        self.detach_reconstruction_targets = detach_reconstruction_targets
        self.warm_start_epoch = warm_start_epoch
        self.upper_layer_loss_weight = upper_layer_loss_weight
        self.update_upper_codebooks_before_warm_start = update_upper_codebooks_before_warm_start
        self.check_finite_inputs = check_finite_inputs
        self.quantizer = quantizer
        self.num_quantizers = num_quantizers
        self.fsq_levels = list(fsq_levels) if isinstance(fsq_levels, (list, tuple)) else fsq_levels
        self.fdt_num_tokens = fdt_num_tokens
        self.fdt_temperature = fdt_temperature
        self.fdt_query_hidden_size = fdt_query_hidden_size
        self.toc_channels = (
            [list(c) for c in toc_channels] if isinstance(toc_channels, (list, tuple)) else toc_channels
        )
        self.toc_settings = dict(toc_settings) if isinstance(toc_settings, dict) else toc_settings
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)
        self.validate_hdcid()

    # ------------------------------------------------------------------ presets
    @classmethod
    def hdcid(cls, **overrides) -> "HDCIDConfig":
        """H-DCID, 2 layers, paper values."""
        return cls(**{"num_layers": 2, **overrides})

    @classmethod
    def dcid(cls, **overrides) -> "HDCIDConfig":
        """DCID: the 1-layer special case."""
        return cls(**{"num_layers": 1, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> "HDCIDConfig":
        """A few-thousand-parameter H-DCID for tests and demos (same structure, small widths). With
        ``quantizer="fsq"`` / ``"fdt"`` the preset's EMA-only values (thresholds, and for fsq the
        codebook size) are left out, since those quantizers reject them."""
        preset = dict(_PRESET_TINY)
        if overrides.get("quantizer") in ("fsq", "fdt"):
            preset = {k: v for k, v in preset.items() if k not in _EMA_ONLY}
            if overrides["quantizer"] == "fsq":
                preset.pop("codebook_size")
        return cls(**{**preset, **overrides})

    @classmethod
    def original_hdcid(cls, **overrides) -> "HDCIDConfig":
        """Reproduces the original H-DCID code: sum pooling, stale-EMA resets, no CMCM, 1/400 init,
        undetached reconstruction targets, layer-2 codebook updated during warm-up."""
        return cls(**{"num_layers": 2, **_original_preset("hdcid"), **overrides})

    @classmethod
    def original_dcid(cls, **overrides) -> "HDCIDConfig":
        """Reproduces the original DCID code (CMG repository): as :meth:`original_hdcid` but one layer
        and CMCM on."""
        return cls(**{"num_layers": 1, **_original_preset("dcid"), **overrides})

    # ------------------------------------------------------------------ derived values
    @property
    def text_token_dim(self) -> int:
        """Width of the text BiLSTM output (the text modality's layer-1 input)."""
        return 2 * self.text_lstm_hidden_size

    def layer_input_dim(self, layer: int, modality: str) -> int:
        """Width of ``x_{m,k}``: the raw (or BiLSTM) input for layer 0, the previous layer's
        modality-specific feature above (appendix eq. 2)."""
        if layer == 0:
            return {"audio": self.audio_feature_dim, "video": self.video_feature_dim,
                    "text": self.text_token_dim}[modality]
        return self.specific_dim(layer - 1, modality)

    def specific_dim(self, layer: int, modality: str) -> int:
        """Width of the modality-specific feature ``z-bar_{m,k}`` (the CLUB target)."""
        if layer == 0:
            return {"audio": self.audio_specific_dim, "video": self.video_feature_dim,
                    "text": self.text_specific_dim}[modality]
        return self.layer_input_dim(layer, modality)

    @property
    def fsq_levels_or_default(self) -> list[int]:
        """The fsq levels per channel (``fsq_levels`` or the default [8, 5, 5, 5])."""
        return list(DEFAULT_FSQ_LEVELS if self.fsq_levels is None else self.fsq_levels)

    @property
    def num_codes(self) -> int:
        """Codes per layer: codebook_size (per rvq stage), prod(fsq_levels), or the fdt tokens."""
        if self.quantizer == "fsq":
            return math.prod(self.fsq_levels_or_default)
        if self.quantizer == "fdt" and self.fdt_num_tokens is not None:
            return self.fdt_num_tokens
        return self.codebook_size

    def cross_weights(self) -> float:
        """Weight of each other modality in the multimodal EMA (equal split of 1 - self weight)."""
        return (1.0 - self.ema_self_weight) / (len(self.modalities) - 1)

    # ------------------------------------------------------------------ validation
    def validate_hdcid(self) -> None:
        """Raise ValueError naming the field for any invalid value."""
        def positive_int(name):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                _fail(name, "a positive int", v)

        def in_unit(name, closed_low=True, closed_high=True):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v >= 0 if closed_low else v > 0) and (v <= 1 if closed_high else v < 1)
            if not ok:
                _fail(name, "a number in " + ("[" if closed_low else "(") + "0, 1" + ("]" if closed_high else ")"), v)

        def non_negative(name):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                _fail(name, "a finite number >= 0", v)

        def choice(name, options):
            v = getattr(self, name)
            if v not in options:
                _fail(name, "one of " + ", ".join(repr(o) for o in options), v)

        for name in ("num_layers", "hidden_size", "codebook_size", "num_frames", "audio_feature_dim",
                     "video_feature_dim", "video_spatial_size", "text_feature_dim",
                     "text_lstm_hidden_size", "text_lstm_num_layers", "num_attention_heads",
                     "num_transformer_layers", "intermediate_size", "video_se_reduction",
                     "video_feedforward_dim", "audio_specific_dim", "text_specific_dim",
                     "dead_code_threshold", "active_code_threshold", "cpc_prediction_steps",
                     "cpc_num_layers", "club_hidden_size"):
            positive_int(name)
        if not isinstance(self.video_residual_layers, int) or self.video_residual_layers < 0:
            _fail("video_residual_layers", "an int >= 0", self.video_residual_layers)
        mods = self.modalities
        if (not isinstance(mods, list) or not 2 <= len(mods) <= 3 or len(set(mods)) != len(mods)
                or any(m not in MODALITIES for m in mods)):
            _fail("modalities", "two or three distinct names from ('audio', 'video', 'text')", mods)
        if self.hidden_size % self.num_attention_heads:
            _fail("hidden_size", f"a multiple of num_attention_heads={self.num_attention_heads}", self.hidden_size)
        if self.video_feature_dim % self.video_se_reduction:
            _fail("video_se_reduction", f"a divisor of video_feature_dim={self.video_feature_dim}",
                  self.video_se_reduction)
        if self.video_spatial_size < 5:
            _fail("video_spatial_size", "an int >= 5 (two unpadded 3x3 convolutions)", self.video_spatial_size)
        vc = self.video_conv_channels
        if not isinstance(vc, list) or len(vc) != 2 or any(not isinstance(c, int) or c < 1 for c in vc):
            _fail("video_conv_channels", "a list of two positive ints", vc)
        if self.club_hidden_size < 2:
            _fail("club_hidden_size", "an int >= 2", self.club_hidden_size)
        in_unit("dropout", closed_high=False)
        in_unit("ema_decay", closed_high=False)
        in_unit("ema_self_weight")
        non_negative("commitment_cost")
        non_negative("commitment_own_weight")
        non_negative("commitment_cross_weight")
        non_negative("dead_code_noise")
        non_negative("codebook_init_count")
        non_negative("cpc_self_weight")
        non_negative("cpc_cross_weight")
        non_negative("upper_layer_loss_weight")
        self._validate_input_normalization()
        for name in ("ema_epsilon", "layer_norm_eps", "cmcm_temperature"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0 or not math.isfinite(v):
                _fail(name, "a finite number > 0", v)
        if self.codebook_init_bound is not None:
            v = self.codebook_init_bound
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0 or not math.isfinite(v):
                _fail("codebook_init_bound", "None or a finite number > 0", v)
        if self.active_code_threshold > self.dead_code_threshold:
            _fail("active_code_threshold", f"<= dead_code_threshold={self.dead_code_threshold}",
                  self.active_code_threshold)
        if not isinstance(self.cpc_min_start_steps, int) or self.cpc_min_start_steps < 0:
            _fail("cpc_min_start_steps", "an int >= 0", self.cpc_min_start_steps)
        if self.num_frames < self.cpc_min_start_steps + self.cpc_prediction_steps + 1:
            _fail("num_frames", f">= cpc_min_start_steps + cpc_prediction_steps + 1 = "
                  f"{self.cpc_min_start_steps + self.cpc_prediction_steps + 1}", self.num_frames)
        if not isinstance(self.warm_start_epoch, int) or self.warm_start_epoch < 0:
            _fail("warm_start_epoch", "an int >= 0", self.warm_start_epoch)
        choice("video_spatial_pooling", ("mean", "sum"))
        choice("dead_code_reset", ("full", "stale_ema", "none"))
        choice("cpc_softmax_over", ("predictions", "targets"))
        choice("cpc_context_steps", ("one", "all"))
        choice("club_estimator", ("sampled", "full"))
        choice("club_input", ("quantized", "semantic"))
        if self.club_min_estimate is not None and (
                isinstance(self.club_min_estimate, bool) or not isinstance(self.club_min_estimate, (int, float))
                or not math.isfinite(self.club_min_estimate)):
            _fail("club_min_estimate", "None or a finite number", self.club_min_estimate)
        for name in ("sync_codebook", "use_cmcm", "detach_reconstruction_targets",
                     "update_upper_codebooks_before_warm_start", "check_finite_inputs"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, "a bool", getattr(self, name))
        self.validate_quantizer()
        self.validate_toc()

    def validate_quantizer(self) -> None:
        """Raise ValueError naming the field for a bad quantizer option, or an option that the chosen
        quantizer does not read set to a non-default value."""
        q = self.quantizer
        if q not in QUANTIZERS:
            _fail("quantizer", "one of " + ", ".join(repr(o) for o in QUANTIZERS), q)
        if q in ("fsq", "fdt"):
            for name, default in _EMA_ONLY.items():
                if getattr(self, name) != default:
                    _fail(name, f"the default {default!r} with quantizer={q!r} (only the EMA codebooks "
                          "'mmema' and 'rvq' read it)", getattr(self, name))
        if q == "fsq" and self.codebook_size != 400:
            _fail("codebook_size", "the default 400 with quantizer='fsq' (its implicit codebook has "
                  "prod(fsq_levels) codes)", self.codebook_size)
        if q == "fsq" and self.use_cmcm:
            _fail("use_cmcm", "False with quantizer='fsq' (code matching needs a codebook matrix; FSQ's "
                  "implicit grid of prod(fsq_levels) codes has none)", self.use_cmcm)
        for name, (owner, default) in _QUANTIZER_ONLY.items():
            if q != owner and getattr(self, name) != default:
                _fail(name, f"the default {default!r} unless quantizer={owner!r}", getattr(self, name))

        def positive_int_or_none(name):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                _fail(name, "None or a positive int", v)

        v = self.num_quantizers
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            _fail("num_quantizers", "a positive int", v)
        lv = self.fsq_levels
        if lv is not None and (not isinstance(lv, list) or not lv
                               or any(not isinstance(x, int) or isinstance(x, bool) or x < 2 for x in lv)):
            _fail("fsq_levels", "None or a non-empty list of ints >= 2", lv)
        positive_int_or_none("fdt_query_hidden_size")
        positive_int_or_none("fdt_num_tokens")
        if self.fdt_num_tokens is not None and self.fdt_num_tokens < 2:
            _fail("fdt_num_tokens", "None or an int >= 2", self.fdt_num_tokens)
        t = self.fdt_temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not t > 0:
            _fail("fdt_temperature", "a finite number > 0", t)

    def _validate_input_normalization(self) -> None:
        norm = self.input_normalization
        if norm is None:
            return
        allowed = [m for m in ("audio", "video") if m in self.modalities]
        if not isinstance(norm, dict) or not norm or any(k not in allowed for k in norm):
            _fail("input_normalization", f"None or a dict with keys from {allowed}", norm)
        for m, stats in norm.items():
            width = self.audio_feature_dim if m == "audio" else self.video_feature_dim
            if not isinstance(stats, dict) or sorted(stats) != ["mean", "std"]:
                _fail(f"input_normalization[{m!r}]", "a dict with keys 'mean' and 'std'", stats)
            for key in ("mean", "std"):
                values = stats[key]
                if (not isinstance(values, list) or len(values) != width
                        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                               for v in values)):
                    _fail(f"input_normalization[{m!r}][{key!r}]", f"a list of {width} finite numbers",
                          f"{type(values).__name__} of length {len(values) if hasattr(values, '__len__') else '?'}")
            if any(v <= 0 for v in stats["std"]):
                _fail(f"input_normalization[{m!r}]['std']", "values > 0", min(stats["std"]))

    def validate_toc(self) -> None:
        """Raise ValueError naming the field if ``toc_channels`` / ``toc_settings`` are invalid."""
        tc = self.toc_channels
        if tc is None:
            return
        if self.quantizer == "fsq":
            _fail("toc_channels", "None with quantizer='fsq' (" + FSQ_NO_TOC + ")", tc)
        if not isinstance(tc, list) or len(tc) != self.num_layers:
            _fail("toc_channels", f"None or a list of {self.num_layers} per-layer index lists", tc)
        for k, idx in enumerate(tc):
            if (not isinstance(idx, list) or not idx
                    or any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < self.hidden_size for i in idx)
                    or len(set(idx)) != len(idx)):
                _fail(f"toc_channels[{k}]", f"a non-empty list of distinct ints in [0, {self.hidden_size})", idx)
        if self.toc_settings is not None and not isinstance(self.toc_settings, dict):
            _fail("toc_settings", "None or a dict", self.toc_settings)


__all__ = ["HDCIDConfig", "MODALITIES", "QUANTIZERS", "DEFAULT_FSQ_LEVELS", "FSQ_NO_TOC"]
