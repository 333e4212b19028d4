#!/usr/bin/env python
"""Cross-modal generalisation benchmarks for one or more models (the paper's Table 1 layout).

    python scripts/evaluate_downstream.py --models outputs/demo/dcid/model outputs/demo/hdcid/model \\
        --data outputs/demo/synthetic_avt --tasks synthetic_ave synthetic_avvp --toc both --seeds 0 1 2
    python scripts/evaluate_downstream.py --models hdcid-vgg40k --data shards/ave --tasks ave --protocol paper
    python scripts/evaluate_downstream.py --models m --data shards/ucf_video --test-data shards/vggsound_audio \\
        --tasks ucf_vggsound

Writes one JSON per run, ``results.md`` (rows: model x TOC; columns: task / direction; average) and
``results.png`` to ``--out``. Protocols (``--protocol heldout|paper``) and tasks:
``hf_hdcid.downstream.tasks``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if (REPO / "src" / "hf_hdcid").is_dir():
    try:
        import hf_hdcid  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))

from hf_hdcid.downstream.grid import TOC_CHOICES, run_grid  # noqa: E402
from hf_hdcid.downstream.tasks import DIRECTIONS, PROTOCOLS, TASKS  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="save_pretrained folders or Hub ids")
    p.add_argument("--model-names", nargs="+", default=None, help="row labels (default: DCID / H-DCID)")
    p.add_argument("--data", required=True, help="shard folder of the tasks (training side)")
    p.add_argument("--test-data", default=None, help="test-side shard folder (ave_avvp, ucf_vggsound)")
    p.add_argument("--tasks", nargs="+", required=True, choices=sorted(TASKS))
    p.add_argument("--directions", nargs="+", default=["v2a", "a2v"], choices=sorted(DIRECTIONS))
    p.add_argument("--toc", choices=TOC_CHOICES, default="both", help="without / with the stored TOC channels")
    p.add_argument("--protocol", choices=PROTOCOLS, default="heldout")
    p.add_argument("--layers", default="both", help="1, 2 or both")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=None, help="probe epochs (default: the task's, see TaskSpec)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the task's (80 as the original)")
    p.add_argument("--lr", type=float, default=None, help="default: the task's (4e-4 as the original)")
    p.add_argument("--out", default="outputs/downstream")
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        result = run_grid(args.models, args.tasks, args.data, test_data=args.test_data, directions=args.directions,
                          toc=args.toc, protocol=args.protocol, seeds=args.seeds, epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, layers=args.layers, out_dir=args.out,
                          model_names=args.model_names)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n" + result["table"])
    print(f"wrote {result['table_path']}, {result['figure_path']} and one JSON per run in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
