"""The layout of the paper's Table 2 (quantizer x DCID / H-DCID) on the synthetic benchmark.

For every quantizer (VQ = the multimodal EMA codebook, RVQ with 1..4 stages, FSQ, FDT) and every model
(DCID: 1 layer, H-DCID: 2 layers) this script pretrains a tiny model on the synthetic
audio-visual(-text) benchmark with :func:`hf_hdcid.training.pretrain`, then scores its frozen codes:

* cross-modal: :func:`hf_hdcid.downstream.evaluate_downstream` on ``synthetic_ave`` (heldout
  protocol), V->A and A->V (probe trained on one modality's codes, tested on the other's);
* same modality (the paper's grey rows, "evaluation results of the labeled modality"): the same
  probe, rows and selection, tested on the training modality's own test codes (V->V, A->A).

Writes ``quantizer_table.md`` and ``quantizer_table.json`` to ``--output-dir``::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/quantizer_table.py --output-dir outputs/quantizer_table

Scores are accuracies (%) on the synthetic test clips, mean over probe seeds. Small defaults (tiny
preset, few epochs) so that a CPU run takes minutes; ``--quantizers rvq1 rvq2 rvq3 rvq4`` gives the
paper's RVQ rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


from hf_hdcid import HDCIDConfig
from hf_hdcid.data.shards import load_shards
from hf_hdcid.data.synthetic import SyntheticSpec, build_synthetic_shards
from hf_hdcid.downstream import evaluate_downstream, extract_codes, get_task, train_probe
from hf_hdcid.downstream.runner import load_encoder, resolve_layers, resolve_rows, score
from hf_hdcid.downstream.tasks import get_direction, main_metric
from hf_hdcid.training.loop import PretrainConfig, pretrain

# name -> (row label, HDCIDConfig overrides)
QUANTIZERS = {
    "vq": ("VQ (MM-EMA)", {}),
    **{f"rvq{n}": (f"RVQ-{n}", {"quantizer": "rvq", "num_quantizers": n}) for n in (1, 2, 3, 4)},
    "fsq": ("FSQ [8,5,5,5]", {"quantizer": "fsq", "use_cmcm": False}),
    "fdt": ("FDT", {"quantizer": "fdt"}),
}
MODELS = (("DCID", 1), ("H-DCID", 2))
DIRECTIONS = ("v2a", "a2v")
TASK = "synthetic_ave"


def same_modality_score(model_dir, data_dir, direction: str, seeds, epochs=None) -> float:
    """Accuracy (%) of the cross-modal run's probe recipe tested on the training modality itself."""
    spec = get_task(TASK)
    modality = get_direction(direction)[0]
    encoder = load_encoder(str(model_dir))
    layers = resolve_layers(encoder.config, "both")
    channels = [None for _ in layers]
    ds, collate = load_shards(data_dir)
    rows = resolve_rows(spec, "heldout", ds, ds)

    def codes(split):
        return extract_codes(encoder, ds.select(rows[split].tolist()), collate, modality, layers, channels, spec.kind)

    train, val, test = codes("train"), codes("val"), codes("test")
    values = []
    for seed in seeds:
        best = train_probe(spec, "heldout", train, val, test, epochs=epochs or spec.epochs,
                           batch_size=spec.batch_size, lr=spec.lr, seed=seed)
        values.append(score(spec, "heldout", *best["test_outputs"])[main_metric(spec, "heldout")])
    return 100.0 * statistics.fmean(values)


def build_data(out: Path, modalities: list[str], clips: dict, seed: int) -> Path:
    extractor = None
    data_config = HDCIDConfig.tiny(modalities=modalities)
    if "text" in modalities:
        from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model

        extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=data_config.num_frames,
                                         progress=False)
        data_config = HDCIDConfig.tiny(modalities=modalities, text_feature_dim=extractor.hidden_size)
    return build_synthetic_shards(out / "synthetic_avt", data_config, clips, seed=seed, text_extractor=extractor,
                                  spec=SyntheticSpec(num_classes=10), overwrite=True)


def markdown(rows: list[dict], modalities: list[str]) -> str:
    lines = ["| quantizer | model | V->A | A->V | Avg. | V->V (labelled) | A->A (labelled) | Avg. (labelled) | "
             "active codes L1 (last batch) | pretrain s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c, s = r["cross"], r["same"]
        lines.append(f"| {r['label']} | {r['model']} | {c['v2a']:.1f} | {c['a2v']:.1f} | "
                     f"{statistics.fmean(c.values()):.1f} | {s['v2a']:.1f} | {s['a2v']:.1f} | "
                     f"{statistics.fmean(s.values()):.1f} | {r['active_codes']} | {r['pretrain_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="outputs/quantizer_table")
    parser.add_argument("--quantizers", nargs="+", default=["vq", "rvq2", "fsq", "fdt"], choices=list(QUANTIZERS))
    parser.add_argument("--modalities", nargs="+", default=["audio", "video", "text"])
    parser.add_argument("--epochs", type=int, default=10, help="pretraining epochs")
    parser.add_argument("--pretrain-clips", type=int, default=512)
    parser.add_argument("--labelled-clips", type=int, default=256, help="train and test clips each")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--club-steps", type=int, default=1)
    parser.add_argument("--probe-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--probe-epochs", type=int, default=None, help="default: the task's (40)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    out = Path(args.output_dir)
    clips = {"pretrain": args.pretrain_clips, "train": args.labelled_clips, "test": args.labelled_clips}
    data_dir = build_data(out, args.modalities, clips, args.seed)
    print(f"data: {clips} -> {data_dir}", flush=True)
    rows = []
    for key in args.quantizers:
        label, overrides = QUANTIZERS[key]
        for model_name, num_layers in MODELS:
            run_dir = out / f"{key}_{model_name.lower().replace('-', '')}"
            cfg = PretrainConfig(
                data=str(data_dir), preset="tiny", epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
                club_steps=args.club_steps, seed=args.seed, output_dir=str(run_dir), save_every_steps=0,
                progress=False, toc_num_channels=0,
                model_config={"num_layers": num_layers, "warm_start_epoch": max(1, args.epochs // 2),
                              "modalities": list(args.modalities), **overrides})
            t0 = time.perf_counter()
            model_dir = pretrain(cfg)
            pretrain_s = time.perf_counter() - t0
            info_path = Path(model_dir) / "training_info.json"
            info = json.loads(info_path.read_text()) if info_path.exists() else {}
            final = info.get("final_metrics", {})
            cross, same = {}, {}
            for direction in DIRECTIONS:
                record = evaluate_downstream(str(model_dir), TASK, direction, str(data_dir), protocol="heldout",
                                             seeds=list(args.probe_seeds), epochs=args.probe_epochs,
                                             model_name=f"{model_name} {label}")
                cross[direction] = 100.0 * record["score"]["mean"]
                same[direction] = same_modality_score(model_dir, data_dir, direction, args.probe_seeds,
                                                      args.probe_epochs)
            row = {"quantizer": key, "label": label, "model": model_name, "num_layers": num_layers,
                   "cross": cross, "same": same, "active_codes": final.get("active_codes/layer1", "-"),
                   "pretrain_s": pretrain_s, "final_loss": final.get("loss")}
            if isinstance(row["active_codes"], float):
                row["active_codes"] = int(row["active_codes"])
            rows.append(row)
            print(f"{label:>14} {model_name:>6}: cross V->A {cross['v2a']:.1f} A->V {cross['a2v']:.1f} | "
                  f"same V->V {same['v2a']:.1f} A->A {same['a2v']:.1f} | pretrain {pretrain_s:.0f} s", flush=True)
    table = markdown(rows, args.modalities)
    result = {"args": vars(args), "data": str(data_dir), "rows": rows, "time_s": time.perf_counter() - started}
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantizer_table.md").write_text(table)
    (out / "quantizer_table.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table)
    print(f"wrote {out / 'quantizer_table.md'} in {result['time_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
