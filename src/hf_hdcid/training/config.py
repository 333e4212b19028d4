"""The settings of a pretraining run: :class:`PretrainConfig` (also the flags of ``scripts/pretrain.py``,
built from the fields by transformers' ``HfArgumentParser``, and the JSON of ``--config``).

Every field carries its help text in ``metadata["help"]`` (what ``--help`` prints) and is checked by
:meth:`PretrainConfig.validate` when the config is built, so that a bad value fails before any
training step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .schedule import LR_SCHEDULERS

PRESETS = ("tiny", "hdcid", "dcid", "original_hdcid", "original_dcid")
#: "fp16" runs with Accelerate's loss scaling (GradScaler) and needs a GPU: Accelerate runs fp16 on a CPU
#: as plain float32 without saying so, so :func:`hf_hdcid.training.loop.pretrain` refuses it there.
MIXED_PRECISION = ("no", "bf16", "fp16")
#: ``"before_main"`` (the original's order): the CLUB networks are updated on this batch's detached
#: features before this batch's MI term is computed with them. ``"after_main"``: the main update
#: first (one ``model(**batch)`` call: encoder pass, codebook update and eq. 14 inside ``forward``),
#: then the CLUB steps on the same detached features.
CLUB_UPDATE_ORDERS = ("before_main", "after_main")
#: values of ``dynamo_backend`` accepted without a check of the installed torch (others are checked
#: against ``torch._dynamo.list_backends()``)
DYNAMO_BACKENDS = ("no", "inductor", "aot_eager", "eager")
#: ``"once"``: one encoder pass per step, the CLUB steps reuse its detached outputs (default, ~6x less
#: encoder work). ``"per_club_step"``: the original code's schedule (``pretrain_ml.train_epoch``): every
#: CLUB step re-runs the encoder in training mode (EMA update and dead-code counting included), then a
#: last pass feeds the main loss: ``club_steps + 1`` encoder passes and codebook updates per batch.
ENCODER_PASSES = ("once", "per_club_step")


#: renamed settings: old name -> new name. The old names still work (a FutureWarning names the new one)
#: as constructor keywords, keys of a ``--config`` JSON file or of a run's saved ``pretrain_config.json``,
#: and flags (``--toc-channels``).
RENAMED_FIELDS = {"toc_channels": "toc_num_channels"}


def _renamed(name: str) -> str:
    new = RENAMED_FIELDS[name]
    return f"PretrainConfig.{name} is deprecated and will be removed; use {new} (the same value)"


def rename_deprecated_keys(values: dict, source: str | None = None) -> dict:
    """``values`` with every old setting name of :data:`RENAMED_FIELDS` replaced by its new name
    (a FutureWarning per old name; ValueError when both names are given; ``source``, e.g. the file,
    starts the messages)."""
    if not isinstance(values, dict) or not RENAMED_FIELDS.keys() & values.keys():
        return values
    values = dict(values)
    for old, new in RENAMED_FIELDS.items():
        if old in values:
            if new in values:
                raise ValueError(f"{source or 'PretrainConfig'}: both {old!r} (deprecated) and {new!r} are given; "
                                 f"keep only {new!r}")
            warnings.warn(f"{source}: {_renamed(old)}" if source else _renamed(old), FutureWarning, stacklevel=3)
            values[new] = values.pop(old)
    return values


class PretrainConfigError(ValueError):
    """A setting that cannot work (bad value, data, output folder, Hub settings); raised by
    :func:`hf_hdcid.training.loop.pretrain` before any training step."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass
class PretrainConfig:
    """Settings of :func:`hf_hdcid.training.loop.pretrain`; each field's help is in its metadata
    (``scripts/pretrain.py --help``)."""

    data: str | None = field(default=None, metadata=_help(
        "shard folder (hf_hdcid.data.shards) or Hub dataset repo id ORG/NAME (hf-hdcid push-data) with the split "
        "`split`; scripts/pretrain.py without it builds the "
        "synthetic benchmark in outputs/synthetic"))
    preset: str = field(default="tiny", metadata=_help("HDCIDConfig preset", choices=PRESETS))
    model_config: dict = field(default_factory=dict, metadata=_help(
        "HDCIDConfig overrides as a JSON object, e.g. '{\"warm_start_epoch\": 1}'; feature sizes come from the "
        "shard manifest unless given here"))
    split: str = field(default="pretrain", metadata=_help("split of the shards to pretrain on"))
    epochs: int = field(default=8, metadata=_help("epochs (the schedules are planned over all of them)"))
    batch_size: int = field(default=16, metadata=_help("clips per process and micro-batch"))
    lr: float = field(default=4e-4, metadata=_help("Adam learning rate of the main parameters"))
    club_lr: float = field(default=1e-3, metadata=_help("Adam learning rate of the CLUB networks (constant)"))
    club_steps: int = field(default=5, metadata=_help("CLUB updates per micro-batch"))
    club_update_order: str = field(default="before_main", metadata=_help(
        "before_main (the original's order: CLUB steps on this batch's detached features, then the main loss) "
        "or after_main (main update first, then the CLUB steps on the same features)", choices=CLUB_UPDATE_ORDERS))
    clip: float | None = field(default=0.5, metadata=_help(
        "max gradient norm, applied per module (0 or None: no clipping)"))
    seed: int = field(default=0, metadata=_help("seed of weights, data order and every RNG"))
    mixed_precision: str = field(default="no", metadata=_help(
        "no, bf16 (autocast; weights, codebooks and optimiser states stay fp32) or fp16 (autocast with "
        "Accelerate's loss scaling; GPU only)", choices=MIXED_PRECISION))
    dynamo_backend: str = field(default="no", metadata=_help(
        "torch.compile backend applied by Accelerate to the model's forward (no, inductor, aot_eager, ...)"))
    gradient_accumulation_steps: int = field(default=1, metadata=_help(
        "micro-batches per optimiser step (accelerator.accumulate; a trailing incomplete group at the end "
        "of an epoch is stepped, as Accelerate does)"))
    output_dir: str = field(default="outputs/pretrain", metadata=_help(
        "run folder: checkpoints/, train_log.jsonl, model/"))
    save_every_steps: int = field(default=500, metadata=_help(
        "checkpoint every so many optimiser steps (0: only at the end of epochs)"))
    save_total_limit: int = field(default=3, metadata=_help(
        "complete checkpoints kept (the oldest are deleted; 0 keeps all)"))
    log_every: int = field(default=1, metadata=_help("one log line every so many optimiser steps"))
    max_steps: int | None = field(default=None, metadata=_help(
        "stop after so many optimiser steps in total (a checkpoint is written there)"))
    resume_from_checkpoint: str | None = field(default=None, metadata=_help(
        "'latest' (the newest checkpoint in output_dir; none: start afresh) or a checkpoint folder"))
    resume_fallback: bool = field(default=False, metadata=_help(
        "with resume_from_checkpoint='latest': skip damaged checkpoints (said in the log) and resume from the "
        "newest intact one; without it a damaged checkpoint is an error naming the file"))
    toc_num_channels: int | None = field(default=None, metadata=_help(
        "number of TOC channels per layer computed at the end (None: hidden_size // 2; 0: no TOC); "
        "formerly toc_channels"))
    num_workers: int = field(default=0, metadata=_help("DataLoader worker processes"))
    progress: bool = field(default=True, metadata=_help("tqdm bar on the main process"))
    save_rank_states: bool = field(default=False, metadata=_help(
        "every process writes its final state_dict to output_dir/rank_states/rank{r}.pt"))
    encoder_passes: str = field(default="once", metadata=_help(
        "once (one encoder pass per batch) or per_club_step (the original's club_steps + 1 passes; "
        "before_main only)", choices=ENCODER_PASSES))
    lr_scheduler: str = field(default="constant", metadata=_help(
        "schedule of the main optimiser (hf_hdcid.training.schedule)", choices=LR_SCHEDULERS))
    warmup_steps: int = field(default=0, metadata=_help("warm-up steps (constant_with_warmup, linear, cosine)"))
    lr_milestones: list[int] = field(default_factory=lambda: [10, 20, 30], metadata=_help(
        "multistep: epochs at which the rate is multiplied by lr_gamma"))
    lr_gamma: float = field(default=0.5, metadata=_help("multistep: factor at each milestone, in (0, 1]"))
    report_to: str | list[str] = field(default="auto", metadata=_help(
        "trackers besides the JSONL log: auto (TensorBoard when installed), none, or tracker names"))
    plot: bool = field(default=True, metadata=_help("write loss_curves.png (and toc_cosine.png with TOC) at the end"))
    push_to_hub: bool = field(default=False, metadata=_help("upload the final model folder to hub_model_id"))
    hub_model_id: str | None = field(default=None, metadata=_help("ORG/NAME of the Hub repo for push_to_hub"))
    hub_private: bool = field(default=False, metadata=_help("create the Hub repo private"))
    normalize_inputs: bool | None = field(default=None, metadata=_help(
        "standardise audio / video features per channel with statistics of the pretraining split, stored in "
        "the config (None: on, except for the original_* presets, which feed raw features)"))

    def __post_init__(self):
        if self.data is not None:
            self.data = str(self.data)
        self.output_dir = str(self.output_dir)
        if self.resume_from_checkpoint is not None:
            self.resume_from_checkpoint = str(self.resume_from_checkpoint)
        if isinstance(self.report_to, list) and len(self.report_to) == 1:
            self.report_to = self.report_to[0]
        if self.clip == 0:
            self.clip = None
        self.validate()

    def inputs_normalized(self) -> bool:
        """``normalize_inputs`` resolved: None means True except for the ``original_*`` presets."""
        if self.normalize_inputs is None:
            return not self.preset.startswith("original_")
        return self.normalize_inputs

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """ValueError naming the field, the expected and the actual value."""

        def fail(name, expected):
            raise ValueError(f"{name}: expected {expected}, got {getattr(self, name)!r}")

        if self.preset not in PRESETS:
            fail("preset", f"one of {PRESETS}")
        if not isinstance(self.model_config, dict):
            fail("model_config", "a dict of HDCIDConfig overrides")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "log_every"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "an int >= 1")
        for name in ("club_steps", "save_every_steps", "num_workers", "save_total_limit"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                fail(name, "an int >= 0")
        if not _is_int(self.seed):
            fail("seed", "an int")
        for name in ("lr", "club_lr"):
            value = getattr(self, name)
            if not _number(value) or not value > 0 or math.isinf(value):
                fail(name, "a positive finite number")
        if self.clip is not None and (not _number(self.clip) or not self.clip >= 0 or math.isinf(self.clip)):
            fail("clip", "None or a number >= 0")
        if self.mixed_precision not in MIXED_PRECISION:
            fail("mixed_precision", f"one of {MIXED_PRECISION}")
        if not isinstance(self.dynamo_backend, str) or not self.dynamo_backend:
            fail("dynamo_backend", '"no" or a torch.compile backend name')
        if self.dynamo_backend.lower() not in DYNAMO_BACKENDS:
            import torch._dynamo

            if self.dynamo_backend.lower() not in torch._dynamo.list_backends():
                fail("dynamo_backend", f'"no" or one of {sorted(torch._dynamo.list_backends())}')
        if self.club_update_order not in CLUB_UPDATE_ORDERS:
            fail("club_update_order", f"one of {CLUB_UPDATE_ORDERS}")
        if self.max_steps is not None and (not _is_int(self.max_steps) or self.max_steps < 1):
            fail("max_steps", "None or an int >= 1")
        count = self.toc_num_channels
        if count is not None and (not _is_int(count) or count < 0):
            fail("toc_num_channels", "None or an int >= 0")
        if not isinstance(self.split, str) or not self.split:
            fail("split", "a non-empty string")
        if not self.output_dir:
            fail("output_dir", "a folder path")
        if self.encoder_passes not in ENCODER_PASSES:
            fail("encoder_passes", f"one of {ENCODER_PASSES}")
        if self.encoder_passes == "per_club_step" and self.club_update_order != "before_main":
            fail("encoder_passes", "'once' with club_update_order='after_main' (the original's per-CLUB-step "
                                   "passes exist only in its own order, 'before_main')")
        if self.normalize_inputs is not None and not isinstance(self.normalize_inputs, bool):
            fail("normalize_inputs", "None, True or False")
        if not isinstance(self.resume_fallback, bool):
            fail("resume_fallback", "True or False")
        if self.lr_scheduler not in LR_SCHEDULERS:
            fail("lr_scheduler", f"one of {LR_SCHEDULERS}")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            fail("warmup_steps", "an int >= 0")
        if (not isinstance(self.lr_milestones, (list, tuple))
                or not all(_is_int(m) and m >= 1 for m in self.lr_milestones)):
            fail("lr_milestones", "a list of epoch numbers >= 1")
        if not _number(self.lr_gamma) or not 0 < self.lr_gamma <= 1:
            fail("lr_gamma", "a number in (0, 1]")
        trackers = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        if not isinstance(trackers, (list, tuple)) or not trackers or not all(isinstance(t, str) and t for t in trackers):
            fail("report_to", '"auto", "none", a tracker name or a list of tracker names')
        for name in ("plot", "push_to_hub", "hub_private", "progress", "save_rank_states"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "true or false")
        if self.push_to_hub and not (isinstance(self.hub_model_id, str) and self.hub_model_id):
            fail("hub_model_id", "ORG/NAME (push_to_hub is set)")

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def check_keys(cls, values, source: str) -> dict:
        """``values`` if it is a dict of field names; ValueError naming ``source`` otherwise."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object of settings, got {type(values).__name__}")
        values = rename_deprecated_keys(values, source)  # files saved before a rename still load
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; expected only {sorted(known)}")
        return values

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "PretrainConfig":
        return cls(**cls.check_keys(values, source))

    @classmethod
    def read_json(cls, path: str | os.PathLike) -> dict:
        """The settings of a JSON config file (ValueError naming the file when unreadable / not JSON /
        with unknown keys)."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except OSError as err:
            raise ValueError(f"{path}: cannot read the config file: {err}") from err
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from err
        return cls.check_keys(values, str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def toc_channels(self) -> int | None:
        """Deprecated name of :attr:`toc_num_channels` (a count, not channel indices)."""
        warnings.warn(_renamed("toc_channels"), FutureWarning, stacklevel=2)
        return self.toc_num_channels


def _accept_renamed_keywords(cls):
    """``cls(old_name=...)`` keeps working for the settings of :data:`RENAMED_FIELDS`."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **rename_deprecated_keys(kwargs))

    cls.__init__ = __init__
    return cls


PretrainConfig = _accept_renamed_keywords(PretrainConfig)


# ============================================================================ command line
def json_object(text: str) -> dict:
    """argparse type of the dict fields: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not a JSON object: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


json_object.__name__ = "JSON object"  # argparse names the type in its error message


def argument_parser(description: str | None = None):
    """transformers' ``HfArgumentParser`` over :class:`PretrainConfig` (every field a flag, dash and
    underscore spellings, help from the field metadata) plus ``--config FILE``."""
    from transformers import HfArgumentParser

    class PretrainArgumentParser(HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, dc_field):
            if dc_field.type == (bool | None):  # --x, --x true|false, --no-x; absent: None
                from transformers.hf_argparser import string_to_bool

                names = [f"--{dc_field.name}", f"--{dc_field.name.replace('_', '-')}"]
                parser.add_argument(*dict.fromkeys(names), type=string_to_bool, nargs="?", const=True, default=None,
                                    help=dc_field.metadata.get("help"))
                parser.add_argument(*dict.fromkeys([f"--no_{dc_field.name}", f"--no-{dc_field.name.replace('_', '-')}"]),
                                    dest=dc_field.name, action="store_const", const=False)
                return
            if dc_field.type is dict:  # HfArgumentParser has no dict fields: parse them as JSON
                dc_field = _with_type(dc_field, json_object)
            elif dc_field.type == (str | list[str]):  # one or more names; HfArgumentParser's list branch
                dc_field = _with_type(dc_field, list[_comma_list(str)], default_factory=lambda d=dc_field.default: d)
            elif dc_field.type == list[int]:  # "10 20 30" or "10,20,30"
                dc_field = _with_type(dc_field, list[_comma_list(int)], default_factory=dc_field.default_factory)
            elif dc_field.type in (int | None, float | None):  # "none" / "null" spell None on the command line
                dc_field = _with_type(dc_field, _optional(int if dc_field.type == (int | None) else float))
            HfArgumentParser._parse_dataclass_field(parser, dc_field)

    parser = PretrainArgumentParser(PretrainConfig, description=description)
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file of PretrainConfig settings (unknown keys are errors); flags override it")
    for old, new in RENAMED_FIELDS.items():
        parser.add_argument(f"--{old}", f"--{old.replace('_', '-')}", dest=new, type=_optional(int),
                            action=deprecated_flag(f"--{new.replace('_', '-')}"),
                            help=f"deprecated spelling of --{new.replace('_', '-')}")
    return parser


def deprecated_flag(new_flag: str):
    """argparse action of a renamed flag: stores the value and says the new flag on stderr."""
    import argparse

    class DeprecatedFlag(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"warning: {option_string} is deprecated and will be removed; use {new_flag} (the same value)",
                  file=sys.stderr)
            setattr(namespace, self.dest, values)

    return DeprecatedFlag


def _comma_list(base):
    """argparse type: one value or comma-separated values -> a list (flattened by parse_command_line)."""
    def parse(text: str):
        return [base(v) for v in text.split(",") if v]

    parse.__name__ = f"{base.__name__} list"
    return parse


def _optional(base):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else base(text)

    parse.__name__ = f"{base.__name__} or none"
    return parse


def _with_type(dc_field, new_type, default_factory=None):
    """A copy of the dataclass field ``dc_field`` with another type (and default factory) for the parser."""
    if default_factory is not None:
        copy = dataclasses.field(default_factory=default_factory, metadata=dc_field.metadata)
    else:
        copy = dataclasses.field(default=dc_field.default, default_factory=dc_field.default_factory,
                                 metadata=dc_field.metadata)
    copy.name, copy.type = dc_field.name, new_type
    return copy


def parse_command_line(argv: list[str] | None = None, description: str | None = None) -> PretrainConfig:
    """``--config FILE`` (optional) then the flags over it -> a validated :class:`PretrainConfig`
    (ValueError naming the field on a bad value; argparse exits 2 on an unknown flag)."""
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    parser = argument_parser(description)
    source = "command line"
    if known.config is not None:
        parser.set_defaults(**PretrainConfig.read_json(known.config))
        source = str(known.config)
    namespace = parser.parse_args(argv)
    values = {k: v for k, v in vars(namespace).items() if k != "config"}
    for name in ("report_to", "lr_milestones"):  # nargs="+" of comma lists -> one flat list
        value = values.get(name)
        if isinstance(value, list) and any(isinstance(v, list) for v in value):
            values[name] = [x for v in value for x in (v if isinstance(v, list) else [v])]
    return PretrainConfig.from_dict(values, source=source)


__all__ = ["PretrainConfig", "PretrainConfigError", "RENAMED_FIELDS", "rename_deprecated_keys", "deprecated_flag",
           "PRESETS", "MIXED_PRECISION", "CLUB_UPDATE_ORDERS", "ENCODER_PASSES", "argument_parser",
           "parse_command_line", "json_object"]
