"""Cross-modal retrieval on the synthetic benchmark (issue 18): pretrained tiny DCID / H-DCID vs an
untrained encoder, TOC off / on, directions A->V, V->A, A->T, T->A.

1. writes the synthetic audio-visual-text world of the demo (tiny dimensions, 10 event classes,
   prompts embedded by the offline MiniLM): ``--pretrain-clips`` unlabelled clips and
   ``--test-clips`` labelled test clips;
2. for every pretraining seed pretrains DCID (1 layer) and H-DCID (2 layers, layer 2 from epoch
   epochs/2) with the demo's recipe (:func:`hf_hdcid.training.pretrain`, tiny preset, batch 16, lr
   ``hf_hdcid.demo.DEMO_LR``, 2 CLUB steps; TOC 8 of 16 channels stored by the loop), and builds an
   untrained H-DCID of the same seed (input statistics of the pretraining clips, TOC computed on its
   random codebook) as the floor;
3. scores every model on the test clips with :func:`hf_hdcid.downstream.retrieval.evaluate_retrieval`
   (pooled unified codes, cosine similarity, same class = relevant; both layers) for every direction
   and TOC setting;
4. writes one JSON line per (model, seed, TOC, direction) to ``OUT/records.jsonl`` and the table of
   means ± std over the seeds (Recall@1/5/10, median rank, mAP) to ``OUT/retrieval.md`` and
   ``benchmarks/results/issue18_retrieval.json``.

Usage (the BENCHMARKS.md table)::

    .venv/bin/python benchmarks/retrieval.py --out outputs/retrieval --seeds 0 1 2 --jobs 2
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

from hf_hdcid.demo import DEMO_LR, NUM_CLASSES

MODELS = {"DCID": 1, "H-DCID": 2}
DIRECTIONS = ("a2v", "v2a", "a2t", "t2a")
METRICS = ("recall@1", "recall@5", "recall@10", "median_rank", "mAP")
REPO = Path(__file__).resolve().parent.parent


def build_world(out: Path, clips: dict, seed: int) -> Path:
    from hf_hdcid import HDCIDConfig
    from hf_hdcid.data.synthetic import SyntheticSpec, build_synthetic_shards
    from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model

    folder = out / "data"
    if (folder / "synthetic.json").exists():
        return folder
    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames,
                                     progress=False)
    config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    return Path(build_synthetic_shards(folder, config, clips, seed=seed, text_extractor=extractor,
                                       spec=SyntheticSpec(num_classes=NUM_CLASSES), overwrite=True))


def prepare_encoder(job: dict) -> tuple[Path, float]:
    """Pretrain (``job["trained"]``) or build untrained the (model, seed) encoder of ``job`` in
    ``job["work"]``; returns (its model folder, seconds). Also used by benchmarks/segmentation.py."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
    from hf_hdcid.data.shards import load_shards
    from hf_hdcid.training.loop import PretrainConfig, feature_statistics, pretrain

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    data, work = Path(job["data"]), Path(job["work"])
    num_layers = MODELS[job["model"]]
    if job["trained"]:
        cfg = PretrainConfig(data=str(data), preset="tiny", epochs=job["epochs"], batch_size=job["batch_size"],
                             lr=job["lr"], club_steps=job["club_steps"], seed=job["seed"], output_dir=str(work),
                             save_every_steps=0, progress=False, plot=False, report_to="none",
                             model_config={"num_layers": num_layers, "warm_start_epoch": max(1, job["epochs"] // 2)})
        model_dir = Path(pretrain(cfg))
    else:
        info = json.loads((data / "synthetic.json").read_text())
        torch.manual_seed(job["seed"])
        config = HDCIDConfig.tiny(text_feature_dim=info["config"]["text_feature_dim"], num_layers=num_layers)
        ds, collate = load_shards(data, config, split="pretrain")
        config.input_normalization = feature_statistics(ds, collate, config)  # the inputs the trained ones see
        model = HDCIDForPreTraining(config).eval()
        model.compute_toc(num_channels=config.hidden_size // 2)
        model_dir = work / "model"
        model.save_pretrained(model_dir)
    return model_dir, time.perf_counter() - started


def run_one(job: dict) -> list[dict]:
    """One (model, seed, trained / untrained) encoder -> its retrieval records (TOC off / on x directions)."""
    from hf_hdcid.downstream.codes import CodeCache
    from hf_hdcid.downstream.retrieval import evaluate_retrieval

    data = Path(job["data"])
    model_dir, pretrain_s = prepare_encoder(job)
    name = job["model"] if job["trained"] else f"untrained {job['model']}"
    cache, out = CodeCache(), []
    from hf_hdcid.downstream.runner import load_encoder

    encoder = load_encoder(model_dir)
    for toc in (False, True):
        for direction in job["directions"]:
            r = evaluate_retrieval(encoder, direction, data, toc=toc, cache=cache, model_name=name)
            out.append({"model": name, "seed": job["seed"], "trained": job["trained"], "toc": toc,
                        "channels_per_layer": r["toc"]["channels_per_layer"], "direction": direction,
                        "clips": r["data"]["clips"]["test"], "split": r["data"]["split"],
                        "chance_recall@1": r["chance_recall@1"],
                        "metrics": {m: r["metrics"][m]["mean"] for m in METRICS},
                        "pretrain_s": round(pretrain_s, 1)})
    return out


def summarise(records: list[dict]) -> tuple[str, dict]:
    """Markdown table (rows model x TOC x direction, mean ± std over seeds) and its data."""
    from hf_hdcid.downstream.report import ARROWS

    order = [n for m in MODELS for n in (m,)] + [f"untrained {m}" for m in MODELS]
    rows, summary = [], {}
    lines = ["| model | TOC | direction | seeds | R@1 % | R@5 % | R@10 % | median rank | mAP % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in order:
        for toc in (False, True):
            for direction in DIRECTIONS:
                mine = [r for r in records if r["model"] == name and r["toc"] == toc and r["direction"] == direction]
                if not mine:
                    continue
                cells, stats = [], {}
                for m in METRICS:
                    values = [r["metrics"][m] for r in mine]
                    mean = statistics.mean(values)
                    std = statistics.stdev(values) if len(values) > 1 else 0.0
                    stats[m] = {"mean": mean, "std": std, "values": values}
                    scale = 1 if m == "median_rank" else 100
                    cells.append(f"{scale * mean:.1f} ± {scale * std:.1f}")
                key = f"{name}{'+TOC' if toc else ''} {direction}"
                summary[key] = {"model": name, "toc": toc, "direction": direction, "seeds": [r["seed"] for r in mine],
                                "channels_per_layer": mine[0]["channels_per_layer"], "metrics": stats}
                lines.append(f"| {name} | {'on (' + str(mine[0]['channels_per_layer'][0]) + ' ch)' if toc else 'off'} | "
                             f"{ARROWS[direction]} | {len(mine)} | " + " | ".join(cells) + " |")
                rows.append(key)
    return "\n".join(lines) + "\n", summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/retrieval")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--directions", nargs="+", default=list(DIRECTIONS), choices=list(DIRECTIONS))
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=DEMO_LR)
    parser.add_argument("--club-steps", type=int, default=2)
    parser.add_argument("--pretrain-clips", type=int, default=512)
    parser.add_argument("--test-clips", type=int, default=256)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "issue18_retrieval.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = build_world(out, {"pretrain": args.pretrain_clips, "test": args.test_clips}, args.world_seed)
    records_path = out / "records.jsonl"
    records = [json.loads(line) for line in records_path.read_text().splitlines()] if records_path.exists() else []
    done = {(r["model"], r["seed"]) for r in records}
    jobs = []
    for model in args.models:
        for seed in args.seeds:
            for trained in (True, False):
                name = model if trained else f"untrained {model}"
                if (name, seed) in done or (not trained and model != "H-DCID"):
                    continue  # the floor: an untrained H-DCID per seed
                jobs.append({"model": model, "seed": seed, "trained": trained, "data": str(data),
                             "work": str(out / "runs" / f"{name.replace(' ', '_')}-{seed}"), "epochs": args.epochs,
                             "batch_size": args.batch_size, "lr": args.lr, "club_steps": args.club_steps,
                             "directions": list(args.directions)})
    print(f"{len(jobs)} encoders to score ({len(done)} recorded) in {out}", flush=True)
    if jobs:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(max(1, args.jobs), maxtasksperchild=1) as pool, records_path.open("a") as sink:
            for batch in pool.imap_unordered(run_one, jobs):
                for record in batch:
                    sink.write(json.dumps(record) + "\n")
                records.extend(batch)
                sink.flush()
                r = batch[0]
                print(f"  {r['model']} seed {r['seed']}: a2v mAP {100 * r['metrics']['mAP']:.1f} % "
                      f"(pretraining {r['pretrain_s']:.0f} s)", flush=True)
    table, summary = summarise(records)
    chance = statistics.mean(r["chance_recall@1"] for r in records)
    (out / "retrieval.md").write_text(table)
    result = {"command": "python benchmarks/retrieval.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "settings": vars(args), "num_classes": NUM_CLASSES, "test_clips": records[0]["clips"],
              "chance_recall@1": chance, "cpu": platform.processor() or platform.machine(),
              "elapsed_s": round(time.perf_counter() - started, 1), "table": table, "rows": summary}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=2) + "\n")
    print(table)
    print(f"chance recall@1 {100 * chance:.1f} %; wrote {out / 'retrieval.md'} and {args.results} "
          f"({result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
