"""The ``hf-hdcid`` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(seed=args.seed, batch_size=args.batch_size, output_dir=args.output_dir)
    return 0


def _toc(args: argparse.Namespace) -> int:
    from .toc import run_toc

    summary = run_toc(args.model, args.channels, out_dir=args.out, lam=args.lam, normalize=args.normalize,
                      top_bottom=(args.top, args.bottom))
    for row in summary["layers"]:
        print(f"layer {row['layer']}: {row['num_channels']} channels, mean |cos| off-diagonal "
              f"{row['mean_abs_cosine_before']:.4f} -> {row['mean_abs_cosine_after']:.4f}")
    print(f"wrote {summary['out_dir']} (model, toc_cosine.png, toc_summary.json)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-hdcid", description="H-DCID, DCID and TOC on Hugging Face.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build a tiny H-DCID, run a training step, encode samples, print codes")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--batch-size", type=int, default=4)
    demo.add_argument("--output-dir", default="outputs/demo", help="where the tiny model is saved")
    demo.set_defaults(func=_demo)
    toc = sub.add_parser("toc", help="compute TOC channels of a model, store them in its config, plot Fig. 2")
    toc.add_argument("model", help="a save_pretrained folder (or a cached Hub id)")
    toc.add_argument("--channels", type=int, required=True, help="channels kept per layer (Q)")
    toc.add_argument("--lam", type=float, default=0.7, help="lambda of eq. 11")
    toc.add_argument("--top", type=int, default=1, help="share of best channels (original toc_max_num)")
    toc.add_argument("--bottom", type=int, default=0, help="share of worst channels (original toc_min_num)")
    toc.add_argument("--normalize", action="store_true", help="unit-norm codes first (the paper's assumption)")
    toc.add_argument("--out", default=None, help="output folder (default: <model>-toc<channels>)")
    toc.set_defaults(func=_toc)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
