"""Convert the authors' original DCID / H-DCID ``.pt`` checkpoints to :class:`HDCIDForPreTraining`.

The original checkpoints are ``torch.save`` dicts of state dicts, all float64:

* H-DCID (``pretrain_ml.py``, e.g. ``warmstart3-MLVQ-AVT-Noshared-400-deep2-model-3.pt``):
  ``Encoder_parameters`` (``AVT_MLVQVAE_Encoder``), ``Text_ar_lstm_parameters``, ``epoch``.
* DCID (the CMG repository, e.g. ``nips2023_AVT_vgg40k_size400.pt``): ``Encoder_parameters``
  (``AVT_VQVAE_Encoder``), ``Text_ar_lstm_parameters``, ``CPC_parameters``, ``Video_mi_net_parameters``,
  ``Text_mi_net_parameters``, ``Audio_mi_net_parameters``, ``Decoder_parameters``, the optimiser states
  ``optimizer*``, ``epoch``, ``total_step``.

Every parameter name is translated by one table, :data:`KEY_MAP`; the original's parameters that its
forward never uses are listed in :data:`UNUSED_KEYS`, dropped and reported. Anything else that has no
place in the model, or any model parameter of a converted part that the checkpoint lacks, is an error
listing the keys. Pretraining heads the checkpoint does not hold (H-DCID files hold none) are left
freshly initialised (PyTorch default initialisation from a fixed seed, so conversion is reproducible)
and listed in the report; ``hf-hdcid convert-original --encoder-only`` saves the encoder alone.

The model's dimensions are read from the tensor shapes; what no shape holds (attention heads 4,
T = 10 frames, 7x7 video maps) is the original's value and can be overridden. The configuration is
:meth:`HDCIDConfig.original_hdcid` / :meth:`HDCIDConfig.original_dcid`, so training continues with the
original's behaviour (sum video pooling, stale-EMA resets, CMCM only for DCID, ...). Inference does
not depend on those options: in eval mode the converted model reproduces the original encoders'
semantic features, code indices and quantized vectors (BENCHMARKS.md, "Original checkpoint parity").
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .modeling import HDCIDConfig, HDCIDForPreTraining

VARIANTS = ("dcid", "hdcid")

# ---------------------------------------------------------------------------------------------
# The key-mapping table
# ---------------------------------------------------------------------------------------------
# One row per group of original parameters: (checkpoint entry, original key prefix, model key prefix).
# The part of the key after the prefix is copied unchanged (e.g. ``weight``, ``0.self_attn.in_proj_bias``).
# Placeholders: {m} a modality in lower case (video, audio, text), {M} the same capitalised (Video, Audio,
# Text), {n} an index, copied. {k} (codebook buffers only): the original stacks the H-DCID codebooks on a
# leading layer axis, [2, L, D], which is split into layers 0 and 1; the DCID codebook [L, D] is layer 0.
# The original's ``unactivated_count`` (float64) becomes the integer buffer ``unused_steps``.
KEY_MAP: tuple[tuple[str, str, str], ...] = (
    # text BiLSTM over the BERT token features
    ("Text_ar_lstm_parameters", "", "hdcid.text_encoder.lstm."),
    # layer 1, modality-specific encoders (Psi_{m,1})
    ("Encoder_parameters", "Video_encoder.conv_stack.0.", "hdcid.layers.0.specific.video.convs.0."),
    ("Encoder_parameters", "Video_encoder.conv_stack.2.", "hdcid.layers.0.specific.video.convs.2."),
    ("Encoder_parameters", "Video_encoder.conv_stack.4.", "hdcid.layers.0.specific.video.convs.4."),
    ("Encoder_parameters", "Video_encoder.conv_stack.5.stack.{n}.res_block.1.",
     "hdcid.layers.0.specific.video.convs.5.layers.{n}.0."),
    ("Encoder_parameters", "Video_encoder.conv_stack.5.stack.{n}.res_block.3.",
     "hdcid.layers.0.specific.video.convs.5.layers.{n}.2."),
    ("Encoder_parameters", "Video_encoder.feed_forward.", "hdcid.layers.0.specific.video.mlp."),
    ("Encoder_parameters", "Audio_encoder.audio_linear.", "hdcid.layers.0.specific.audio.linear."),
    ("Encoder_parameters", "Text_encoder.text_linear.", "hdcid.layers.0.specific.text.linear."),
    # layer 2, modality-specific encoders (H-DCID)
    ("Encoder_parameters", "{M}_encoder_2.input_linear.", "hdcid.layers.1.specific.{m}.linear."),
    # modality-general encoders (Phi_{m,k}): video channel attention, then the temporal transformers
    ("Encoder_parameters", "video_semantic_encoder.se_layer.", "hdcid.layers.0.general.video.video_pooling.excitation."),
    ("Encoder_parameters", "{m}_self_att.affine_matrix.", "hdcid.layers.0.general.{m}.transformer.projection."),
    ("Encoder_parameters", "{m}_self_att.encoder.layers.", "hdcid.layers.0.general.{m}.transformer.layers."),
    ("Encoder_parameters", "{m}_self_att_2.affine_matrix.", "hdcid.layers.1.general.{m}.transformer.projection."),
    ("Encoder_parameters", "{m}_self_att_2.encoder.layers.", "hdcid.layers.1.general.{m}.transformer.layers."),
    # codebooks
    ("Encoder_parameters", "Cross_quantizer.embedding", "hdcid.layers.{k}.codebook.embed"),
    ("Encoder_parameters", "Cross_quantizer.ema_count", "hdcid.layers.{k}.codebook.ema_count"),
    ("Encoder_parameters", "Cross_quantizer.ema_weight", "hdcid.layers.{k}.codebook.ema_weight"),
    ("Encoder_parameters", "Cross_quantizer.unactivated_count", "hdcid.layers.{k}.codebook.unused_steps"),
    # reconstruction decoders (AVT_VQVAE_Decoder / AVT_MLVQVAE_Decoder)
    ("Decoder_parameters", "Video_decoder.inverse_conv_block.0.", "decoders.0.video.deconvs.0."),
    ("Decoder_parameters", "Video_decoder.inverse_conv_block.1.stack.{n}.res_block.1.",
     "decoders.0.video.deconvs.1.layers.{n}.0."),
    ("Decoder_parameters", "Video_decoder.inverse_conv_block.1.stack.{n}.res_block.3.",
     "decoders.0.video.deconvs.1.layers.{n}.2."),
    ("Decoder_parameters", "Video_decoder.inverse_conv_block.2.", "decoders.0.video.deconvs.2."),
    ("Decoder_parameters", "Video_decoder.inverse_conv_block.4.", "decoders.0.video.deconvs.4."),
    ("Decoder_parameters", "Video_decoder.video_linear.", "decoders.0.video.code_projection."),
    ("Decoder_parameters", "Audio_decoder.audio_linear.", "decoders.0.audio.code_projection."),
    ("Decoder_parameters", "Audio_decoder.audio_rec.", "decoders.0.audio.output."),
    ("Decoder_parameters", "Text_decoder.text_linear.", "decoders.0.text.code_projection."),
    ("Decoder_parameters", "Text_decoder.text_rec.", "decoders.0.text.output."),
    ("Decoder_parameters", "{M}_decoder_2.simple_linear.", "decoders.1.{m}.code_projection."),
    ("Decoder_parameters", "{M}_decoder_2.simple_rec.", "decoders.1.{m}.output."),
    # cross-modal CPC per layer (CPC_2 is the original's variable name for layer 2; no released file has it)
    ("CPC_parameters", "{m}_ar_lstm.", "cpc.0.context.{m}."),
    ("CPC_parameters", "{m}_predictors.", "cpc.0.predictors.{m}."),
    ("CPC_2_parameters", "{m}_ar_lstm.", "cpc.1.context.{m}."),
    ("CPC_2_parameters", "{m}_predictors.", "cpc.1.predictors.{m}."),
    # CLUB networks per layer and modality (likewise Video_mi_net_2, ... for layer 2)
    ("{M}_mi_net_parameters", "p_mu.", "club.0.{m}.mu."),
    ("{M}_mi_net_parameters", "p_logvar.", "club.0.{m}.logvar."),
    ("{M}_mi_net_2_parameters", "p_mu.", "club.1.{m}.mu."),
    ("{M}_mi_net_2_parameters", "p_logvar.", "club.1.{m}.logvar."),
)

# Original parameters that the original forward never uses: dropped, and listed in the report.
UNUSED_KEYS: tuple[tuple[str, str, str], ...] = (
    ("Encoder_parameters", "{m}_self_att.encoder_layer.",
     "transformer template layer (deep-copied into encoder.layers, never run)"),
    ("Encoder_parameters", "{m}_self_att_2.encoder_layer.",
     "transformer template layer (deep-copied into encoder.layers, never run)"),
    ("Encoder_parameters", "video_semantic_encoder.affine_video_ave.",
     "dead spatial attention (softmax over a size-1 axis: every weight is 1, zero gradient)"),
    ("Encoder_parameters", "video_semantic_encoder.affine_video_self.",
     "dead spatial attention (softmax over a size-1 axis: every weight is 1, zero gradient)"),
    ("Encoder_parameters", "video_semantic_encoder.ave_v_att.",
     "dead spatial attention (softmax over a size-1 axis: every weight is 1, zero gradient)"),
    ("Decoder_parameters", "{m}_semantic_decoder.",
     "141-class semantic head of the DCID decoder (computed, in no loss)"),
)

ENCODER_ENTRY = "Encoder_parameters"
TEXT_LSTM_ENTRY = "Text_ar_lstm_parameters"
REQUIRED_ENTRIES = (ENCODER_ENTRY, TEXT_LSTM_ENTRY)
METADATA_ENTRIES = ("epoch", "total_step")
IGNORED_ENTRY_PREFIX = "optimizer"  # optimiser states: not part of the model, reported as ignored

_MODALITIES = ("video", "audio", "text")
_PLACEHOLDERS = {
    "{m}": "(?P<m>video|audio|text)",
    "{M}": "(?P<M>Video|Audio|Text)",
    "{n}": r"(?P<n>\d+)",
    "{k}": r"(?P<k>\d+)",
}


def _pattern(template: str, whole: bool) -> re.Pattern:
    """Regex of a table template: placeholders become named groups, the rest is literal."""
    parts = re.split(r"(\{[mMnk]\})", template)
    body = "".join(_PLACEHOLDERS.get(p, re.escape(p)) for p in parts)
    return re.compile("^" + body + ("$" if whole else ""))


def _fill(template: str, groups: Mapping[str, str]) -> str:
    """A table template with its placeholders replaced ({m} and {M} from either group)."""
    m = groups.get("m") or (groups.get("M") or "").lower()
    out = template.replace("{m}", m).replace("{M}", m.capitalize())
    for name in ("n", "k"):  # left in place when not given ({k}: split later by layer)
        if groups.get(name) is not None:
            out = out.replace("{" + name + "}", groups[name])
    return out


_FORWARD = [(_pattern(e, True), _pattern(o, False), e, o, t) for e, o, t in KEY_MAP]
_BACKWARD = [(_pattern(t, False), e, o, t) for e, o, t in KEY_MAP]
_UNUSED = [(_pattern(e, True), _pattern(o, False), reason) for e, o, reason in UNUSED_KEYS]


def model_key(entry: str, key: str) -> str | None:
    """The model key of original parameter ``key`` of checkpoint entry ``entry`` by :data:`KEY_MAP`
    (codebook buffers: with ``{k}`` left in place), or None if no row matches."""
    for entry_re, key_re, _, _, target in _FORWARD:
        e, k = entry_re.match(entry), key_re.match(key)
        if e and k:
            groups = {**e.groupdict(), **{n: v for n, v in k.groupdict().items() if v is not None}}
            return _fill(target, groups) + key[k.end():]
    return None


def original_key(key: str) -> tuple[str, str] | None:
    """(checkpoint entry, original key) of a model state-dict key by :data:`KEY_MAP` (codebook buffers
    give the whole original buffer, e.g. ``Cross_quantizer.embedding``), or None."""
    for target_re, entry, orig, target in _BACKWARD:
        t = target_re.match(key)
        if t and (target.endswith(".") or t.end() == len(key)):
            groups = t.groupdict()
            return _fill(entry, groups), _fill(orig, groups) + key[t.end():]
    return None


def unused_reason(entry: str, key: str) -> str | None:
    """Why an original parameter is dropped (:data:`UNUSED_KEYS`), or None if it is not."""
    for entry_re, key_re, reason in _UNUSED:
        if entry_re.match(entry) and key_re.match(key):
            return reason
    return None


def _is_codebook(key: str) -> bool:
    return ".codebook." in key


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_original_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load(path, map_location="cpu", weights_only=True)``; ValueError for a file that needs
    arbitrary pickle code to load, or that is not a dict-of-state-dicts checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    with path.open("rb") as f:
        head = f.read(2)
    if head == b"PK" and not zipfile.is_zipfile(path):  # a zip archive whose end (its directory) is missing
        raise ValueError(f"{path}: a torch.save checkpoint cut short or damaged ({path.stat().st_size} bytes, the zip "
                         "archive has no central directory at its end): copy or download it again")
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):  # neither zip nor legacy pickle format
        raise ValueError(f"{path}: expected a torch.save checkpoint (zip archive or pickle), got a file "
                         f"starting with {head!r}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        marker = "WeightsUnpickler error:"
        detail = text.split(marker, 1)[1].strip() if marker in text else text.strip()
        detail = detail.split("\n")[0].split(". ")[0]  # the reason, without torch's allow-listing advice
        raise ValueError(
            f"{path}: refusing to load: torch.load(weights_only=True) cannot read it without running arbitrary "
            f"pickle code ({detail.rstrip('.')}). An original checkpoint holds only state dicts of tensors, "
            "numbers and optimiser states; if you trust this file, load it yourself and torch.save its "
            "state dicts again.") from None
    except Exception as err:  # noqa: BLE001 - zip, storage and truncation errors have many types
        raise ValueError(f"{path}: expected a torch.save checkpoint, could not read it "
                         f"({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a dict with {ENCODER_ENTRY} and {TEXT_LSTM_ENTRY}, "
                         f"got {type(checkpoint).__name__}")
    return dict(checkpoint)


# ---------------------------------------------------------------------------------------------
# Variant and configuration
# ---------------------------------------------------------------------------------------------
def detect_variant(checkpoint: Mapping) -> str:
    """``"hdcid"`` if the encoder has a second layer (codebooks stacked [2, L, D], ``*_encoder_2`` or
    ``*_self_att_2`` parameters), else ``"dcid"``."""
    encoder = checkpoint.get(ENCODER_ENTRY) or {}
    embedding = encoder.get("Cross_quantizer.embedding")
    if isinstance(embedding, torch.Tensor) and embedding.dim() == 3:
        return "hdcid"
    if any(re.match(r"^(\w+_encoder_2|\w+_self_att_2)\.", k) for k in encoder):
        return "hdcid"
    return "dcid"


def _variant_evidence(encoder: Mapping) -> str:
    embedding = encoder.get("Cross_quantizer.embedding")
    shape = f"Cross_quantizer.embedding of shape {tuple(embedding.shape)}" if isinstance(embedding, torch.Tensor) \
        else "no Cross_quantizer.embedding"
    second = sorted(k for k in encoder if re.match(r"^(\w+_encoder_2|\w+_self_att_2)\.", k))
    return shape + (f", layer-2 keys such as {second[0]}" if second else ", no layer-2 keys")


def _count_indices(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def infer_config(checkpoint: Mapping, variant: str, **overrides) -> HDCIDConfig:
    """The original-behaviour config (:meth:`HDCIDConfig.original_hdcid` / ``original_dcid``) with the
    dimensions read from the checkpoint's tensor shapes. Shapes that are missing keep the preset's value
    (the key check reports them); ``overrides`` win over both (e.g. ``num_attention_heads``,
    ``num_frames``, ``video_spatial_size``, which no shape holds)."""
    enc = checkpoint.get(ENCODER_ENTRY) or {}
    lstm = checkpoint.get(TEXT_LSTM_ENTRY) or {}

    def dim(mapping, key, axis):
        t = mapping.get(key)
        try:
            return int(t.shape[axis]) if isinstance(t, torch.Tensor) else None
        except IndexError:
            return None

    found = {
        "hidden_size": dim(enc, "Cross_quantizer.embedding", -1),
        "codebook_size": dim(enc, "Cross_quantizer.embedding", -2),
        "audio_feature_dim": dim(enc, "audio_self_att.affine_matrix.weight", 1),
        "video_feature_dim": dim(enc, "video_self_att.affine_matrix.weight", 1),
        "text_feature_dim": dim(lstm, "weight_ih_l0", 1),
        "text_lstm_hidden_size": dim(lstm, "weight_hh_l0", 1),
        "text_lstm_num_layers": _count_indices(lstm, r"^weight_ih_l(\d+)$") or None,
        "num_transformer_layers": _count_indices(enc, r"^video_self_att\.encoder\.layers\.(\d+)\.") or None,
        "intermediate_size": dim(enc, "video_self_att.encoder.layers.0.linear1.weight", 0),
        "video_residual_layers": _count_indices(enc, r"^Video_encoder\.conv_stack\.5\.stack\.(\d+)\.") or None,
        "video_feedforward_dim": dim(enc, "Video_encoder.feed_forward.0.weight", 0),
        "audio_specific_dim": dim(enc, "Audio_encoder.audio_linear.weight", 0),
        "text_specific_dim": dim(enc, "Text_encoder.text_linear.weight", 0),
    }
    c1, c2 = dim(enc, "Video_encoder.conv_stack.0.weight", 0), dim(enc, "Video_encoder.conv_stack.2.weight", 0)
    if c1 and c2:
        found["video_conv_channels"] = [c1, c2]
    squeeze = dim(enc, "video_semantic_encoder.se_layer.0.weight", 0)
    if squeeze and found["video_feature_dim"] and found["video_feature_dim"] % squeeze == 0:
        found["video_se_reduction"] = found["video_feature_dim"] // squeeze
    club = dim(checkpoint.get("Video_mi_net_parameters") or {}, "p_mu.0.weight", 0)
    if club:
        found["club_hidden_size"] = 2 * club
    cpc = checkpoint.get("CPC_parameters") or {}
    found["cpc_num_layers"] = _count_indices(cpc, r"^video_ar_lstm\.weight_ih_l(\d+)$") or None
    found["cpc_prediction_steps"] = _count_indices(cpc, r"^video_predictors\.(\d+)\.") or None
    found = {k: v for k, v in found.items() if v is not None}
    preset = HDCIDConfig.original_hdcid if variant == "hdcid" else HDCIDConfig.original_dcid
    return preset(**{**found, **overrides})


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------
@dataclass
class ConversionReport:
    """What :func:`convert_original_state` did with every part of an original checkpoint.

    variant: ``"dcid"`` or ``"hdcid"``. epoch / total_step: the checkpoint's counters (None if absent).
    converted: per checkpoint entry, the number of original tensors mapped into the model.
    dropped: per checkpoint entry, the unused original parameters that were dropped, with the reason.
    ignored_entries: top-level entries not converted (optimiser states).
    initialised: model sub-modules the checkpoint does not hold, left freshly initialised.
    config: the dimensions read from the checkpoint (and overrides). dtype: the model's dtype.
    """

    variant: str
    epoch: int | None = None
    total_step: int | None = None
    converted: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)
    ignored_entries: list = field(default_factory=list)
    initialised: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    dtype: str = "float64"

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A few human-readable lines."""
        name = {"dcid": "DCID", "hdcid": "H-DCID"}[self.variant]
        lines = [f"{name} checkpoint" + (f", epoch {self.epoch}" if self.epoch is not None else "")
                 + f"; model dtype {self.dtype}"]
        lines.append("converted: " + ", ".join(f"{e} ({n} tensors)" for e, n in self.converted.items()))
        for entry, keys in self.dropped.items():
            reasons = sorted(set(keys.values()))
            lines.append(f"dropped {len(keys)} unused tensors of {entry}: " + "; ".join(reasons))
        if self.ignored_entries:
            lines.append("ignored (not model weights): " + ", ".join(self.ignored_entries))
        if self.initialised:
            lines.append("not in the checkpoint, freshly initialised: " + ", ".join(self.initialised))
        return "\n".join(lines)


def _module_of(key: str) -> str:
    """The report name of a pretraining head a model key belongs to (``decoders.0``, ``cpc.1``,
    ``club.0.video``)."""
    parts = key.split(".")
    return ".".join(parts[:3] if parts[0] == "club" else parts[:2])


def _entries(checkpoint: Mapping) -> tuple[dict, list, dict]:
    """Split the top level into state-dict entries, ignored entries and metadata; ValueError for
    anything unknown or malformed."""
    known = {e for e, _, _ in KEY_MAP if "{" not in e}
    known |= {_fill(e, {"m": m}) for e, _, _ in KEY_MAP if "{" in e for m in _MODALITIES}
    states, ignored, meta, unknown = {}, [], {}, []
    for name, value in checkpoint.items():
        if name in known:
            if not isinstance(value, Mapping) or not all(isinstance(v, torch.Tensor) for v in value.values()):
                raise ValueError(f"checkpoint entry {name!r}: expected a state dict of tensors, "
                                 f"got {type(value).__name__}")
            states[name] = dict(value)
        elif name in METADATA_ENTRIES:
            meta[name] = int(value) if isinstance(value, (int, float)) or (
                isinstance(value, torch.Tensor) and value.numel() == 1) else None
        elif isinstance(name, str) and name.startswith(IGNORED_ENTRY_PREFIX):
            ignored.append(name)
        else:
            unknown.append(str(name))
    if unknown:
        raise ValueError(f"unexpected checkpoint entries {sorted(unknown)}: expected state dicts among "
                         f"{sorted(known)}, optimiser states and {list(METADATA_ENTRIES)}")
    missing = [e for e in REQUIRED_ENTRIES if e not in states]
    if missing:
        raise ValueError(f"missing checkpoint entries {missing}: an original DCID / H-DCID checkpoint holds "
                         f"{list(REQUIRED_ENTRIES)}")
    return states, sorted(ignored), meta


def _as_unused_steps(entry: str, key: str, tensor: torch.Tensor) -> torch.Tensor:
    if not bool(torch.isfinite(tensor).all()) or not torch.equal(tensor, tensor.round()):
        raise ValueError(f"{entry}: {key} must hold whole numbers (the original's unactivated_count), "
                         "got non-integral values")
    return tensor.round().long()


def convert_original_state(checkpoint: Mapping, variant: str | None = None, *, dtype: torch.dtype = torch.float64,
                           seed: int = 0, **config_overrides) -> tuple[HDCIDForPreTraining, ConversionReport]:
    """An original checkpoint dict (see the module docstring) -> (eval-mode model, report).

    ``variant`` ``"dcid"`` / ``"hdcid"`` is detected when None, and checked against the checkpoint when
    given. ``dtype`` float64 (the original's) or float32. Heads the checkpoint lacks are initialised under
    ``torch.manual_seed(seed)`` without touching the global RNG. ``config_overrides`` go to
    :func:`infer_config`. ValueError, listing the keys, for unexpected or missing parameters; naming the
    key and both shapes for a shape mismatch.
    """
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"variant: expected None, 'dcid' or 'hdcid', got {variant!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    states, ignored, meta = _entries(checkpoint)
    detected = detect_variant(states)
    if variant is not None and variant != detected:
        name = {"dcid": "DCID (one codebook [L, D], no layer-2 encoders)",
                "hdcid": "H-DCID (codebooks [2, L, D], layer-2 encoders)"}
        raise ValueError(f"variant={variant!r} but the checkpoint is {name[detected]}: "
                         f"{_variant_evidence(states[ENCODER_ENTRY])}")
    variant = detected
    config = infer_config(states, variant, **config_overrides)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HDCIDForPreTraining(config)
    model = model.to(dtype).eval()
    target = model.state_dict()

    values, owner, dropped, unexpected = {}, {}, {}, []
    for entry, state in states.items():
        for key, tensor in state.items():
            reason = unused_reason(entry, key)
            if reason is not None:
                dropped.setdefault(entry, {})[key] = reason
                continue
            mapped = model_key(entry, key)
            if mapped is None:
                unexpected.append(f"{entry}/{key}")
                continue
            if "{k}" in mapped:  # codebook buffer: one slice per layer
                stacked = variant == "hdcid"
                n = tensor.shape[0] if stacked and tensor.dim() > 0 else 1
                slices = [(k, tensor[k]) for k in range(n)] if stacked else [(0, tensor)]
                for k, part in slices:
                    name = mapped.replace("{k}", str(k))
                    if name not in target:
                        unexpected.append(f"{entry}/{key}[{k}]" if stacked else f"{entry}/{key}")
                        continue
                    values[name], owner[name] = part, f"{entry}/{key}" + (f"[{k}]" if stacked else "")
                continue
            if mapped not in target:
                unexpected.append(f"{entry}/{key}")
                continue
            values[mapped], owner[mapped] = tensor, f"{entry}/{key}"
    if unexpected:
        raise ValueError(f"unexpected keys in the checkpoint (no place in the {variant} model): "
                         + ", ".join(sorted(unexpected)))

    missing, initialised = [], set()
    for key in target:
        if key in values:
            continue
        entry, orig = original_key(key)
        if entry in states:
            suffix = f"[{key.split('.')[2]}]" if _is_codebook(key) and variant == "hdcid" else ""
            missing.append(f"{entry}/{orig}{suffix}")
        else:
            initialised.add(_module_of(key))
    if missing:
        raise ValueError(f"missing keys in the checkpoint (the {variant} model needs them): "
                         + ", ".join(sorted(set(missing))))

    mismatched = [f"{owner[k]} -> {k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
                  for k, v in values.items() if tuple(v.shape) != tuple(target[k].shape)]
    if mismatched:
        raise ValueError("shape mismatch: " + "; ".join(sorted(mismatched)))

    state = dict(target)
    for key, tensor in values.items():
        if key.endswith(".unused_steps"):
            tensor = _as_unused_steps(*owner[key].split("/", 1), tensor)
        state[key] = tensor.detach().to(dtype=target[key].dtype)
    model.load_state_dict(state, strict=True)
    model.eval()

    converted = {entry: len(state_) - len(dropped.get(entry, {})) for entry, state_ in states.items()}
    report = ConversionReport(
        variant=variant, epoch=meta.get("epoch"), total_step=meta.get("total_step"),
        converted=converted, dropped={e: dict(sorted(d.items())) for e, d in dropped.items()},
        ignored_entries=ignored, initialised=sorted(initialised),
        config={k: getattr(config, k) for k in (
            "num_layers", "hidden_size", "codebook_size", "audio_feature_dim", "video_feature_dim",
            "text_feature_dim", "text_lstm_hidden_size", "num_attention_heads", "num_transformer_layers",
            "intermediate_size", "video_conv_channels", "num_frames", "video_spatial_size")},
        dtype=str(dtype).replace("torch.", ""),
    )
    return model, report


def convert_original_checkpoint(path: str | os.PathLike, variant: str | None = None, *,
                                dtype: torch.dtype = torch.float64, return_report: bool = False,
                                **config_overrides):
    """Load an original DCID / H-DCID ``.pt`` file safely and convert it to an eval-mode
    :class:`HDCIDForPreTraining` (with ``return_report=True``: ``(model, ConversionReport)``).

    See :func:`convert_original_state` for ``variant``, ``dtype`` and ``config_overrides``.
    """
    model, report = convert_original_state(load_original_checkpoint(path), variant, dtype=dtype,
                                           **config_overrides)
    return (model, report) if return_report else model


def original_state_dicts(model: HDCIDForPreTraining) -> dict:
    """The inverse of :data:`KEY_MAP`: the model's weights as original checkpoint entries
    ({entry: {original key: tensor}}), codebooks stacked for H-DCID, ``unactivated_count`` as floats.
    The original's unused parameters (:data:`UNUSED_KEYS`) are not produced. For tests and exports."""
    variant = "hdcid" if model.config.num_layers == 2 else "dcid"
    if model.config.num_layers not in (1, 2) or list(model.config.modalities) != ["audio", "video", "text"]:
        raise ValueError("original_state_dicts: only the original layouts exist (1 or 2 layers, audio, video, text)")
    entries, books = {}, {}
    for key, tensor in model.state_dict().items():
        entry, orig = original_key(key)
        if _is_codebook(key):
            tensor = tensor.to(model.dtype) if key.endswith(".unused_steps") else tensor
            books.setdefault(orig, {})[int(key.split(".")[2])] = tensor.detach().clone()
            continue
        entries.setdefault(entry, {})[orig] = tensor.detach().clone()
    for orig, per_layer in books.items():
        parts = [per_layer[k] for k in sorted(per_layer)]
        entries[ENCODER_ENTRY][orig] = torch.stack(parts) if variant == "hdcid" else parts[0]
    return entries


def save_converted(model: HDCIDForPreTraining, report: ConversionReport, out_dir: str | os.PathLike,
                   encoder_only: bool = False, overwrite: bool = False) -> Path:
    """``save_pretrained`` the model (or its :class:`HDCIDModel` encoder alone) into ``out_dir`` with
    ``conversion_report.json`` and a model card (:func:`hf_hdcid.hub.folder.save_converted_model`: staged,
    locked, never clobbering another folder). Returns the folder."""
    from .hub.folder import save_converted_model

    record = report.to_dict()
    record["saved"] = "HDCIDModel (encoder only)" if encoder_only else "HDCIDForPreTraining"
    return save_converted_model(model.hdcid if encoder_only else model, record, out_dir, overwrite=overwrite)


__all__ = [
    "KEY_MAP", "UNUSED_KEYS", "VARIANTS", "ConversionReport", "convert_original_checkpoint",
    "convert_original_state", "load_original_checkpoint", "detect_variant", "infer_config", "model_key",
    "original_key", "unused_reason", "original_state_dicts", "save_converted",
]
