#!/usr/bin/env python
"""Pretrain H-DCID on feature shards (thin command line over ``hf_hdcid.training.loop``).

    python scripts/pretrain.py                                  # synthetic benchmark, tiny preset
    accelerate launch scripts/pretrain.py --config run.json     # settings from a JSON file
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no scripts/pretrain.py --data shards/ave --preset hdcid --epochs 40

Every field of ``hf_hdcid.training.PretrainConfig`` is a flag (``--batch-size`` or ``--batch_size``; see
``--help``); flags override the values of ``--config``. Without ``--data`` (in neither), the synthetic benchmark
(tiny preset, prompts embedded by the offline MiniLM) is generated into ``outputs/synthetic`` on first
use and used. On CPU, ``accelerate launch --cpu --num_processes 2`` silently runs ONE process: use
``--multi_gpu`` as above (gloo backend).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "src") not in sys.path and (REPO / "src" / "hf_hdcid").is_dir():
    try:
        import hf_hdcid  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))

from hf_hdcid.training.config import PretrainConfig, argument_parser, parse_command_line  # noqa: E402
from hf_hdcid.training.loop import PretrainConfigError, pretrain, use_cpu  # noqa: E402

DEFAULT_SYNTHETIC = Path("outputs/synthetic")
DESCRIPTION = __doc__.split("\n\n")[0]


def build_parser():
    """The flags: one per :class:`PretrainConfig` field (transformers' ``HfArgumentParser``), plus ``--config``."""
    return argument_parser(DESCRIPTION)


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
    try:
        cfg = parse_command_line(argv, DESCRIPTION)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = ensure_synthetic(cfg)
    try:
        model_dir = pretrain(cfg)
    except PretrainConfigError as err:  # raised before any training step
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ValueError, OSError, FloatingPointError) as err:  # data, disk, a diverged run: one line
        if os.environ.get("HF_HDCID_DEBUG", "") not in ("", "0"):
            raise
        print(f"error: {' '.join(str(err).split())} (HF_HDCID_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    from accelerate import PartialState

    if PartialState(cpu=use_cpu()).is_main_process:
        print(f"model saved to {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
