"""Seconds of ``make demo``'s segmentation step alone (issue 18: "well under a minute on 2 cores").

Runs the demo's own step, :func:`hf_hdcid.demo.run_segmentation_step` (the synthetic segmentation shards
of world seed 0, then ``synthetic_avs`` A->T and T->A of DCID, H-DCID and the untrained H-DCID, TOC off,
heldout, ``SEGMENTATION_EPOCHS`` epochs), on the seed-0 encoders that ``benchmarks/segmentation.py``
wrote, ``--repeats`` times; prints each time and the median. The text extractor is built once, outside
the timing, as in the demo (which builds it for step 1).

    .venv/bin/python benchmarks/demo_segmentation_time.py --runs outputs/segmentation/runs --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from hf_hdcid import HDCIDConfig
from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model
from hf_hdcid.demo import run_segmentation_step

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
    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames,
                                     progress=False)
    data_config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    times = []
    for _ in range(args.repeats):
        scratch = Path(tempfile.mkdtemp(prefix="demo_seg_"))
        try:
            started = time.perf_counter()
            result = run_segmentation_step(scratch, data_config, extractor, models, [name for name, _ in MODELS],
                                           seed=0, progress=False)
            times.append(time.perf_counter() - started)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"{times[-1]:.1f} s ({len(result['records'])} runs, shards included)", flush=True)
    print(f"median {statistics.median(times):.1f} s over {len(times)}")


if __name__ == "__main__":
    main()
