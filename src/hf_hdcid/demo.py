"""``make demo``: the whole pipeline on the embedded synthetic benchmark, DCID and H-DCID side by side.

1. writes the synthetic audio-visual-text benchmark (tiny dimensions, 10 event classes: the tiny
   preset's codebook has 24 codes, too few to separate the 28 AVE classes; prompts embedded by the
   offline MiniLM BERT) as feature shards: unlabelled pretraining clips, labelled train / test clips;
2. pretrains a tiny DCID (1 layer) and a tiny H-DCID (2 layers, layer 2 warm-started) with the
   Accelerate loop of ``scripts/pretrain.py`` (:func:`hf_hdcid.training.pretrain`): checkpoints, JSONL
   and TensorBoard logs, loss curves, TOC channels, a ``save_pretrained`` folder with its model card;
3. draws the TOC heat maps (paper Fig. 2) of each model;
4. reloads each encoder with ``AutoModel`` and measures on the labelled test split how often audio and
   video (and text) of the same second get the same code (chance is about 1 / codebook size), next to
   the same encoder untrained;
5. runs the cross-modal generalisation benchmarks (:mod:`hf_hdcid.downstream`, heldout protocol):
   synthetic AVE-style classification and AVVP-style localisation, V->A and A->V, each model with and
   without TOC, next to an untrained H-DCID encoder as the floor; and cross-modal retrieval (A->V and
   V->A on the test clips, no probe: Recall@1/5/10, median rank, mAP) of the same models;
   Then AVS-S4-style cross-modal segmentation (issue 18) on the synthetic segmentation world of the
   same seed (rendered frames of the sounding object, a silent distractor in about half the clips):
   a tiny segmenter queried by each model's audio codes is tested with its text codes (A->T) and the
   reverse (T->A), mIoU and F-score;
6. writes ``results.md`` (the tables printed at the end), ``results.png`` and ``demo_results.json``,
   and refreshes each model card with its results (table + ``model-index``) and figures;
7. the robustness line (issue 14): a tiny DCID pretrained the same way on one harder world of the
   robustness sweep (``ROBUSTNESS_SETTING``: see ``benchmarks/robustness.py``), its audio-video code
   agreement and synthetic_ave cross-modal accuracy next to the same encoder untrained.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from . import HDCIDConfig, HDCIDForPreTraining

VARIANTS = (("dcid", 1), ("hdcid", 2))
NUM_CLASSES = 10
TASKS = ("synthetic_ave", "synthetic_avvp", "retrieval")
# the harder world of the demo's robustness line (a name of hf_hdcid.data.synthetic.ROBUSTNESS_SETTINGS)
ROBUSTNESS_SETTING = "heavy_nuisance"
# the tiny recipe's learning rate: 3e-3 beat 1e-3 on every setting of the issue-14 robustness sweep
# (mean AVE 35.5 -> 44.1 %, BENCHMARKS.md); the paper-size default stays PretrainConfig.lr (4e-4)
DEMO_LR = 3e-3
#: the synthetic segmentation world of the demo (step 5): clips per split, and the segmenter's epochs
SEGMENTATION_CLIPS = {"train": 96, "val": 32, "test": 32}
SEGMENTATION_EPOCHS = 4


def code_agreement(encoder, batch: dict, a: str = "audio", b: str = "video") -> list[float]:
    """Per layer the fraction of (clip, second) positions where modalities a and b get the same code."""
    with torch.no_grad():
        ia, ib = encoder.encode(a, batch[a]).indices, encoder.encode(b, batch[b]).indices
    return [float((x == y).float().mean()) for x, y in zip(ia, ib)]


def agreement_table(rows: list[dict]) -> str:
    """Markdown table of the demo's per-model code statistics (one row per model and layer)."""
    lines = ["| model | layer | a-v code agreement (untrained) | a-t code agreement (untrained) | active codes | "
             "perplexity a / v / t | mean abs cos, all -> TOC channels | final loss | train time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for k in range(row["num_layers"]):
            tag = f"layer{k + 1}"
            agree = [f"{row['agreement'][p][k]:.3f} ({row['untrained_agreement'][p][k]:.3f})"
                     for p in ("audio-video", "audio-text")]
            ppl = " / ".join(f"{row['final'][f'perplexity/{m}/{tag}']:.1f}" for m in ("audio", "video", "text"))
            toc = row["toc"][k]
            lines.append(f"| {row['name']} | {k + 1} | {agree[0]} | {agree[1]} | "
                         f"{row['final'][f'active_codes/{tag}']:.0f} / {row['codebook_size']} | {ppl} | "
                         f"{toc['mean_abs_cosine_before']:.3f} -> {toc['mean_abs_cosine_after']:.3f} | "
                         f"{row['final']['loss']:.3f} | {row['train_time_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def robustness_check(setting: str, out: Path, extractor, seed: int = 0, batch_size: int = 16, epochs: int = 16,
                     pretrain_clips: int = 512, labelled_clips: int = 256, club_steps: int = 2,
                     probe_epochs: int | None = None, lr: float = DEMO_LR) -> dict:
    """A tiny DCID pretrained with the demo's recipe on the robustness world ``setting`` -> its a-v code
    agreement and synthetic_ave accuracy (heldout protocol, mean of V->A and A->V, no TOC) next to the
    same encoder untrained (same seed, same input statistics)."""
    from transformers import AutoModel

    from .data.shards import load_shards
    from .data.synthetic import build_synthetic_shards, robustness_spec
    from .downstream.grid import run_grid
    from .training.loop import PretrainConfig, pretrain

    spec = robustness_spec(setting)
    data_config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    clips = {"pretrain": pretrain_clips, "train": labelled_clips, "test": labelled_clips}
    data_dir = build_synthetic_shards(out / "data", data_config, clips, seed=seed, text_extractor=extractor,
                                      spec=spec, overwrite=True)
    cfg = PretrainConfig(data=str(data_dir), preset="tiny", epochs=epochs, batch_size=batch_size, lr=lr,
                         club_steps=club_steps, seed=seed, output_dir=str(out / "dcid"), save_every_steps=0,
                         progress=False, plot=False, report_to="none", model_config={"num_layers": 1})
    model_dir = Path(pretrain(cfg))
    encoder = AutoModel.from_pretrained(model_dir).eval()
    torch.manual_seed(seed)
    floor = HDCIDForPreTraining(encoder.config).eval()  # untrained, with the trained model's input statistics
    floor.compute_toc(num_channels=encoder.config.hidden_size // 2)
    floor_dir = out / "untrained_dcid"
    floor.save_pretrained(floor_dir)
    test, collate = load_shards(data_dir, encoder.config, split="test")
    batch = collate(test[:])
    agreement = code_agreement(encoder, batch)[0]
    floor_agreement = code_agreement(floor.hdcid.eval(), batch)[0]
    grid = run_grid([model_dir, floor_dir], ("synthetic_ave",), data_dir, toc="off", protocol="heldout",
                    seeds=[seed], epochs=probe_epochs, out_dir=out / "downstream",
                    model_names=["DCID", "untrained DCID"], progress=False)
    ave = {name: sum(r["score"]["mean"] for r in grid["records"] if r["model_name"] == name) / 2
           for name in ("DCID", "untrained DCID")}
    return {"setting": setting, "spec": dataclasses.asdict(spec), "num_classes": spec.num_classes,
            "agreement": agreement, "untrained_agreement": floor_agreement, "ave": ave["DCID"],
            "untrained_ave": ave["untrained DCID"], "chance": 1 / spec.num_classes, "model_dir": str(model_dir)}


def robustness_text(r: dict) -> str:
    """The demo's one robustness line."""
    return (f"robustness (world {r['setting']!r}, {r['num_classes']} classes): DCID a-v code agreement "
            f"{r['agreement']:.3f} (untrained {r['untrained_agreement']:.3f}); synthetic_ave mean V->A / A->V "
            f"{100 * r['ave']:.1f} % (untrained {100 * r['untrained_ave']:.1f} %, chance {100 * r['chance']:.1f} %)")


def check_demo_settings(batch_size: int, epochs: int, pretrain_clips: int, labelled_clips: int, club_steps: int,
                        probe_epochs: int | None, lr: float, segmentation_epochs: int = SEGMENTATION_EPOCHS) -> None:
    """ValueError naming the first bad setting (before any data is built or any model trained)."""
    import math

    for field, value, low in (("batch_size", batch_size, 1), ("epochs", epochs, 1), ("pretrain_clips", pretrain_clips, 1),
                              ("labelled_clips", labelled_clips, 2), ("club_steps", club_steps, 0),
                              ("segmentation_epochs", segmentation_epochs, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{field}: expected an int >= {low}, got {value!r}")
    if probe_epochs is not None and (isinstance(probe_epochs, bool) or not isinstance(probe_epochs, int)
                                     or probe_epochs < 1):
        raise ValueError(f"probe_epochs: expected an int >= 1 or None, got {probe_epochs!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and 0 < lr <= 1):
        raise ValueError(f"lr: expected a finite learning rate in (0, 1], got {lr!r}")


def run_demo(seed: int = 0, batch_size: int = 16, output_dir: str | os.PathLike = "outputs/demo",
             epochs: int = 16, pretrain_clips: int = 512, labelled_clips: int = 256, club_steps: int = 2,
             probe_epochs: int | None = None, robustness_setting: str | None = ROBUSTNESS_SETTING,
             lr: float = DEMO_LR, segmentation_epochs: int = SEGMENTATION_EPOCHS) -> dict:
    """The demo (steps 1-7 of the module docstring) -> the ``demo_results.json`` dict;
    ``robustness_setting=None`` skips step 7. The settings and ``output_dir`` (a writable folder) are
    checked first, and the demo holds ``output_dir``'s lock (:func:`hf_hdcid.folders.exclusive_folder`)
    while it runs: a second demo into the same folder fails at once."""
    from .folders import check_writable_folder, exclusive_folder

    check_demo_settings(batch_size, epochs, pretrain_clips, labelled_clips, club_steps, probe_epochs, lr,
                        segmentation_epochs)
    out = check_writable_folder(output_dir, "output_dir")
    with exclusive_folder(out, "hf-hdcid demo"):
        return _run_demo(seed, batch_size, out, epochs, pretrain_clips, labelled_clips, club_steps, probe_epochs,
                         robustness_setting, lr, segmentation_epochs)


def run_segmentation_step(out: Path, data_config: HDCIDConfig, extractor, model_dirs, model_names, seed: int,
                          epochs: int = SEGMENTATION_EPOCHS, progress: bool = True) -> dict:
    """Step 5's segmentation rows: writes the synthetic segmentation shards of the demo's world
    (:data:`SEGMENTATION_CLIPS`, the world's ``data_config`` / ``seed`` / spec, prompts through
    ``extractor``) to ``out/synthetic_avs`` and runs ``synthetic_avs`` A->T and T->A (TOC off, heldout,
    ``epochs``) for every model folder; returns :func:`hf_hdcid.downstream.grid.run_grid`'s result
    (records in ``out/segmentation``). ``benchmarks/demo_segmentation_time.py`` times this step."""
    from .data.synthetic import SyntheticSpec
    from .data.synthetic_segmentation import build_synthetic_segmentation_shards
    from .downstream.grid import run_grid

    seg_dir = build_synthetic_segmentation_shards(Path(out) / "synthetic_avs", data_config, SEGMENTATION_CLIPS,
                                                  seed=seed, text_extractor=extractor,
                                                  spec=SyntheticSpec(num_classes=NUM_CLASSES), overwrite=True)
    return run_grid(list(model_dirs), ("synthetic_avs",), seg_dir, directions=("a2t", "t2a"), toc="off",
                    protocol="heldout", seeds=[seed], epochs=epochs, out_dir=Path(out) / "segmentation",
                    model_names=list(model_names), progress=progress)


def _run_demo(seed: int, batch_size: int, output_dir: Path, epochs: int, pretrain_clips: int, labelled_clips: int,
              club_steps: int, probe_epochs: int | None, robustness_setting: str | None, lr: float,
              segmentation_epochs: int = SEGMENTATION_EPOCHS) -> dict:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from .data.shards import load_shards
    from .data.synthetic import SyntheticSpec, build_synthetic_shards
    from .downstream.grid import run_grid
    from .data.text import TextFeatureExtractor, default_offline_text_model
    from .hub.folder import TOC_FIGURE, TOC_SUMMARY_FILE, add_eval_results
    from .modeling.modeling_hdcid import term_name
    from .training.loop import PretrainConfig, pretrain
    from .training.plots import read_log

    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    out = Path(output_dir)
    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames,
                                     progress=False)
    data_config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    clips = {"pretrain": pretrain_clips, "train": labelled_clips, "test": labelled_clips}
    data_dir = build_synthetic_shards(out / "synthetic_avt", data_config, clips, seed=seed, text_extractor=extractor,
                                      spec=SyntheticSpec(num_classes=NUM_CLASSES), overwrite=True)
    test_clips = labelled_clips
    print(f"1. synthetic benchmark ({NUM_CLASSES} event classes): {pretrain_clips} pretraining + {labelled_clips} "
          f"train + {labelled_clips} test clips -> {data_dir}")

    warm_start = max(1, epochs // 2)
    rows = []
    for name, num_layers in VARIANTS:
        run_dir = out / name
        cfg = PretrainConfig(data=str(data_dir), preset="tiny", epochs=epochs, batch_size=batch_size, lr=lr,
                             club_steps=club_steps, seed=seed, output_dir=str(run_dir), save_every_steps=0,
                             progress=False, model_config={"num_layers": num_layers, "warm_start_epoch": warm_start})
        label = "DCID (1 layer)" if num_layers == 1 else f"H-DCID (2 layers, layer 2 from epoch {warm_start})"
        print(f"2. pretraining a tiny {label}: {epochs} epochs of batch {batch_size} with scripts/pretrain.py's loop")
        model_dir = pretrain(cfg)
        log = read_log(run_dir / "train_log.jsonl")
        for epoch in range(epochs):
            records = [r for r in log if r["epoch"] == epoch]
            layers = "  ".join(f"layer{k} {sum(r[term_name('total', k)] for r in records) / len(records):.3f}"
                               for k in range(1, num_layers + 1) if term_name("total", k) in records[0])
            print(f"   epoch {epoch}: mean L_k {layers}  (cpc layer1 "
                  f"{sum(r[term_name('cpc', 1)] for r in records) / len(records):.3f})")

        encoder = AutoModel.from_pretrained(model_dir).eval()
        config = encoder.config
        toc = json.loads((model_dir / TOC_SUMMARY_FILE).read_text())["layers"]  # the pretraining loop drew Fig. 2
        print(f"3. TOC: {len(config.toc_channels[0])} of {config.hidden_size} channels per layer; mean |cos| between "
              "codes " + ", ".join(f"layer {r['layer']} {r['mean_abs_cosine_before']:.3f} -> "
                                   f"{r['mean_abs_cosine_after']:.3f}" for r in toc)
              + f"; figure {model_dir / TOC_FIGURE}")

        test, test_collate = load_shards(data_dir, config, split="test")
        test_batch = test_collate(test[:])
        torch.manual_seed(seed)
        untrained_model = type(encoder)(config).eval()
        print(f"4. reloaded as {type(encoder).__name__}; code agreement on {test_clips} test clips "
              f"(chance ~ {1 / config.codebook_size:.3f}):")
        agreement, untrained = {}, {}
        for other in [m for m in config.modalities if m != "audio"]:
            pair = f"audio-{other}"
            agreement[pair] = code_agreement(encoder, test_batch, "audio", other)
            untrained[pair] = code_agreement(untrained_model, test_batch, "audio", other)
            print(f"   {pair}: " + ", ".join(f"layer {k + 1} {a:.3f} (untrained {u:.3f})"
                                            for k, (a, u) in enumerate(zip(agreement[pair], untrained[pair]))))
        with torch.no_grad():
            for m in config.modalities:
                enc = encoder.encode(m, test_batch[m][:1], apply_toc=True)
                print(f"   {m:>5} codes " + "  ".join(f"layer{k + 1} {idx[0].tolist()}"
                                                     for k, idx in enumerate(enc.indices))
                      + f"  unified(TOC) {list(enc.unified.shape)}")
        info = json.loads((model_dir / "training_info.json").read_text())
        row = {"name": name.upper().replace("HDCID", "H-DCID"), "model_dir": str(model_dir), "num_layers": num_layers,
               "codebook_size": config.codebook_size, "agreement": agreement, "untrained_agreement": untrained,
               "toc": toc, "channels": config.toc_channels, "final": info["final_metrics"],
               "train_time_s": info["train_time_s"],
               "encoder_parameters": sum(p.numel() for p in encoder.parameters())}
        rows.append(row)
    # ---------------------------------------------------------------- downstream benchmarks
    torch.manual_seed(seed)
    floor_dir = out / "untrained_hdcid"
    floor = HDCIDForPreTraining(HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)).eval()
    floor.compute_toc(num_channels=floor.config.hidden_size // 2)
    floor.save_pretrained(floor_dir)
    print(f"5. cross-modal generalisation (heldout protocol: probe trained on one modality's codes, epoch chosen "
          f"on held-out clips of that modality, tested on the other modality; chance accuracy "
          f"{1 / NUM_CLASSES:.2f}):")
    grid = run_grid([r["model_dir"] for r in rows] + [floor_dir], TASKS, data_dir, toc="both", protocol="heldout",
                    seeds=[seed], epochs=probe_epochs, out_dir=out / "downstream",
                    model_names=[r["name"] for r in rows] + ["untrained H-DCID"])
    segmentation = None
    if segmentation_epochs:
        print(f"   cross-modal segmentation (synthetic AVS-S4, {SEGMENTATION_CLIPS['train']} train clips of 5 "
              f"32x32 frames, the sounding object's mask; a tiny PVT-v2 segmenter "
              f"queried by the frozen codes, {segmentation_epochs} epochs): A->T trains with audio codes and tests "
              "with text codes, T->A the reverse (a check of the pipeline at this budget: the segmenter starts to use "
              "the query after ~10 epochs, benchmarks/segmentation.py and BENCHMARKS.md measure the transfer)")
        segmentation = run_segmentation_step(out, data_config, extractor, [r["model_dir"] for r in rows] + [floor_dir],
                                             [r["name"] for r in rows] + ["untrained H-DCID"], seed, segmentation_epochs)
    for row in rows:
        mine = [r for r in grid["records"] if r["model_name"] == row["name"]]
        if segmentation is not None:
            mine += [r for r in segmentation["records"] if r["model_name"] == row["name"]]
        row["downstream"] = [{k: r[k] for k in ("task", "direction", "toc", "main_metric", "score")} for r in mine]
        # eval_results.json (one model-index entry per run), results.png and the card, now with the results
        add_eval_results(row["model_dir"], mine,
                         dataset_name=f"hf-hdcid synthetic AVT benchmark ({NUM_CLASSES} classes)")

    codes_table = agreement_table(rows)
    robust, robust_line = None, ""
    if robustness_setting is not None:
        print(f"7. robustness: a tiny DCID pretrained the same way on the harder world {robustness_setting!r} of "
              "benchmarks/robustness.py")
        robust = robustness_check(robustness_setting, out / "robustness", extractor, seed=seed,
                                  batch_size=batch_size, epochs=epochs, pretrain_clips=pretrain_clips,
                                  labelled_clips=labelled_clips, club_steps=club_steps, probe_epochs=probe_epochs,
                                  lr=lr)
        robust_line = robustness_text(robust)
    (out / "results.md").write_text(
        "# hf-hdcid demo: DCID vs H-DCID on the synthetic AVT benchmark\n\n"
        f"{pretrain_clips} pretraining clips ({NUM_CLASSES} event classes), {epochs} epochs, batch {batch_size}, "
        f"lr {lr:g}.\n\n"
        "## Cross-modal generalisation\n\n" + grid["table"] + "\n![results](downstream/results.png)\n\n"
        + (f"## Cross-modal segmentation\n\n{segmentation['table']}\n" if segmentation else "")
        + f"## Codes\n\nCode agreement on {test_clips} test clips (untrained encoder in brackets); chance ~ "
        f"{1 / rows[0]['codebook_size']:.3f}.\n\n" + codes_table
        + (f"\n## Robustness\n\n{robust_line}\n" if robust else ""))
    result = {"models": rows, "downstream_table": grid["table"], "robustness": robust,
              "segmentation_table": segmentation["table"] if segmentation else None,
              "elapsed_s": round(time.perf_counter() - started, 1)}
    (out / "demo_results.json").write_text(json.dumps(result, indent=2))
    print(f"6. results ({out / 'results.md'}; model cards in " + ", ".join(r["model_dir"] for r in rows) + "):\n")
    print(grid["table"])
    if segmentation:
        print(segmentation["table"])
    print(codes_table)
    if robust:
        print(robust_line + "\n")
    print(f"demo finished in {result['elapsed_s']:.0f} s")
    return result
