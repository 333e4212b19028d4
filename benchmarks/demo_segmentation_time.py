"""Seconds of ``make demo``'s segmentation step alone (issue 18: "well under a minute on 2 cores").

Builds the demo's synthetic segmentation shards (``hf_hdcid.demo.SEGMENTATION_CLIPS``, world seed 0)
and runs the step's grid exactly as :mod:`hf_hdcid.demo` does (DCID, H-DCID and the untrained H-DCID,
``synthetic_avs``, A->T and T->A, TOC off, heldout, ``SEGMENTATION_EPOCHS`` epochs) on the seed-0
encoders that ``benchmarks/segmentation.py`` wrote, ``--repeats`` times; prints each time and the median.

    .venv/bin/python benchmarks/demo_segmentation_time.py --runs outputs/segmentation/runs --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from segmentation import build_segmentation_world  # noqa: E402  (benchmarks/segmentation.py)

from hf_hdcid.demo import SEGMENTATION_CLIPS, SEGMENTATION_EPOCHS  # noqa: E402
from hf_hdcid.downstream.grid import run_grid  # noqa: E402

MODELS = (("DCID", "DCID-0"), ("H-DCID", "H-DCID-0"), ("untrained H-DCID", "untrained_H-DCID-0"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="outputs/segmentation/runs",
                        help="the runs folder of benchmarks/segmentation.py (its seed-0 encoders are used)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    models = [runs / folder / "model" for _, folder in MODELS]
    missing = [str(m) for m in models if not (m / "config.json").is_file()]
    if missing:
        raise SystemExit(f"--runs: expected the seed-0 encoders of benchmarks/segmentation.py, missing {missing}")
    times = []
    for _ in range(args.repeats):
        scratch = Path(tempfile.mkdtemp(prefix="demo_seg_"))
        try:
            started = time.perf_counter()
            data = build_segmentation_world(scratch, SEGMENTATION_CLIPS, 0, 32)
            result = run_grid(models, ("synthetic_avs",), data, directions=("a2t", "t2a"), toc="off",
                              protocol="heldout", seeds=[0], epochs=SEGMENTATION_EPOCHS, out_dir=scratch / "segmentation",
                              model_names=[name for name, _ in MODELS], progress=False)
            times.append(time.perf_counter() - started)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"{times[-1]:.1f} s ({len(result['records'])} runs, shards included)", flush=True)
    print(f"median {statistics.median(times):.1f} s over {len(times)}")


if __name__ == "__main__":
    main()
