"""The model folder's single owner (hf_hdcid.hub.folder) and the card's Hub metadata: every path that
touches a folder leaves config, card, figures and results consistent, and every downstream run is its
own model-index entry that parses back unchanged."""

import json
import math

import pytest
import torch
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining, HDCIDModel
from hf_hdcid.cli import main
from hf_hdcid.downstream.report import eval_results
from hf_hdcid.hub import add_eval_results, add_toc, refresh_card, render_model_card

from conftest import make_batch

PNG = b"\x89PNG\r\n\x1a\n"


def record(task="ave", direction="v2a", toc=False, protocol="paper", accuracy=0.5, seeds=(0, 1), test="ave_shards"):
    """A downstream run record with the fields hf-hdcid evaluate writes (the ones the folder reads)."""
    stats = {"mean": accuracy, "std": 0.01}
    return {"model": "m", "model_name": "H-DCID", "num_layers": 2, "layers": [1, 2], "task": task,
            "direction": direction, "protocol": protocol,
            "toc": {"enabled": toc, "channels_per_layer": [8, 8] if toc else [16, 16], "settings": None},
            "data": {"train": f"/data/{test}", "test": f"/data/{test}", "clips": {"train": 10, "test": 10}},
            "seeds": list(seeds), "main_metric": "accuracy", "score": stats, "metrics": {"accuracy": stats},
            "per_seed": [{"curve": [0.1, 0.2]}], "path": "/somewhere/run.json"}


def eight_records():
    """2 tasks x 2 directions x TOC on / off, each with its own accuracy."""
    out = []
    for i, (task, direction, toc) in enumerate((t, d, c) for t in ("ave", "ucf_vggsound") for d in ("v2a", "a2v")
                                               for c in (False, True)):
        out.append(record(task, direction, toc, accuracy=round(0.3 + 0.05 * i, 4), test=f"{task}_shards"))
    return out


def saved(folder, **overrides):
    torch.manual_seed(0)
    config = HDCIDConfig.tiny(warm_start_epoch=0, **overrides)
    model = HDCIDForPreTraining(config).train()
    with torch.no_grad():
        model.compute_losses(make_batch(config), epoch=0)
    model.save_pretrained(folder)
    return model.eval()


def card_meta(folder):
    """The card's YAML metadata and its model-index parsed back by huggingface_hub."""
    card = ModelCard.load(folder / "README.md")
    meta = yaml.safe_load(card.content.split("---")[1])
    return card, meta, model_index_to_eval_results(meta["model-index"])[1]


# =============================================================================================
# model-index
# =============================================================================================
def test_eight_runs_are_eight_named_model_index_entries_that_parse_back(tmp_path):
    saved(tmp_path / "m")
    records = eight_records()
    add_eval_results(tmp_path / "m", records)
    card, meta, parsed = card_meta(tmp_path / "m")
    results = meta["model-index"][0]["results"]
    assert len(results) == 8  # not one group holding four unnamed accuracies
    names = [r["task"]["name"] for r in results]
    assert len(set(names)) == 8
    assert "AVE V→A, all channels, paper protocol" in names and "AVE A→V, TOC 8 channels, paper protocol" in names
    assert "UCF101↔VGGSound A→V, TOC 8 channels, paper protocol" in names
    assert all(len(r["metrics"]) == 1 for r in results)
    # names and values equal after the round trip, per run
    by_name = {e.task_name: e.metric_value for e in parsed}
    assert by_name == {e["task_name"]: e["metric_value"] for e in eval_results(records)}
    assert by_name["AVE V→A, all channels, paper protocol"] == 0.3
    assert by_name["UCF101↔VGGSound A→V, TOC 8 channels, paper protocol"] == 0.65
    assert card.data.eval_results == parsed
    # huggingface_hub's local validation accepts the metadata
    ModelCardData(**meta)
    assert model_index_to_eval_results(eval_results_to_model_index("m", parsed))[1] == parsed


def test_each_eval_result_names_its_task_direction_toc_and_protocol():
    results = eval_results([record("synthetic_ave", "a2v", True, "heldout", seeds=(0,))])
    assert results == [{
        "task_type": "feature-extraction", "task_name": "synthetic AVE A→V, TOC 8 channels, heldout protocol",
        "dataset_type": "ave_shards", "dataset_name": "ave_shards", "dataset_config": "synthetic_ave-a2v-toc8-heldout",
        "dataset_split": "test", "metric_type": "accuracy", "metric_name": "accuracy (mean of 1 seed)",
        "metric_value": 0.5}]
    EvalResult(**results[0])


# =============================================================================================
# add_eval_results
# =============================================================================================
def test_add_eval_results_replaces_the_same_run_and_keeps_the_others(tmp_path):
    saved(tmp_path / "m")
    hand = {"task_type": "feature-extraction", "task_name": "code agreement", "dataset_type": "synthetic",
            "dataset_name": "synthetic", "metric_type": "code_agreement", "metric_value": 0.25}
    (tmp_path / "m" / "eval_results.json").write_text(json.dumps([hand]))
    add_eval_results(tmp_path / "m", [record(accuracy=0.5), record(direction="a2v", accuracy=0.4)])
    add_eval_results(tmp_path / "m", [record(accuracy=0.75)])  # the same run again: replaces the first
    stored = json.loads((tmp_path / "m" / "downstream_results.json").read_text())
    assert [(r["direction"], r["score"]["mean"]) for r in stored] == [("v2a", 0.75), ("a2v", 0.4)]
    assert all("path" not in r and "per_seed" not in r for r in stored)  # no local path, no probe curves
    results = json.loads((tmp_path / "m" / "eval_results.json").read_text())
    assert results[0] == hand  # hand-written results are kept
    assert [(r["task_name"], r["metric_value"]) for r in results[1:]] == [
        ("AVE V→A, all channels, paper protocol", 0.75), ("AVE A→V, all channels, paper protocol", 0.4)]
    card, meta, parsed = card_meta(tmp_path / "m")
    assert parsed == [EvalResult(**r) for r in results]
    assert (tmp_path / "m" / "results.png").read_bytes().startswith(PNG)
    assert "![Results](results.png)" in card.text
    assert "| AVE V→A, all channels, paper protocol | ave_shards (ave-v2a-all-paper) | test |" in card.text


def test_add_eval_results_rejects_what_is_not_a_run_record_and_changes_nothing(tmp_path):
    saved(tmp_path / "m")
    bad = {k: v for k, v in record().items() if k != "toc"}
    with pytest.raises(ValueError, match=r"records entry 0: expected a downstream run record .* without \['toc'\]"):
        add_eval_results(tmp_path / "m", [bad])
    with pytest.raises(ValueError, match=r"records: expected a non-empty list"):
        add_eval_results(tmp_path / "m", [])
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if p.suffix in (".json", ".md", ".png")) == ["config.json"]


def test_a_card_round_trips_through_model_card_load(tmp_path):
    saved(tmp_path / "m")
    add_eval_results(tmp_path / "m", [record(), record(toc=True, accuracy=0.6)])
    card = render_model_card(tmp_path / "m", repo_id="org/name")
    path = tmp_path / "README.md"
    path.write_text(str(card))
    back = ModelCard.load(path)
    assert back.data.to_dict() == card.data.to_dict()
    assert back.data.eval_results == card.data.eval_results and len(back.data.eval_results) == 2
    assert back.text == card.text


# =============================================================================================
# the CLI paths that touch a folder
# =============================================================================================
def test_cli_toc_writes_config_figure_summary_and_a_card_that_agree(tmp_path, capsys):
    model = saved(tmp_path / "m")
    (tmp_path / "m" / "training_info.json").write_text(json.dumps({"steps": 7, "data": {"num_clips": 12}}))
    add_eval_results(tmp_path / "m", [record(accuracy=0.5), record(toc=True, accuracy=0.9)])
    assert main(["toc", str(tmp_path / "m"), "--channels", "6", "--out", str(tmp_path / "t")]) == 0
    assert "README.md" in capsys.readouterr().out
    out = tmp_path / "t"
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "toc_summary.json").read_text())
    assert config["toc_channels"] == summary["channels"] and [len(c) for c in summary["channels"]] == [6, 6]
    assert (out / "toc_cosine.png").read_bytes().startswith(PNG)
    assert json.loads((out / "training_info.json").read_text())["steps"] == 7  # the training is the same
    # the run without TOC still holds for the new folder; the TOC run used other channels
    assert [r["toc"]["enabled"] for r in json.loads((out / "downstream_results.json").read_text())] == [False]
    card, meta, parsed = card_meta(out)
    assert card.text.startswith("\n# t\n")  # titled by the folder's name, not its temporary one
    assert meta["model-index"][0]["name"] == "t"
    assert [e.task_name for e in parsed] == ["AVE V→A, all channels, paper protocol"]
    text = card.text
    assert "| 1 | 6 of 16 | " + ", ".join(map(str, summary["channels"][0])) + " |" in text
    assert "![TOC heat map](toc_cosine.png)" in text and "| Optimiser steps | 7 |" in text
    assert "toc" in meta["tags"]
    assert model.config.toc_channels is None  # the input folder is untouched
    assert json.loads((tmp_path / "m" / "config.json").read_text())["toc_channels"] is None


def test_cli_evaluate_to_card_adds_the_run_to_the_folder(tmp_path, capsys):
    from hf_hdcid.data.synthetic import build_synthetic_shards

    cfg = HDCIDConfig.tiny(modalities=["audio", "video"])
    data = build_synthetic_shards(tmp_path / "syn", cfg, {"train": 24, "test": 12}, seed=0)
    torch.manual_seed(0)
    model = HDCIDForPreTraining(cfg)
    model.compute_toc(num_channels=6)
    model.save_pretrained(tmp_path / "m")
    common = ["--task", "synthetic_ave", "--data", str(data), "--epochs", "1", "--batch-size", "8",
              "--out", str(tmp_path / "runs"), "--to-card", str(tmp_path / "m")]
    assert main(["evaluate", str(tmp_path / "m"), "--direction", "v2a", *common]) == 0
    assert main(["evaluate", str(tmp_path / "m"), "--direction", "v2a", "--toc", *common]) == 0
    assert "rewrote" in capsys.readouterr().out
    runs = sorted((tmp_path / "runs").glob("*.json"))
    assert len(runs) == 2
    card, meta, parsed = card_meta(tmp_path / "m")
    expected = {}
    for run in runs:
        r = json.loads(run.read_text())
        expected[eval_results([r])[0]["task_name"]] = round(r["score"]["mean"], 4)
    assert {e.task_name: e.metric_value for e in parsed} == expected
    assert set(expected) == {"synthetic AVE V→A, all channels, heldout protocol",
                             "synthetic AVE V→A, TOC 6 channels, heldout protocol"}
    assert parsed == [EvalResult(**e) for e in json.loads((tmp_path / "m" / "eval_results.json").read_text())]
    assert (tmp_path / "m" / "results.png").read_bytes().startswith(PNG) and "results.png" in card.text
    # a bad --to-card fails before the evaluation
    assert main(["evaluate", str(tmp_path / "m"), "--direction", "a2v", *common[:-1], str(tmp_path / "nowhere")]) == 2
    saved(tmp_path / "other")
    assert main(["evaluate", str(tmp_path / "m"), "--direction", "a2v", *common[:-1], str(tmp_path / "other")]) == 2
    assert "--to-card: expected the evaluated model folder" in capsys.readouterr().err
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2


def test_cli_card_stores_the_given_results_with_the_card(tmp_path):
    saved(tmp_path / "m")
    add_eval_results(tmp_path / "m", [record()])
    hand = [{"task_type": "feature-extraction", "dataset_type": "x", "dataset_name": "X", "metric_type": "acc",
             "metric_value": 0.1}]
    (tmp_path / "r.json").write_text(json.dumps(hand))
    assert main(["card", str(tmp_path / "m"), "--results", str(tmp_path / "r.json")]) == 0
    stored = json.loads((tmp_path / "m" / "eval_results.json").read_text())
    assert stored == hand + eval_results([record()])  # the downstream records keep their entries
    assert card_meta(tmp_path / "m")[2] == [EvalResult(**e) for e in stored]


# =============================================================================================
# the card's facts
# =============================================================================================
@pytest.mark.parametrize("overrides, codes", [
    (dict(quantizer="fsq", use_cmcm=False, fsq_levels=[3, 4, 5]), 60),
    (dict(quantizer="fsq", use_cmcm=False), math.prod([8, 5, 5, 5])),
    (dict(quantizer="fdt", fdt_num_tokens=12), 12),
    (dict(), 24),
])
def test_the_card_counts_the_codes_the_quantizer_really_has(tmp_path, overrides, codes):
    config = HDCIDConfig.tiny(**overrides)
    assert config.num_codes == codes
    HDCIDModel(config).save_pretrained(tmp_path)
    text = refresh_card(tmp_path).read_text()
    assert f"| Codes per layer | {codes} (" in text and f"(0 .. {codes - 1})" in text
    if config.quantizer == "fsq":
        assert "400" not in text.split("## Configuration")[0] and "codebook of" not in text.split("## Model")[0]


def test_the_card_says_to_install_from_a_checkout():
    from hf_hdcid.model_cards import HDCID_CARD_TEMPLATE

    template = HDCID_CARD_TEMPLATE.read_text()
    assert "pip install hf-hdcid" not in template and "`pip install <path-to-hf-hdcid-checkout>`" in template


def test_the_readme_option_table_is_the_config_table():
    from pathlib import Path

    from hf_hdcid.hub import BEHAVIOUR_OPTIONS, paper_vs_original_table
    from hf_hdcid.modeling.configuration_hdcid import PAPER_VS_ORIGINAL

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("<!-- paper-vs-original: begin -->\n")[1].split("<!-- paper-vs-original: end -->")[0]
    assert block == paper_vs_original_table()  # regenerate the README block from the table when this fails
    assert BEHAVIOUR_OPTIONS == {name: meaning for name, (_, meaning) in PAPER_VS_ORIGINAL.items()}


def test_the_original_presets_are_the_config_table():
    from hf_hdcid.modeling.configuration_hdcid import PAPER_VS_ORIGINAL

    for preset, variant in ((HDCIDConfig.original_hdcid(), "hdcid"), (HDCIDConfig.original_dcid(), "dcid")):
        for name, (original, _) in PAPER_VS_ORIGINAL.items():
            expected = original[variant] if isinstance(original, dict) else original
            assert getattr(preset, name) == expected, (variant, name)


@pytest.mark.parametrize("name, parts", [
    ("recon/audio/layer1", ("recon", "audio", 1)), ("cpc/layer2", ("cpc", None, 2)),
    ("perplexity_stage0/video/layer1", ("perplexity_stage0", "video", 1)), ("loss", ("loss", None, None)),
    ("club_lr", ("club_lr", None, None)),
])
def test_loss_term_names_are_built_and_parsed_by_one_pair_of_helpers(name, parts):
    from hf_hdcid.modeling.modeling_hdcid import parse_term_name, term_name

    assert tuple(parse_term_name(name)) == parts
    if parts[2] is not None:
        assert term_name(parts[0], parts[2], parts[1]) == name


def test_every_loss_and_diagnostic_of_the_model_parses_back():
    from hf_hdcid.modeling.modeling_hdcid import parse_term_name, term_name

    config = HDCIDConfig.tiny(warm_start_epoch=0)
    torch.manual_seed(0)
    out = HDCIDForPreTraining(config).train().compute_losses(make_batch(config), epoch=0)
    for name in [*out.losses, *out.diagnostics]:
        term = parse_term_name(name)
        assert term.layer in (1, 2) and term_name(term.family, term.layer, term.modality) == name, name
    assert {parse_term_name(n).family for n in out.losses} >= {"recon", "commit", "mi", "cpc", "total"}


def test_add_eval_results_keeps_a_hand_written_card(tmp_path):
    saved(tmp_path / "m")
    own = "---\nlicense: mit\n---\n\n# My own card\n"
    (tmp_path / "m" / "README.md").write_text(own)
    add_eval_results(tmp_path / "m", [record()])
    assert (tmp_path / "m" / "README.md").read_text() == own
    assert len(json.loads((tmp_path / "m" / "eval_results.json").read_text())) == 1
    refresh_card(tmp_path / "m")  # hf-hdcid card: asked for, so rewritten
    assert "AVE V→A, all channels, paper protocol" in (tmp_path / "m" / "README.md").read_text()


def test_a_run_with_several_metrics_is_one_entry_with_the_main_metric_first(tmp_path):
    saved(tmp_path / "m")
    run = record("avvp", "a2v", protocol="heldout")
    run["main_metric"] = "f1"
    run["metrics"] = {"precision": {"mean": 0.61, "std": 0.0}, "recall": {"mean": 0.42, "std": 0.0},
                      "f1": {"mean": 0.5, "std": 0.0}}
    add_eval_results(tmp_path / "m", [run, record()])
    card, meta, parsed = card_meta(tmp_path / "m")
    entries = meta["model-index"][0]["results"]
    assert [e["task"]["name"] for e in entries] == ["AVE V→A, all channels, paper protocol",
                                                    "AVVP A→V, all channels, heldout protocol"]
    assert [(m["type"], m["value"]) for m in entries[1]["metrics"]] == [("f1", 0.5), ("precision", 0.61),
                                                                         ("recall", 0.42)]
    assert parsed == card.data.eval_results and len(parsed) == 4
