#!/usr/bin/env python
"""Pretrain H-DCID on feature shards (thin command line over ``hf_hdcid.training.loop``).

    python scripts/pretrain.py                                  # synthetic benchmark, tiny preset
    accelerate launch scripts/pretrain.py --config run.json     # settings from a JSON file
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no scripts/pretrain.py --data shards/ave --preset hdcid --epochs 40

Flags override the values of ``--config``. Without ``--data`` (in neither), the synthetic benchmark
(tiny preset, prompts embedded by the offline MiniLM) is generated into ``outputs/synthetic`` on first
use and used. On CPU, ``accelerate launch --cpu --num_processes 2`` silently runs ONE process: use
``--multi_gpu`` as above (gloo backend).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "src") not in sys.path and (REPO / "src" / "hf_hdcid").is_dir():
    try:
        import hf_hdcid  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))

from hf_hdcid.training.loop import PRESETS, PretrainConfig, PretrainConfigError, pretrain, use_cpu  # noqa: E402
from hf_hdcid.training.schedule import LR_SCHEDULERS  # noqa: E402
from hf_hdcid.training.step import ENCODER_PASSES  # noqa: E402

DEFAULT_SYNTHETIC = Path("outputs/synthetic")


def _optional_int(value: str):
    return None if value.lower() in ("none", "null") else int(value)


def _optional_float(value: str):
    return None if value.lower() in ("none", "null") else float(value)


class _Parser(argparse.ArgumentParser):
    """Every ``--some-flag`` is also accepted as ``--some_flag`` (the spelling of transformers' scripts)."""

    def add_argument(self, *names, **kwargs):
        aliases = ["--" + n[2:].replace("-", "_") for n in names if n.startswith("--") and "-" in n[2:]]
        return super().add_argument(*names, *[a for a in aliases if a not in names], **kwargs)


def _str_list(value: str):
    return [v for v in value.split(",") if v] if "," in value else value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                argument_default=argparse.SUPPRESS)  # only the flags given are set
    p.add_argument("--config", type=Path, help="JSON file with PretrainConfig settings (unknown keys are errors)")
    p.add_argument("--data", help="shard folder (default: the synthetic benchmark in outputs/synthetic)")
    p.add_argument("--preset", choices=PRESETS)
    p.add_argument("--model-config", dest="model_config", type=json.loads,
                   help='HDCIDConfig overrides as JSON, e.g. \'{"warm_start_epoch": 1}\'')
    p.add_argument("--split")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int, help="per process")
    p.add_argument("--lr", type=float)
    p.add_argument("--club-lr", dest="club_lr", type=float)
    p.add_argument("--club-steps", dest="club_steps", type=int)
    p.add_argument("--clip", type=_optional_float, help="max grad norm per module (none or 0: off)")
    p.add_argument("--seed", type=int)
    p.add_argument("--mixed-precision", dest="mixed_precision", choices=("no", "bf16"))
    p.add_argument("--gradient-accumulation-steps", dest="gradient_accumulation_steps", type=int)
    p.add_argument("--output-dir", dest="output_dir")
    p.add_argument("--save-every-steps", dest="save_every_steps", type=int)
    p.add_argument("--log-every", dest="log_every", type=int)
    p.add_argument("--max-steps", dest="max_steps", type=_optional_int)
    p.add_argument("--resume-from-checkpoint", dest="resume_from_checkpoint", help='"latest" or a checkpoint folder')
    p.add_argument("--toc-channels", dest="toc_channels", type=_optional_int)
    p.add_argument("--num-workers", dest="num_workers", type=int)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--save-rank-states", dest="save_rank_states", action="store_true",
                   help="every process writes its final state_dict to OUTPUT_DIR/rank_states/rank{r}.pt")
    p.add_argument("--encoder-passes", dest="encoder_passes", choices=ENCODER_PASSES,
                   help="once (default) or per_club_step (the original's club_steps + 1 encoder passes per batch)")
    p.add_argument("--normalize-inputs", dest="normalize_inputs", action=argparse.BooleanOptionalAction,
                   help="standardise audio/video features per channel with statistics of the pretraining split "
                        "(stored in the config); default on, off for the original_* presets")
    p.add_argument("--lr-scheduler", dest="lr_scheduler", choices=LR_SCHEDULERS)
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int)
    p.add_argument("--lr-milestones", dest="lr_milestones", type=lambda v: [int(x) for x in v.split(",") if x],
                   help="multistep: comma-separated epochs (default 10,20,30)")
    p.add_argument("--lr-gamma", dest="lr_gamma", type=float)
    p.add_argument("--report-to", dest="report_to", type=_str_list,
                   help='auto (TensorBoard when installed), none, or tracker name(s), comma-separated')
    p.add_argument("--no-plot", dest="plot", action="store_false")
    p.add_argument("--push-to-hub", dest="push_to_hub", action="store_true")
    p.add_argument("--hub-model-id", dest="hub_model_id", help="ORG/NAME of the Hub repo for --push-to-hub")
    p.add_argument("--hub-private", dest="hub_private", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    if getattr(args, "config", None) is not None:
        return PretrainConfig.from_json(args.config, **flags)
    return PretrainConfig.from_dict(flags, source="command line")


def ensure_synthetic(cfg: PretrainConfig) -> PretrainConfig:
    """Without data: build the synthetic benchmark (tiny preset) once, on the main process."""
    if cfg.data is not None:
        return cfg
    from accelerate import PartialState

    state = PartialState(cpu=use_cpu())
    target = DEFAULT_SYNTHETIC
    if state.is_main_process and not (target / "hdcid_shards.json").is_file():
        from hf_hdcid import HDCIDConfig
        from hf_hdcid.data.synthetic import build_synthetic_shards
        from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model

        preset = HDCIDConfig.tiny()
        extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=preset.num_frames, progress=False)
        config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
        print(f"building the synthetic benchmark into {target} (first use)")
        build_synthetic_shards(target, config, seed=0, text_extractor=extractor, overwrite=True)
    state.wait_for_everyone()
    cfg.data = str(target)
    return cfg


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = ensure_synthetic(cfg)
    try:
        model_dir = pretrain(cfg)
    except PretrainConfigError as err:  # raised before any training step
        print(f"error: {err}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    if PartialState(cpu=use_cpu()).is_main_process:
        print(f"model saved to {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
