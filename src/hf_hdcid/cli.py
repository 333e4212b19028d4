"""The ``hf-hdcid`` command line."""

from __future__ import annotations

import argparse
import os
import sys

#: set to 1 to see the full traceback of an expected failure (same as --debug)
DEBUG_ENV = "HF_HDCID_DEBUG"
#: failures a user can cause (bad input, a busy or full folder, a diverged run): one line, exit code 2
EXPECTED_ERRORS = (ValueError, OSError, FloatingPointError)


def _demo(args: argparse.Namespace) -> int:
    from .data.synthetic import ROBUSTNESS_SETTINGS
    from .demo import DEMO_LR, ROBUSTNESS_SETTING, SEGMENTATION_EPOCHS, run_demo

    setting = ROBUSTNESS_SETTING if args.robustness_setting is None else args.robustness_setting
    if setting != "none" and setting not in ROBUSTNESS_SETTINGS:
        raise SystemExit(f"--robustness-setting: expected 'none' or one of {tuple(ROBUSTNESS_SETTINGS)}, "
                         f"got {setting!r}")
    run_demo(seed=args.seed, batch_size=args.batch_size, output_dir=args.output_dir, epochs=args.epochs,
             probe_epochs=args.probe_epochs, robustness_setting=None if setting == "none" else setting,
             lr=DEMO_LR if args.lr is None else args.lr,
             segmentation_epochs=SEGMENTATION_EPOCHS if args.segmentation_epochs is None else args.segmentation_epochs)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """One run (one model, task, direction and TOC setting: the record and its summary, as always), or
    the grid of every model x TOC setting x (task, direction) pair (records, ``results.md``/``.png``, the
    table). The pairs: :func:`hf_hdcid.downstream.tasks.plan_runs` (no ``--direction``: each task's
    defaults; given ones intersected with each task's), checked before any work."""
    from .downstream.dispatch import check_runs
    from .downstream.grid import TOC_CHOICES

    models = list(args.model) + list(args.models or [])
    if args.toc not in TOC_CHOICES:  # `--toc MODEL ...`: the bare flag, then the positional model (as always)
        models.insert(0, args.toc)
        args.toc = "on"
    if not models:
        raise ValueError("model: expected a save_pretrained folder or Hub id (positional or --models)")
    pairs = check_runs(args.task, args.direction, args.test_data, args.backbone)
    _check_to_card(args, models)
    if len(models) > 1 or len(pairs) > 1 or args.toc == "both" or args.model_names:
        return _evaluate_grid(args, models, args.direction)
    from .downstream.dispatch import run_task
    from .downstream.report import format_score

    (task, direction), = pairs
    record = run_task(models[0], task, direction, args.data, args.test_data, protocol=args.protocol,
                      toc=args.toc == "on", toc_num_channels=args.toc_num_channels, layers=args.layers,
                      seeds=args.seeds, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, out_dir=args.out,
                      backbone=args.backbone)
    toc = f"TOC {record['toc']['channels_per_layer']} channels" if record["toc"]["enabled"] else "all channels"
    print(f"{record['model_name']} {record['task']} {record['direction']} ({record['protocol']} protocol, {toc}, "
          f"layers {record['layers']}, clips {record['data']['clips']}):")
    seeds = "deterministic" if record.get("deterministic") else f"seeds {record['seeds']}"
    for name, stats in record["metrics"].items():
        print(f"  {name}: {format_score(name, stats, digits=2)}  ({seeds})")
    print(f"wrote {record['path']}")
    _add_to_card(args, [record])
    return 0


def _check_to_card(args: argparse.Namespace, models: list) -> None:
    """A bad ``--to-card`` fails before any evaluation: a saved model folder, the one evaluated."""
    if args.to_card is None:
        return
    from pathlib import Path

    from .hub import check_model_dir

    check_model_dir(args.to_card)
    if len(models) != 1:
        raise ValueError(f"--to-card: expected one evaluated model (a card describes its own model's results), "
                         f"got {len(models)}: {models}")
    if Path(models[0]).is_dir() and Path(models[0]).resolve() != Path(args.to_card).resolve():
        raise ValueError(f"--to-card: expected the evaluated model folder {models[0]!r}, got {args.to_card!r} "
                         "(a card describes its own model's results)")


def _add_to_card(args: argparse.Namespace, records: list) -> None:
    if args.to_card is None:
        return
    from .hub.folder import add_eval_results, is_own_card

    own = is_own_card(args.to_card)
    card = add_eval_results(args.to_card, records)
    print(f"added {len(records)} result(s) to {args.to_card} (eval_results.json, results.png); "
          + (f"rewrote {card}" if own else f"kept the hand-written {card}"))


def _evaluate_grid(args: argparse.Namespace, models: list, directions: list) -> int:
    from .downstream.grid import run_grid

    toc = "on" if args.toc == "off" and args.toc_num_channels is not None else args.toc  # as for one run
    result = run_grid(models, args.task, args.data, test_data=args.test_data, directions=directions, toc=toc,
                      toc_num_channels=args.toc_num_channels, protocol=args.protocol, seeds=args.seeds,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, layers=args.layers, backbone=args.backbone,
                      out_dir=args.out, model_names=args.model_names)
    print("\n" + result["table"])
    print(f"wrote {result['table_path']}, {result['figure_path']} and one JSON per run in {args.out}")
    _add_to_card(args, result["records"])
    return 0


def _evaluate_table(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .downstream.report import load_records, plot_results, results_table

    records = load_records(args.results)
    table = results_table(records)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table)
    plot_results(records, out / "results.png")
    print(table)
    print(f"wrote {out / 'results.md'} and {out / 'results.png'} ({len(records)} runs)")
    return 0


def _toc(args: argparse.Namespace) -> int:
    from .toc import run_toc

    summary = run_toc(args.model, args.channels, out_dir=args.out, lam=args.lam, normalize=args.normalize,
                      top_bottom=(args.top, args.bottom), overwrite=args.overwrite)
    for row in summary["layers"]:
        print(f"layer {row['layer']}: {row['num_channels']} channels, mean |cos| off-diagonal "
              f"{row['mean_abs_cosine_before']:.4f} -> {row['mean_abs_cosine_after']:.4f}")
    print(f"wrote {summary['out_dir']} (model, toc_cosine.png, toc_summary.json, README.md)")
    return 0


def _make_synthetic(args: argparse.Namespace) -> int:
    from . import HDCIDConfig
    from .data.synthetic import SyntheticSpec, build_synthetic_shards
    from .data.text import TextFeatureExtractor, default_offline_text_model

    preset = getattr(HDCIDConfig, args.preset)()
    spec = None if args.num_classes is None else SyntheticSpec(num_classes=args.num_classes)
    if args.frame_size is not None and not args.segmentation:
        raise ValueError(f"--frame-size: expected only with --segmentation, got --frame-size {args.frame_size}")
    extractor = TextFeatureExtractor(args.text_model or default_offline_text_model(), num_tokens=preset.num_frames)
    config = getattr(HDCIDConfig, args.preset)(text_feature_dim=extractor.hidden_size)
    if args.segmentation:
        from .data.synthetic_segmentation import build_synthetic_segmentation_shards

        train = 200 if args.clips is None else args.clips
        held_out = args.downstream_clips if args.downstream_clips is not None else max(1, train * 8 // 25)
        clips = {"train": train, "val": held_out, "test": held_out}
        out = build_synthetic_segmentation_shards(args.out, config, clips, seed=args.seed, text_extractor=extractor,
                                                  frame_size=32 if args.frame_size is None else args.frame_size,
                                                  overwrite=args.overwrite, spec=spec)
        kind = "segmentation clips (frames, masks, audio and text queries)"
    else:
        pretrain = 512 if args.clips is None else args.clips
        downstream = args.downstream_clips if args.downstream_clips is not None else max(1, pretrain // 2)
        clips = {"pretrain": pretrain, "train": downstream, "test": downstream}
        out = build_synthetic_shards(args.out, config, clips, seed=args.seed, text_extractor=extractor,
                                     overwrite=args.overwrite, spec=spec)
        kind = "clips"
    print(f"wrote {out}: " + ", ".join(f"{n} {s}" for s, n in clips.items())
          + f" {kind}; preset {args.preset}, text features {extractor.hidden_size}-d")
    return 0


def _convert_features(args: argparse.Namespace) -> int:
    from . import HDCIDConfig
    from .data.convert import convert_features

    expected = 2 if args.layout == "avss4" else 1
    if len(args.out) != expected:
        usage = "SRC OUT (AVSBench's Single-source folder, the shard folder)" if expected == 2 else "OUT"
        raise ValueError(f"convert-features {args.layout}: expected {usage}, got {len(args.out)} positional "
                         f"argument(s) {args.out}")
    paths = {}
    for item in args.path:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--path: expected KEY=VALUE, got {item!r}")
        paths[key] = value
    if args.splits:
        paths["splits"] = set(args.splits.split(","))
    overrides = {"modalities": args.modalities.split(",")}
    if args.num_frames is not None:
        overrides["num_frames"] = args.num_frames
    if args.layout == "avss4":
        paths["root"] = args.out[0]
        if args.frame_size is not None:
            paths["frame_size"] = args.frame_size
        if "text" in overrides["modalities"]:
            from .data.text import TextFeatureExtractor, read_vocabulary

            t = overrides.get("num_frames", getattr(HDCIDConfig, args.preset)().num_frames)
            vocabulary = None if args.text_vocabulary is None else read_vocabulary(args.text_vocabulary)
            paths["text_extractor"] = TextFeatureExtractor(args.text_model or "bert-base-uncased", num_tokens=t,
                                                           vocabulary=vocabulary)
            overrides["text_feature_dim"] = paths["text_extractor"].hidden_size
    elif args.text_model is not None or args.frame_size is not None or args.text_vocabulary is not None:
        raise ValueError(f"--text-model / --text-vocabulary / --frame-size: expected only with layout avss4, got "
                         f"layout {args.layout!r}")
    config = getattr(HDCIDConfig, args.preset)(**overrides)
    out = convert_features(args.layout, args.out[-1], config, num_shards=args.num_shards, overwrite=args.overwrite,
                           skip_missing=args.skip_missing, **paths)
    from .data.shards import MANIFEST_NAME, read_manifest

    manifest = read_manifest(out)
    print(f"wrote {out}: {manifest['num_rows']} clips")
    skipped = manifest["source"]["skipped_missing"]
    if skipped:
        shown = ", ".join(skipped[:20]) + (f", ... ({len(skipped) - 20} more)" if len(skipped) > 20 else "")
        print(f"skipped {len(skipped)} listed clips without a feature file: {shown} "
              f"(all in {MANIFEST_NAME}, source.skipped_missing)")
    return 0


def _card(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .hub import check_model_dir, check_repo_id, refresh_card, set_eval_results

    check_model_dir(args.model_dir)
    if args.repo_id is not None:
        check_repo_id(args.repo_id)
    if args.results is not None:
        try:
            results = json.loads(Path(args.results).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"--results {args.results}: expected a JSON list of eval results, got a parse error "
                             f"({err})") from None
        path = set_eval_results(args.model_dir, results, repo_id=args.repo_id)
    else:
        path = refresh_card(args.model_dir, repo_id=args.repo_id)
    print(f"wrote {path}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from .hub import push

    commit = push(args.model_dir, args.repo_id, private=args.private, revision=args.revision,
                  commit_message=args.commit_message)
    print(f"pushed {args.model_dir} to {args.repo_id}" + (f" ({args.revision})" if args.revision else "")
          + f": {commit}")
    return 0


def _push_data(args: argparse.Namespace) -> int:
    from .data.hub_shards import push_shards

    commit = push_shards(args.shards, args.repo_id, private=args.private, license=args.license,
                         commit_message=args.commit_message)
    print(f"pushed {args.shards} to the dataset repo {args.repo_id}: {commit}")
    return 0


def _convert_original(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from .convert_original import convert_original_checkpoint, save_converted

    out = Path(args.out_dir)
    if args.push_to_hub is not None:
        from .hub import check_repo_id

        check_repo_id(args.push_to_hub)  # a bad repo id fails before the conversion
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not an empty folder (use --overwrite)")
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    model, report = convert_original_checkpoint(args.checkpoint, args.variant, dtype=dtype, return_report=True)
    save_converted(model, report, out, encoder_only=args.encoder_only, overwrite=args.overwrite)
    print(report.summary())
    print(f"wrote {out} ({'HDCIDModel, encoder only' if args.encoder_only else 'HDCIDForPreTraining'}, "
          f"{args.dtype}; conversion_report.json)")
    if args.push_to_hub is not None:
        from .hub import push

        commit = push(out, args.push_to_hub)
        print(f"pushed {out} to {args.push_to_hub}: {commit}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-hdcid", description="H-DCID, DCID and TOC on Hugging Face.")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of a failure (also: {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="synthetic benchmark -> pretrain tiny DCID and H-DCID -> TOC -> "
                                       "cross-modal benchmarks -> results table and model cards")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--batch-size", type=int, default=16)
    demo.add_argument("--epochs", type=int, default=16, help="pretraining epochs")
    demo.add_argument("--lr", type=float, default=None,
                      help="pretraining learning rate (default: hf_hdcid.demo.DEMO_LR, 3e-3)")
    demo.add_argument("--probe-epochs", type=int, default=None, help="downstream probe epochs (default: the task's)")
    demo.add_argument("--segmentation-epochs", type=int, default=None,
                      help="epochs of the cross-modal segmentation rows (default hf_hdcid.demo.SEGMENTATION_EPOCHS; "
                           "0 skips them)")
    demo.add_argument("--output-dir", default="outputs/demo", help="where data, models and results go")
    demo.add_argument("--robustness-setting", default=None,
                      help="world of the robustness line (step 7): a setting of benchmarks/robustness.py, or "
                           "'none' to skip it (default: hf_hdcid.demo.ROBUSTNESS_SETTING)")
    demo.set_defaults(func=_demo)
    from .downstream.tasks import DIRECTION_ALIASES, PROTOCOLS, TASKS

    from .downstream.grid import TOC_CHOICES
    from .training.config import deprecated_flag

    ev = sub.add_parser("evaluate", help="cross-modal generalisation benchmark (probe tasks) and cross-modal retrieval "
                                         "of a model: one task and direction, "
                                         "or a grid (several models, tasks, directions: the Table 1 layout)")
    ev.add_argument("model", nargs="*", help="save_pretrained folder(s) or Hub id(s)")
    ev.add_argument("--models", nargs="+", default=None, help="more models (the spelling of "
                                                             "scripts/evaluate_downstream.py)")
    ev.add_argument("--model-names", nargs="+", default=None, help="grid row labels (default: DCID / H-DCID)")
    # --task X takes one value (so a positional model may follow it, as always) and may be repeated;
    # --tasks X Y ... takes several: both extend one list (likewise --direction / --directions)
    tasks = ev.add_mutually_exclusive_group(required=True)
    tasks.add_argument("--task", dest="task", action="extend", nargs=1, choices=sorted(TASKS),
                       help="the task (repeat it, or use --tasks, for a grid)")
    tasks.add_argument("--tasks", dest="task", action="extend", nargs="+", choices=sorted(TASKS),
                       help="several tasks (a grid)")
    directions = sorted({d for spec in TASKS.values() for d in spec.directions}) + sorted(DIRECTION_ALIASES)
    ev.add_argument("--direction", dest="direction", action="extend", nargs=1, default=None, choices=directions,
                    help="probe tasks: v2a trains on video codes and tests on audio codes, a2v the reverse; "
                         "retrieval: a2v ranks video clips by audio queries (also v2a a2t t2a v2t t2v). Repeat it, "
                         "or use --directions, for a grid: the given directions are intersected with each task's "
                         "(a task left with none is an error). Default: each task's own (v2a a2v; retrieval a2v v2a)")
    ev.add_argument("--directions", dest="direction", action="extend", nargs="+", choices=directions,
                    help="several directions (a grid)")
    ev.add_argument("--data", required=True, help="shard folder or Hub dataset id ORG/NAME of the task (training "
                                                  "side; retrieval: its 'test' split when present, else every clip)")
    ev.add_argument("--test-data", default=None, help="test-side shard folder or Hub dataset id (ave_avvp, "
                                                      "ucf_vggsound)")
    ev.add_argument("--protocol", choices=PROTOCOLS, default="heldout",
                    help="the probe tasks' protocol (retrieval trains no probe: its records say zero-shot)")
    ev.add_argument("--toc", nargs="?", const="on", default="off", metavar="{" + ",".join(TOC_CHOICES) + "}",
                    help="--toc (= on): read only the stored TOC channels; both: a grid without and with them")
    ev.add_argument("--toc-num-channels", type=int, default=None,
                    help="compute TOC with this number of channels per layer first (the TOC runs of a grid)")
    ev.add_argument("--toc-channels", dest="toc_num_channels", type=int, action=deprecated_flag("--toc-num-channels"),
                    help="deprecated spelling of --toc-num-channels")
    ev.add_argument("--layers", default="both", help="1, 2 or both")
    ev.add_argument("--seeds", nargs="+", type=int, default=[0])
    ev.add_argument("--epochs", type=int, default=None, help="probe epochs (default: the task's)")
    ev.add_argument("--batch-size", type=int, default=None)
    ev.add_argument("--lr", type=float, default=None)
    ev.add_argument("--backbone", default=None,
                    help="segmentation tasks (avs_s4, synthetic_avs): the visual backbone's weights, a Hub id or "
                         "folder (default: avs_s4 OpenGVLab/pvt_v2_b5 as the paper, synthetic_avs a random tiny "
                         "PVT-v2); 'random': a random backbone of the task's architecture")
    ev.add_argument("--out", default="outputs/downstream", help="folder of the runs' JSON (and a grid's table)")
    ev.add_argument("--to-card", default=None, metavar="MODEL_DIR",
                    help="then add the result(s) to this saved model folder (the evaluated one): eval_results.json "
                         "(one model-index entry per run), results.png and the card README.md "
                         "(hf_hdcid.hub.add_eval_results)")
    ev.set_defaults(func=_evaluate)
    table = sub.add_parser("evaluate-table", help="Table 1 layout (Markdown + bar chart) from run JSONs")
    table.add_argument("results", nargs="+", help="run JSON files or folders of them")
    table.add_argument("--out", default="outputs/downstream")
    table.set_defaults(func=_evaluate_table)
    toc = sub.add_parser("toc", help="compute TOC channels of a model, store them in its config, plot Fig. 2")
    toc.add_argument("model", help="a save_pretrained folder (or a cached Hub id)")
    toc.add_argument("--channels", type=int, required=True, help="channels kept per layer (Q)")
    toc.add_argument("--lam", type=float, default=0.7, help="lambda of eq. 11")
    toc.add_argument("--top", type=int, default=1, help="share of best channels (original toc_max_num)")
    toc.add_argument("--bottom", type=int, default=0, help="share of worst channels (original toc_min_num)")
    toc.add_argument("--normalize", action="store_true", help="unit-norm codes first (the paper's assumption)")
    toc.add_argument("--out", default=None, help="output folder (default: <model>-toc<channels>)")
    toc.add_argument("--overwrite", action="store_true", help="replace an existing model folder at --out")
    toc.set_defaults(func=_toc)
    syn = sub.add_parser("make-synthetic", help="write the synthetic audio-visual-text benchmark as feature shards")
    syn.add_argument("out", help="output shard folder (must not exist unless --overwrite)")
    syn.add_argument("--clips", type=int, default=None, help="unlabelled pretraining clips (default 512); "
                     "with --segmentation: train clips (default 200)")
    syn.add_argument("--downstream-clips", type=int, default=None, help="labelled clips per train/test split "
                     "(default: clips // 2); with --segmentation: clips per val/test split (default: 8/25 of "
                     "the train clips, 64 for 200)")
    syn.add_argument("--segmentation", action="store_true",
                     help="write the synthetic segmentation benchmark instead (frames, masks and audio/text queries "
                          "of the same world: hf_hdcid.data.synthetic_segmentation; splits train/val/test)")
    syn.add_argument("--frame-size", type=int, default=None, help="--segmentation: frame side in pixels (default 32)")
    syn.add_argument("--num-classes", type=int, default=None,
                     help="event classes of the world (default: SyntheticSpec's 28; the demo uses 10)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--preset", choices=("tiny", "hdcid"), default="tiny", help="feature dimensions")
    syn.add_argument("--text-model", default=None, help="BERT folder or Hub id (default: the offline MiniLM)")
    syn.add_argument("--overwrite", action="store_true")
    syn.set_defaults(func=_make_synthetic)
    conv = sub.add_parser("convert-features", help="convert an original feature layout to feature shards")
    conv.add_argument("layout", choices=("vggsound", "vggsound81k", "ave", "avvp", "ucf_vggsound", "avss4"))
    conv.add_argument("out", nargs="+", metavar="[SRC] OUT",
                      help="output shard folder; avss4: SRC OUT, SRC = AVSBench's Single-source folder (with "
                           "s4_meta_data.csv and s4_data/), audio features by --path audio_dir=... "
                           "(see hf_hdcid.data.convert_avs)")
    conv.add_argument("--path", action="append", default=[], metavar="KEY=VALUE",
                      help="layout inputs, e.g. --path csv_path=vggsound-avel40k.csv --path audio_dir=feature/audio/zip "
                           "(see hf_hdcid.data.convert.convert_features)")
    conv.add_argument("--splits", default=None, help="vggsound: comma-separated splits to keep (train = the 24K set); "
                      "avss4: of train,val,test")
    conv.add_argument("--text-model", default=None, help="avss4: BERT folder or Hub id of the prompt features "
                      "(default: bert-base-uncased, the paper's)")
    conv.add_argument("--text-vocabulary", default=None, metavar="CNT.PKL",
                      help="avss4: the original's word filter (CMG's cnt.pkl: keep only words whose single word "
                           "piece is in it, as CMG's AVS-S4 loader does; default: keep every word)")
    conv.add_argument("--frame-size", type=int, default=None, help="avss4: frame side in pixels (default 224, "
                      "AVSBench's)")
    conv.add_argument("--modalities", default="audio,video,text", help="modalities of the target model")
    conv.add_argument("--preset", choices=("hdcid", "tiny"), default="hdcid", help="feature dimensions")
    conv.add_argument("--num-frames", type=int, default=None, help="T (default: the preset's, 10 for hdcid)")
    conv.add_argument("--num-shards", type=int, default=None)
    conv.add_argument("--overwrite", action="store_true")
    conv.add_argument("--skip-missing", action="store_true", help="convert the listed clips that have feature "
                      "files and record the others in the manifest (default: refuse, naming them)")
    conv.set_defaults(func=_convert_features)
    card = sub.add_parser("card", help="(re)write the model card README.md of a saved model folder")
    card.add_argument("model_dir", help="a save_pretrained folder (config.json + *.safetensors)")
    card.add_argument("--results", default=None, metavar="FILE.json",
                      help="eval results from elsewhere: a JSON list of huggingface_hub.EvalResult fields, "
                           "stored as MODEL_DIR/eval_results.json (with the entries of the folder's downstream "
                           "records) before the card is written (default: the folder's eval_results.json)")
    card.add_argument("--repo-id", default=None, metavar="ORG/NAME", help="Hub id used in the card's examples")
    card.set_defaults(func=_card)
    push = sub.add_parser("push", help="upload a saved model folder (weights, config, remote code, card, figures) "
                                       "to the Hub in one commit")
    push.add_argument("model_dir", help="a save_pretrained folder (config.json + *.safetensors)")
    push.add_argument("repo_id", metavar="ORG/NAME", help="target Hub repository (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--revision", default=None, metavar="REV", help="branch to commit to (created if missing)")
    push.add_argument("--commit-message", default="Upload H-DCID model", metavar="MSG")
    push.set_defaults(func=_push)
    from .data.hub_shards import DEFAULT_COMMIT_MESSAGE, DEFAULT_LICENSE

    push_data = sub.add_parser("push-data", help="upload a feature-shard folder unchanged to a Hub dataset repo, "
                                                 "with a dataset card, in one commit")
    push_data.add_argument("shards", metavar="SHARDS", help="a shard folder (write_shards, convert-features, "
                                                            "make-synthetic)")
    push_data.add_argument("repo_id", metavar="ORG/NAME", help="target Hub dataset repository (created if missing)")
    push_data.add_argument("--private", action="store_true", help="create the repository as private")
    push_data.add_argument("--license", default=DEFAULT_LICENSE, metavar="LICENSE",
                           help="licence id of the card (default: other; set the benchmark's licence)")
    push_data.add_argument("--commit-message", default=DEFAULT_COMMIT_MESSAGE, metavar="MSG")
    push_data.set_defaults(func=_push_data)
    orig = sub.add_parser("convert-original", help="convert an original DCID / H-DCID .pt checkpoint to a "
                                                   "save_pretrained folder (original-behaviour config)")
    orig.add_argument("checkpoint", metavar="CKPT", help="the authors' .pt file (loaded with weights_only=True)")
    orig.add_argument("out_dir", metavar="OUT_DIR", help="output folder (must be empty or new unless --overwrite)")
    orig.add_argument("--variant", choices=("dcid", "hdcid"), default=None,
                      help="expected variant (default: detected from the keys)")
    orig.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                      help="weights dtype (float64: the original's, exact parity)")
    orig.add_argument("--encoder-only", action="store_true",
                      help="save the HDCIDModel encoder alone (no freshly initialised pretraining heads)")
    orig.add_argument("--overwrite", action="store_true")
    orig.add_argument("--push-to-hub", default=None, metavar="REPO", help="then upload the folder (hf-hdcid push)")
    orig.set_defaults(func=_convert_original)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    try:
        return args.func(args)
    except EXPECTED_ERRORS as err:
        if args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        print(f"hf-hdcid {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hf-hdcid {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return " ".join(text.split()) if len(text) < 2000 else " ".join(text[:2000].split()) + " ..."


if __name__ == "__main__":
    sys.exit(main())
