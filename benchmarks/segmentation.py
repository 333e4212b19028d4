"""AVS-S4 cross-modal segmentation on the synthetic benchmark (issue 18, paper Table 4): pretrained tiny
DCID / H-DCID vs an untrained H-DCID floor; directions A2T, T2A (codes as the TPAVI query) and the A2A
reference (raw audio features as the query), plus a query-blind reference (the A2A segmenter fed a
constant all-zero audio query in training and test: what the frames alone give).

1. writes the synthetic audio-visual-text world of the demo (benchmarks/retrieval.py ``build_world``:
   tiny dimensions, ``hf_hdcid.demo.NUM_CLASSES`` event classes, prompts embedded by the offline
   MiniLM) and the synthetic segmentation shards of the SAME config / seed / spec
   (:func:`hf_hdcid.data.synthetic_segmentation.build_synthetic_segmentation_shards`: same class audio
   machinery and prompts; frames with the sounding object and, p = 0.5, a silent distractor of
   another class; train clips annotate frame 0 only);
2. for every pretraining seed pretrains DCID and H-DCID with the demo's recipe and builds the untrained
   H-DCID floor of the same seed (benchmarks/retrieval.py ``prepare_encoder``);
3. for every encoder and seed runs :func:`hf_hdcid.downstream.segmentation.evaluate_segmentation`
   (task ``synthetic_avs``, heldout protocol, segmenter seed = the pretraining seed) for A2T and T2A
   with TOC off and on (the encoder's stored 8 of 16 channels per layer); A2A and the query-blind
   reference once per seed (they do not depend on the encoder: the query is the raw audio, resp. zeros);
   ``--paper-protocol MODEL``: also the paper protocol for that model;
4. writes one JSON line per run to ``OUT/records.jsonl`` (resumable) and the table of means ± std over
   the seeds (mIoU, F-score, %) to ``OUT/segmentation.md`` and ``--results``.

Usage (the BENCHMARKS.md table)::

    .venv/bin/python benchmarks/segmentation.py --out outputs/segmentation --seeds 0 1 2 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval import MODELS, REPO, build_world, prepare_encoder  # noqa: E402

from hf_hdcid.demo import DEMO_LR, NUM_CLASSES  # noqa: E402

FLOOR = "untrained H-DCID"
A2A = "AVS (raw audio)"
BLIND = "query-blind (zero audio)"
METRICS = ("mIoU", "F-score")


def build_segmentation_world(out: Path, clips: dict, seed: int, frame_size: int) -> Path:
    """The synthetic segmentation shards of the config / seed / spec of :func:`build_world`'s world."""
    from hf_hdcid import HDCIDConfig
    from hf_hdcid.data.synthetic import SyntheticSpec
    from hf_hdcid.data.synthetic_segmentation import build_synthetic_segmentation_shards
    from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model

    folder = out / "segmentation_data"
    if (folder / "synthetic.json").exists():
        return folder
    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames,
                                     progress=False)
    config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    return Path(build_synthetic_segmentation_shards(folder, config, clips, seed=seed, text_extractor=extractor,
                                                    frame_size=frame_size,
                                                    spec=SyntheticSpec(num_classes=NUM_CLASSES), overwrite=True))


def encoder_job(job: dict) -> dict:
    """Pretrain / build one encoder (a pool worker)."""
    model_dir, seconds = prepare_encoder(job)
    return {"name": job["name"], "seed": job["seed"], "model_dir": str(model_dir), "pretrain_s": round(seconds, 1)}


def _zero_audio(collate):
    def wrapped(rows):
        batch = collate(rows)
        batch["audio"] = batch["audio"].new_zeros(batch["audio"].shape)  # [B, T, 128]: a constant query
        return batch
    return wrapped


def segmentation_job(job: dict) -> dict:
    """One evaluate_segmentation run (a pool worker) -> its compact record."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    from hf_hdcid.downstream.segmentation import evaluate_segmentation

    hf_logging.set_verbosity_error()
    data = job["data"]
    if job["name"] == BLIND:
        from hf_hdcid.data.shards import load_shards

        dataset, collate = load_shards(data)
        data = (dataset, _zero_audio(collate))
    r = evaluate_segmentation(job["model_dir"], "synthetic_avs", job["direction"], data, protocol=job["protocol"],
                              toc=job["toc"], seeds=[job["seed"]], epochs=job["epochs"],
                              batch_size=job["batch_size"], lr=job["lr"], max_train_clips=job["max_train_clips"],
                              model_name=job["name"])
    seed = r["per_seed"][0]
    return {"model": job["name"], "seed": job["seed"], "direction": job["direction"], "toc": r["toc"]["enabled"],
            "channels_per_layer": r["toc"]["channels_per_layer"], "protocol": job["protocol"],
            "clips": r["data"]["clips"], "epochs": r["epochs"], "batch_size": r["batch_size"], "lr": r["lr"],
            "metrics": {m: r["metrics"][m]["mean"] for m in METRICS}, "best_epoch": seed["best_epoch"],
            "val_curve": seed["curve"], "train_loss": seed["train_loss"], "time_s": r["time_s"]}


def _key(r: dict) -> tuple:
    return r["model"], r["seed"], r["direction"], r["toc"], r["protocol"]


def summarise(records: list[dict]) -> tuple[str, dict]:
    """Markdown table (rows model x protocol x TOC x direction, mean ± std over seeds, %) and its data."""
    order = [*MODELS, FLOOR, A2A, BLIND]
    lines = ["| model | protocol | TOC | direction | seeds | mIoU % | F-score % |", "|---|---|---|---|---|---|---|"]
    summary = {}
    for name in order:
        for protocol in ("heldout", "paper"):
            for toc in (False, True):
                for direction in ("a2t", "t2a", "a2a"):
                    mine = sorted((r for r in records if _key(r)[0] == name and r["protocol"] == protocol
                                   and r["toc"] == toc and r["direction"] == direction), key=lambda r: r["seed"])
                    if not mine:
                        continue
                    cells, stats = [], {}
                    for m in METRICS:
                        values = [r["metrics"][m] for r in mine]
                        mean = statistics.mean(values)
                        std = statistics.stdev(values) if len(values) > 1 else 0.0
                        stats[m] = {"mean": mean, "std": std, "values": values}
                        cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
                    key = f"{name} {protocol}{' +TOC' if toc else ''} {direction}"
                    summary[key] = {"model": name, "protocol": protocol, "toc": toc, "direction": direction,
                                    "seeds": [r["seed"] for r in mine],
                                    "channels_per_layer": mine[0]["channels_per_layer"], "metrics": stats}
                    toc_cell = f"on ({mine[0]['channels_per_layer'][0]} ch)" if toc else "off"
                    arrow = {"a2t": "A→T", "t2a": "T→A", "a2a": "A→A"}[direction]
                    lines.append(f"| {name} | {protocol} | {toc_cell} | {arrow} | {len(mine)} | " + " | ".join(cells)
                                 + " |")
    return "\n".join(lines) + "\n", summary


def _pool_map(fn, jobs, workers):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, workers), maxtasksperchild=1) as pool:
        yield from pool.imap_unordered(fn, jobs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/segmentation")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-floor", action="store_true", help="skip the untrained H-DCID floor")
    parser.add_argument("--directions", nargs="+", default=["a2t", "t2a"], choices=["a2t", "t2a"])
    parser.add_argument("--toc", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--references", nargs="*", default=["a2a", "blind"], choices=["a2a", "blind"])
    parser.add_argument("--paper-protocol", nargs="*", default=[], help="models also run with the paper protocol")
    # pretraining (the demo's recipe, as benchmarks/retrieval.py)
    parser.add_argument("--pretrain-epochs", type=int, default=16)
    parser.add_argument("--pretrain-batch-size", type=int, default=16)
    parser.add_argument("--pretrain-lr", type=float, default=DEMO_LR)
    parser.add_argument("--club-steps", type=int, default=2)
    parser.add_argument("--pretrain-clips", type=int, default=512)
    parser.add_argument("--world-seed", type=int, default=0)
    # segmentation (None: the synthetic_avs TaskSpec defaults)
    parser.add_argument("--train-clips", type=int, default=200)
    parser.add_argument("--val-clips", type=int, default=64)
    parser.add_argument("--test-clips", type=int, default=64)
    parser.add_argument("--frame-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--max-train-clips", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "issue18_segmentation.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = build_world(out, {"pretrain": args.pretrain_clips, "test": 64}, args.world_seed)
    seg = build_segmentation_world(out, {"train": args.train_clips, "val": args.val_clips, "test": args.test_clips},
                                   args.world_seed, args.frame_size)
    print(f"worlds in {out} ({time.perf_counter() - started:.0f} s)", flush=True)

    # 1. encoders
    encoders_path = out / "encoders.jsonl"
    encoders = {}
    if encoders_path.exists():
        for line in encoders_path.read_text().splitlines():
            e = json.loads(line)
            encoders[(e["name"], e["seed"])] = e
    names = [*args.models] + ([] if args.no_floor else [FLOOR])
    jobs = []
    for name in names:
        for seed in args.seeds:
            if (name, seed) in encoders:
                continue
            trained = name != FLOOR
            jobs.append({"name": name, "model": name if trained else "H-DCID", "seed": seed, "trained": trained,
                         "data": str(data), "work": str(out / "runs" / f"{name.replace(' ', '_')}-{seed}"),
                         "epochs": args.pretrain_epochs, "batch_size": args.pretrain_batch_size,
                         "lr": args.pretrain_lr, "club_steps": args.club_steps})
    print(f"{len(jobs)} encoders to build", flush=True)
    if jobs:
        with encoders_path.open("a") as sink:
            for e in _pool_map(encoder_job, jobs, args.jobs):
                encoders[(e["name"], e["seed"])] = e
                sink.write(json.dumps(e) + "\n")
                sink.flush()
                print(f"  {e['name']} seed {e['seed']}: {e['pretrain_s']:.0f} s", flush=True)
    pretrain_s = sum(e["pretrain_s"] for e in encoders.values())

    # 2. segmentation runs
    records_path = out / "records.jsonl"
    records = [json.loads(line) for line in records_path.read_text().splitlines()] if records_path.exists() else []
    done = {_key(r) for r in records}
    common = {"data": str(seg), "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "max_train_clips": args.max_train_clips}
    jobs = []
    for seed in args.seeds:
        for name in names:
            for protocol in ["heldout"] + (["paper"] if name in args.paper_protocol else []):
                for toc in args.toc:
                    for direction in args.directions:
                        job = {**common, "name": name, "seed": seed, "direction": direction, "toc": toc == "on",
                               "protocol": protocol, "model_dir": encoders[(name, seed)]["model_dir"]}
                        if _key({**job, "model": name}) not in done:
                            jobs.append(job)
        reference_dir = encoders[(names[0], seed)]["model_dir"]  # unused by the raw-audio query
        for ref in args.references:
            name = A2A if ref == "a2a" else BLIND
            job = {**common, "name": name, "seed": seed, "direction": "a2a", "toc": False, "protocol": "heldout",
                   "model_dir": reference_dir}
            if _key({**job, "model": name}) not in done:
                jobs.append(job)
    print(f"{len(jobs)} segmentation runs ({len(done)} recorded)", flush=True)
    seg_started = time.perf_counter()
    if jobs:
        with records_path.open("a") as sink:
            for r in _pool_map(segmentation_job, jobs, args.jobs):
                records.append(r)
                sink.write(json.dumps(r) + "\n")
                sink.flush()
                print(f"  {r['model']} seed {r['seed']} {r['protocol']} {'TOC ' if r['toc'] else ''}{r['direction']}: "
                      f"mIoU {100 * r['metrics']['mIoU']:.1f} F {100 * r['metrics']['F-score']:.1f} "
                      f"(best epoch {r['best_epoch']}, {r['time_s']:.0f} s)", flush=True)
    table, summary = summarise(records)
    (out / "segmentation.md").write_text(table)
    result = {"command": "python benchmarks/segmentation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "settings": vars(args), "num_classes": NUM_CLASSES, "clips": records[0]["clips"] if records else None,
              "segmenter": {"epochs": records[0]["epochs"], "batch_size": records[0]["batch_size"],
                            "lr": records[0]["lr"]} if records else None,
              "cpu": platform.processor() or platform.machine(), "pretrain_s_total": round(pretrain_s, 1),
              "segmentation_wall_s": round(time.perf_counter() - seg_started, 1),
              "elapsed_s": round(time.perf_counter() - started, 1), "table": table, "rows": summary}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=2) + "\n")
    print(table)
    print(f"wrote {out / 'segmentation.md'} and {args.results} ({result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
