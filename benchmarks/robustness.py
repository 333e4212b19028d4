"""Robustness of the pretraining recipe to imperfect audio-visual data (issue 14).

For every setting of a sweep over the :class:`SyntheticSpec` knobs (offsets, distractors, heavy-tailed
nuisance, smearing, compositional classes, non-linearity, blob video) this script

1. writes the world as feature shards (tiny dimensions, MiniLM text prompts, the demo's split sizes
   unless told otherwise: ``--pretrain-clips`` unlabelled, 256 train, 256 test clips);
2. pretrains DCID (1 layer) and H-DCID (2 layers, layer 2 from epoch epochs/2) with the demo's recipe
   (:func:`hf_hdcid.training.pretrain`, tiny preset, 16 epochs, batch 16, lr ``hf_hdcid.demo.DEMO_LR``
   = 3e-3, 2 CLUB steps) for
   every pretraining seed;
3. measures on the test clips the a-v and a-t code agreement (fraction of (clip, second) positions
   with the same code), and runs the cross-modal benchmarks of :mod:`hf_hdcid.downstream` (heldout
   protocol: probe epoch chosen on held-out clips of the *training* modality; synthetic_ave mean of
   V->A and A->V accuracy, synthetic_avvp mean F1; no TOC);
4. the same for an untrained encoder per seed (the floor), and a linear probe on the raw mean-pooled
   features of ONE modality (audio, video; epoch chosen on held-out train clips) as the ceiling of what
   the features hold about the class.

Results go to ``OUT/records.jsonl`` (one line per run; reruns skip what is there), ``OUT/robustness_TAG.md``
and ``OUT/robustness_TAG.png``. Runs are spread over ``--jobs`` processes of one torch thread each.

Usage (the BENCHMARKS.md sweep of today's defaults: standardised inputs, no cross commitment, lr 3e-3)::

    .venv/bin/python benchmarks/robustness.py --out outputs/robustness --seeds 0 1 2 --jobs 2

The recipe before issue 14 (raw inputs, the original's cross-modal commitment terms, lr 1e-3)::

    .venv/bin/python benchmarks/robustness.py --out outputs/robustness --tag before --no-normalize-inputs \
        --lr 1e-3 --model-config '{"commitment_cross_weight": 1.0}'

``--model-config`` overrides model options for an ablation (name it with ``--tag``); ``--settings``
picks settings by name, ``--models`` the models, ``--no-floor`` skips the untrained encoders.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from hf_hdcid.data.synthetic import ROBUSTNESS_SETTINGS as SETTINGS  # name -> SyntheticSpec overrides
from hf_hdcid.demo import DEMO_LR  # the tiny recipe's learning rate

MODELS = {"dcid": 1, "hdcid": 2}


def spec_for(setting: str):
    from hf_hdcid.data.synthetic import robustness_spec

    return robustness_spec(setting)


def build_world(setting: str, out: Path, clips: dict, world_seed: int) -> Path:
    """The setting's shard folder (built once; a finished folder has ``synthetic.json``)."""
    from hf_hdcid import HDCIDConfig
    from hf_hdcid.data.synthetic import build_synthetic_shards
    from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model

    folder = out / "data" / setting
    if (folder / "synthetic.json").exists():
        return folder
    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames,
                                     progress=False)
    config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    return Path(build_synthetic_shards(folder, config, clips, seed=world_seed, text_extractor=extractor,
                                       spec=spec_for(setting), overwrite=True))


def code_agreement(encoder, batch: dict) -> dict:
    """Per pair and layer the fraction of positions where the two modalities share a code (the demo's)."""
    from hf_hdcid.demo import code_agreement as pair_agreement

    return {f"audio-{other}": pair_agreement(encoder, batch, "audio", other)
            for other in ("video", "text") if other in encoder.config.modalities}


def code_usage(encoder, batch: dict) -> dict:
    """Distinct codes used per modality and layer on the test clips (collapse diagnostic)."""
    import torch

    with torch.no_grad():
        return {m: [int(i.unique().numel()) for i in encoder.encode(m, batch[m]).indices]
                for m in encoder.config.modalities}


def downstream(model_dir: Path, data: Path, work: Path, name: str, probe_seeds) -> dict:
    from hf_hdcid.downstream.grid import run_grid

    grid = run_grid([model_dir], ("synthetic_ave", "synthetic_avvp"), data, toc="off", protocol="heldout",
                    seeds=list(probe_seeds), out_dir=work / "downstream", model_names=[name], progress=False)
    scores = {}
    for r in grid["records"]:
        scores[f"{r['task']}/{r['direction']}"] = r["score"]["mean"]
    return {
        "ave": statistics.mean(scores[f"synthetic_ave/{d}"] for d in ("v2a", "a2v")),
        "avvp": statistics.mean(scores[f"synthetic_avvp/{d}"] for d in ("v2a", "a2v")),
        "per_direction": scores,
    }


def linear_probe_accuracy(x_train, y_train, tests, seed: int = 0, epochs: int = 300) -> list[float]:
    """A linear probe on standardised features (full-batch Adam, lr 1e-2), its epoch chosen on 20 % of
    the training rows held out; returns the accuracy on every (x, y) of ``tests`` at that epoch."""
    import torch

    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train = (x_train - mean) / std
    tests = [((x - mean) / std, y) for x, y in tests]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x_train), generator=g)
    n_val = len(x_train) // 5
    val, fit = perm[:n_val], perm[n_val:]
    num_classes = int(max([int(y_train.max())] + [int(y.max()) for _, y in tests])) + 1
    torch.manual_seed(seed)
    probe = torch.nn.Linear(x_train.shape[1], num_classes)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    best_val, best = -1.0, [0.0] * len(tests)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(probe(x_train[fit]), y_train[fit]).backward()
        opt.step()
        with torch.no_grad():
            v = float((probe(x_train[val]).argmax(-1) == y_train[val]).float().mean())
            if v > best_val:
                best_val = v
                best = [float((probe(x).argmax(-1) == y).float().mean()) for x, y in tests]
    return best


def raw_feature_ceiling(data: Path, seed: int = 0, epochs: int = 300) -> dict:
    """Accuracy of a linear probe on the mean-pooled raw features of one modality (train -> test
    split, epoch chosen on 20 % held-out train clips)."""
    from hf_hdcid import HDCIDConfig
    from hf_hdcid.data.shards import load_shards

    config = HDCIDConfig.from_dict(json.loads((data / "synthetic.json").read_text())["config"])
    split = {}
    for name in ("train", "test"):
        ds, collate = load_shards(data, config, split=name)
        split[name] = collate(ds[:])

    def pooled(batch, m):  # [N, A] / [N, C]
        x = batch[m].float()
        return x.mean(1) if m == "audio" else x.mean(dim=(1, 2, 3))

    return {m: linear_probe_accuracy(pooled(split["train"], m), split["train"]["label"].long(),
                                     [(pooled(split["test"], m), split["test"]["label"].long())], seed, epochs)[0]
            for m in ("audio", "video")}


def run_one(job: dict) -> dict:
    """One (setting, model, seed, trained/untrained) run -> its record."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
    from hf_hdcid.data.shards import load_shards
    from hf_hdcid.training.loop import PretrainConfig, pretrain

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    data, work = Path(job["data"]), Path(job["work"])
    num_layers = MODELS[job["model"]]
    info = json.loads((data / "synthetic.json").read_text())
    if job["trained"]:
        warm = max(1, job["epochs"] // 2)
        cfg = PretrainConfig(data=str(data), preset="tiny", epochs=job["epochs"], batch_size=job["batch_size"],
                             lr=job["lr"], club_steps=job["club_steps"], seed=job["seed"], output_dir=str(work),
                             save_every_steps=0, progress=False, plot=False, report_to="none",
                             normalize_inputs=job["normalize_inputs"],
                             club_update_order=job.get("club_update_order", "before_main"),
                             model_config={"num_layers": num_layers, "warm_start_epoch": warm,
                                           **job["model_config"]})
        model_dir = Path(pretrain(cfg))
        encoder = AutoModel.from_pretrained(model_dir).eval()
    else:
        torch.manual_seed(job["seed"])
        config = HDCIDConfig.tiny(text_feature_dim=info["config"]["text_feature_dim"], num_layers=num_layers,
                                  **job["model_config"])
        if job["normalize_inputs"]:  # the floor of a normalised variant sees the same (standardised) inputs
            from hf_hdcid.training.loop import feature_statistics

            pretrain_split, pretrain_collate = load_shards(data, config, split="pretrain")
            config.input_normalization = feature_statistics(pretrain_split, pretrain_collate, config)
        model = HDCIDForPreTraining(config).eval()
        model.compute_toc(num_channels=config.hidden_size // 2)
        model_dir = work / "model"
        model.save_pretrained(model_dir)
        encoder = AutoModel.from_pretrained(model_dir).eval()
    test, collate = load_shards(data, encoder.config, split="test")
    batch = collate(test[:])
    record = {k: job[k] for k in ("setting", "model", "seed", "trained", "tag", "model_config")}
    record["agreement"] = code_agreement(encoder, batch)
    record["codes_used"] = code_usage(encoder, batch)
    record.update(downstream(model_dir, data, work, f"{job['model']}-{job['seed']}", job["probe_seeds"]))
    record["time_s"] = round(time.perf_counter() - started, 1)
    return record


def summarise(records: list[dict], ceilings: dict, settings, tag: str) -> str:
    """Markdown table: per setting and model, means ± std over seeds, trained vs untrained."""
    def stats(values):
        values = list(values)
        if not values:
            return float("nan"), float("nan")
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    lines = [f"Sweep `{tag}`: mean ± std over pretraining seeds; untrained encoder (same seeds) in brackets; "
             "AVE = synthetic_ave mean of V->A and A->V accuracy, AVVP = synthetic_avvp mean F1 (heldout, no TOC).",
             "",
             "| setting | ceiling audio / video | chance | model | seeds | a-v agreement L1 | a-t agreement L1 | "
             "a-v L2 | AVE % | AVVP F1 % | target met |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for setting in settings:
        ceil = ceilings.get(setting, {})
        chance = 1 / spec_for(setting).num_classes
        for model in MODELS:
            mine = [r for r in records if r["setting"] == setting and r["model"] == model and r["tag"] == tag]
            trained = [r for r in mine if r["trained"]]
            floor = [r for r in mine if not r["trained"]]
            if not trained:
                continue

            def cell(key, scale=1.0, fmt="{:.3f}", rows=trained, layer=0):
                def get(r):
                    if key in ("ave", "avvp"):
                        return r[key] * scale
                    pair = r["agreement"].get(key)
                    return pair[layer] if pair and len(pair) > layer else None

                got = [v for v in map(get, rows) if v is not None]
                if not got:
                    return "—", None
                m, s = stats(got)
                return (fmt.format(m) + " ± " + fmt.format(s)), m

            av, _ = cell("audio-video")
            at, _ = cell("audio-text")
            av2, _ = cell("audio-video", layer=1)
            ave, ave_m = cell("ave", 100, "{:.1f}")
            avvp, _ = cell("avvp", 100, "{:.1f}")
            f_av, _ = cell("audio-video", rows=floor)
            f_at, _ = cell("audio-text", rows=floor)
            f_ave, f_ave_m = cell("ave", 100, "{:.1f}", rows=floor)
            f_avvp, _ = cell("avvp", 100, "{:.1f}", rows=floor)
            ceiling = max(ceil.values()) if ceil else float("nan")
            if ceil and ceiling >= 0.25 and f_ave_m is not None:
                met = "yes" if ave_m >= 200 * chance and ave_m >= f_ave_m + 8 else "no"
            else:
                met = "n/a (ceiling < 25 %)" if ceil else "?"
            ceil_txt = " / ".join(f"{100 * ceil[m]:.1f}" for m in ("audio", "video")) if ceil else "?"
            lines.append(f"| {setting} | {ceil_txt} | {100 * chance:.1f} | {model.upper().replace('HDCID', 'H-DCID')} | "
                         f"{len(trained)} | {av} ({f_av.split(' ')[0]}) | {at} ({f_at.split(' ')[0]}) | {av2} | "
                         f"{ave} ({f_ave.split(' ')[0]}) | {avvp} ({f_avvp.split(' ')[0]}) | {met} |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], ceilings: dict, settings, tag: str, path: Path) -> None:
    from hf_hdcid.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.2
    xs = range(len(settings))
    for j, model in enumerate(MODELS):
        for trained, shade in ((True, 1.0), (False, 0.35)):
            for ax, key, scale in ((axes[0], "ave", 100), (axes[1], "agree", 1)):
                means, errs = [], []
                for setting in settings:
                    rows = [r for r in records if r["setting"] == setting and r["model"] == model
                            and r["trained"] == trained and r["tag"] == tag]
                    vals = [r["ave"] * scale if key == "ave" else r["agreement"]["audio-video"][0] for r in rows]
                    means.append(statistics.mean(vals) if vals else float("nan"))
                    errs.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
                offset = (2 * j + (0 if trained else 1) - 1.5) * width
                ax.bar([x + offset for x in xs], means, width, yerr=errs, alpha=shade, color=f"C{j}",
                       label=f"{model.upper()}{'' if trained else ' untrained'}")
    for setting_index, setting in enumerate(settings):
        ceil = ceilings.get(setting)
        if ceil:
            axes[0].plot([setting_index - 0.45, setting_index + 0.45], [100 * max(ceil.values())] * 2, "k--", lw=1)
        axes[0].plot([setting_index - 0.45, setting_index + 0.45], [100 / spec_for(setting).num_classes] * 2, "r:", lw=1)
    axes[0].set_ylabel("synthetic_ave cross-modal accuracy (%)\n(dashed: raw single-modality ceiling, dotted: chance)")
    axes[1].set_ylabel("a-v code agreement, layer 1")
    for ax in axes:
        ax.set_xticks(list(xs))
        ax.set_xticklabels(settings, rotation=30, ha="right")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Robustness sweep ({tag})")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/robustness")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--probe-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=DEMO_LR, help="pretraining learning rate (default: the demo's)")
    parser.add_argument("--club-steps", type=int, default=2)
    parser.add_argument("--pretrain-clips", type=int, default=768)
    parser.add_argument("--labelled-clips", type=int, default=256)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--model-config", default="{}", help="JSON of model option overrides (an ablation)")
    parser.add_argument("--tag", default="defaults", help="name of this variant in records and tables")
    parser.add_argument("--no-floor", action="store_true", help="skip the untrained encoders")
    parser.add_argument("--normalize-inputs", action=argparse.BooleanOptionalAction, default=True,
                        help="pretrain with input standardisation (the default; --no-normalize-inputs: raw features)")
    parser.add_argument("--club-update-order", choices=("before_main", "after_main"), default="before_main",
                        help="PretrainConfig.club_update_order (issue 15: the two orders of the CLUB update)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_config = json.loads(args.model_config)
    clips = {"pretrain": args.pretrain_clips, "train": args.labelled_clips, "test": args.labelled_clips}
    records_path = out / "records.jsonl"
    records = [json.loads(line) for line in records_path.read_text().splitlines()] if records_path.exists() else []
    ceilings_path = out / "ceilings.json"
    ceilings = json.loads(ceilings_path.read_text()) if ceilings_path.exists() else {}
    # the floor: untrained encoders of the same inputs (standardised ones unless --no-normalize-inputs)
    floor_tag = "untrained_norm" if args.normalize_inputs else "untrained"
    jobs = []
    for setting in args.settings:
        data = build_world(setting, out, clips, args.world_seed)
        if setting not in ceilings:
            ceilings[setting] = raw_feature_ceiling(data)
            ceilings_path.write_text(json.dumps(ceilings, indent=2))
        for model in args.models:
            for seed in args.seeds:
                for trained in ([True] if args.no_floor else [True, False]):
                    tag = args.tag if trained else floor_tag
                    key = (setting, model, seed, trained, tag)
                    if any((r["setting"], r["model"], r["seed"], r["trained"], r["tag"]) == key for r in records):
                        continue
                    jobs.append({"setting": setting, "model": model, "seed": seed, "trained": trained, "tag": tag,
                                 "data": str(data), "work": str(out / "runs" / tag / setting / f"{model}-{seed}"
                                                               / ("trained" if trained else "untrained")),
                                 "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                                 "club_steps": args.club_steps, "probe_seeds": args.probe_seeds,
                                 "normalize_inputs": args.normalize_inputs,
                                 "club_update_order": args.club_update_order,
                                 "model_config": model_config if trained else {}})
    print(f"{len(jobs)} runs to do ({len(records)} recorded) in {out}", flush=True)
    if jobs:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(max(1, args.jobs), maxtasksperchild=1) as pool, records_path.open("a") as sink:
            for record in pool.imap_unordered(run_one, jobs):
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                records.append(record)
                print(f"  {record['tag']} {record['setting']} {record['model']} seed {record['seed']}: "
                      f"a-v {record['agreement']['audio-video'][0]:.3f} AVE {100 * record['ave']:.1f} "
                      f"AVVP {100 * record['avvp']:.1f} ({record['time_s']:.0f} s)", flush=True)
    floor_tagged = [dict(r, tag=args.tag) for r in records if not r["trained"] and r["tag"] == floor_tag]
    table = summarise([r for r in records if r["trained"]] + floor_tagged, ceilings, args.settings, args.tag)
    (out / f"robustness_{args.tag}.md").write_text(table)
    plot([r for r in records if r["trained"]] + floor_tagged, ceilings, args.settings, args.tag,
         out / f"robustness_{args.tag}.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
