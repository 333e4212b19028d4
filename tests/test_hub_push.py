"""Model cards and ``push``: one commit to a fake Hub, then offline loading from the cache by repo id."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from huggingface_hub import EvalResult, ModelCard, hf_hub_download
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining, HDCIDModel
from hf_hdcid.cli import main
from hf_hdcid.hub import (
    BEHAVIOUR_OPTIONS,
    PAPER_TITLE,
    eval_results_from_dicts,
    push,
    render_model_card,
    upload_files,
)

from conftest import WITHOUT_PACKAGE, make_batch

REMOTE_CODE = ["configuration_hdcid.py", "convolution_hdcid.py", "modeling_hdcid.py", "objectives_hdcid.py", "codebook_hdcid.py",
               "quantizer_family_hdcid.py", "recurrent_hdcid.py", "toc_hdcid.py"]
RESULTS = [
    {"task_type": "audio-classification", "task_name": "cross-modal event classification (video -> audio)",
     "dataset_type": "hdcid-org/ave-features", "dataset_name": "AVE", "dataset_split": "test",
     "metric_type": "precision", "metric_name": "precision (%)", "metric_value": 54.25,
     "source_name": "hf-hdcid", "source_url": "https://example.org/eval"},
    {"task_type": "feature-extraction", "task_name": "cross-modal code agreement (audio-video)",
     "dataset_type": "synthetic", "dataset_name": "hf-hdcid synthetic AVT benchmark", "dataset_split": "test",
     "metric_type": "code_agreement", "metric_value": 0.2031},
]
TRAINING_INFO = {
    "pretrain_config": {"preset": "tiny", "epochs": 3, "batch_size": 16, "lr": 0.0004, "club_lr": 0.001,
                        "club_steps": 2, "clip": 0.5, "seed": 0, "mixed_precision": "no",
                        "gradient_accumulation_steps": 1, "lr_scheduler": "constant", "encoder_passes": "once",
                        "output_dir": "/home/someone/private/run", "data": "/home/someone/private/shards"},
    "data": {"path": "/home/someone/private/synthetic_avt", "split": "pretrain", "num_clips": 512,
             "modalities": ["audio", "video", "text"], "dataset": None},
    "num_processes": 2, "global_batch_size": 32, "steps": 48, "epochs": 3, "train_time_s": 3725.4,
    "final_metrics": {"loss": 3.5, "total/layer1": 2.25, "total/layer2": 4.125, "active_codes/layer1": 21.0,
                      "equal_num/layer1": 3.5, "perplexity/audio/layer1": 7.125, "perplexity/video/layer1": 6.5,
                      "perplexity/text/layer1": 5.25, "active_codes/layer2": 9.0, "equal_num/layer2": 1.0,
                      "perplexity/audio/layer2": 2.5, "perplexity/video/layer2": 1.75, "perplexity/text/layer2": 1.5,
                      "lr": 0.0004, "step": 48},
    "hf_hdcid_version": "0.1.0",
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PUSHED = sorted(["README.md", "config.json", "eval_results.json", "loss_curves.png", "model.safetensors",
                 "toc_cosine.png", "training_info.json", *REMOTE_CODE])


def saved_model(folder, num_layers=2, toc_num_channels=5, info=True, results=True, figures=True, **overrides):
    """A tiny pretraining model after one EMA update, with TOC channels, saved with its run files and
    with files push must leave behind (checkpoints/, logs)."""
    torch.manual_seed(0)
    config = HDCIDConfig.tiny(num_layers=num_layers, warm_start_epoch=0, **overrides)
    model = HDCIDForPreTraining(config).train()
    with torch.no_grad():
        model.compute_losses(make_batch(config), epoch=0)  # EMA update: codebook buffers move off their init
    if toc_num_channels:
        model.compute_toc(num_channels=toc_num_channels)
    model.save_pretrained(folder)
    if info:
        (folder / "training_info.json").write_text(json.dumps(TRAINING_INFO))
    if results:
        (folder / "eval_results.json").write_text(json.dumps(RESULTS))
    if figures:
        (folder / "toc_cosine.png").write_bytes(PNG)
        (folder / "loss_curves.png").write_bytes(PNG)
    (folder / "checkpoints" / "step_0000048").mkdir(parents=True)
    (folder / "checkpoints" / "step_0000048" / "model.safetensors").write_bytes(b"not for the hub")
    (folder / "checkpoints" / "step_0000048" / "notes.py").write_text("# not for the hub\n")
    (folder / "train_log.jsonl").write_text("{}\n")
    return model.eval()


# =============================================================================================
# push -> pull
# =============================================================================================
def test_push_makes_one_commit_with_exactly_the_model_files(hub, tmp_path):
    saved_model(tmp_path / "m")
    commit = push(tmp_path / "m", "hdcid-org/tiny-one", private=True, token="hf_fake")
    assert [c[0] for c in hub.calls] == ["create_repo", "validate_yaml", "create_commit"]
    assert hub.calls[0][2] == {"private": True, "exist_ok": True, "token": "hf_fake"}
    assert len(hub.commits) == 1
    only = hub.commits[0]
    assert (only.repo_id, only.branch, only.message) == ("hdcid-org/tiny-one", "main", "Upload H-DCID model")
    assert [op for op, _, _ in only.operations] == ["add"] * len(PUSHED)
    assert only.paths == PUSHED
    sizes = {path: n for _, path, n in only.operations}
    assert sizes["model.safetensors"] == (tmp_path / "m" / "model.safetensors").stat().st_size
    assert commit == f"https://huggingface.co/hdcid-org/tiny-one/commit/{only.sha}" and commit.oid == only.sha
    assert upload_files(tmp_path / "m") == PUSHED  # the card was written into the folder first
    assert (tmp_path / "m" / "README.md").read_bytes() == (hub.tree("hdcid-org/tiny-one") / "README.md").read_bytes()


def test_pushed_repo_loads_offline_by_repo_id_with_the_package(hub, tmp_path):
    model = saved_model(tmp_path / "m")
    push(tmp_path / "m", "hdcid-org/tiny-pull", token="hf_fake")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    loaded = HDCIDModel.from_pretrained("hdcid-org/tiny-pull").eval()
    assert loaded.config._name_or_path == "hdcid-org/tiny-pull"
    own, back = model.hdcid.state_dict(), loaded.state_dict()
    assert own.keys() == back.keys() and any(k.endswith("codebook.ema_weight") for k in own)
    for key in own:
        assert own[key].dtype == back[key].dtype and torch.equal(own[key], back[key]), key
    assert (back["layers.0.codebook.unused_steps"] >= 0).any()  # trained buffers, not a fresh init
    assert loaded.config.toc_channels == model.config.toc_channels and len(loaded.config.toc_channels[1]) == 5
    assert loaded.config.toc_settings["num_channels"] == 5
    x = make_batch(model.config, seed=4)["audio"]
    with torch.no_grad():
        assert torch.equal(loaded.encode("audio", x, apply_toc=True).unified,
                           model.hdcid.encode("audio", x, apply_toc=True).unified)


REMOTE = WITHOUT_PACKAGE + textwrap.dedent("""
    from transformers import AutoModel
    repo_id, inputs, expected = sys.argv[1:4]
    model = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
    with torch.no_grad():
        out = model.encode("video", torch.load(inputs, weights_only=True), apply_toc=True)
    print(json.dumps({"class": type(model).__module__ + "." + type(model).__name__,
                      "toc_channels": model.config.toc_channels,
                      "equal": bool(torch.equal(out.unified, torch.load(expected, weights_only=True)))}))
""")


def test_pushed_repo_loads_with_remote_code_in_a_fresh_process_without_the_package(hub, tmp_path):
    model = saved_model(tmp_path / "m")
    push(tmp_path / "m", "hdcid-org/tiny-remote", token="hf_fake")
    x = make_batch(model.config, seed=6)["video"]
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model.hdcid.encode("video", x, apply_toc=True).unified, tmp_path / "ref.pt")
    (tmp_path / "remote.py").write_text(REMOTE)
    env = {**os.environ, "HF_HOME": str(tmp_path / "fresh_home"), "HF_HUB_CACHE": str(hub.cache_dir),
           "HF_MODULES_CACHE": str(tmp_path / "fresh_home" / "modules"), "HF_HUB_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, str(tmp_path / "remote.py"), "hdcid-org/tiny-remote",
                           str(tmp_path / "x.pt"), str(tmp_path / "ref.pt")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["class"].startswith("transformers_modules.") and result["class"].endswith(".HDCIDModel")
    assert result["toc_channels"] == model.config.toc_channels
    assert result["equal"] is True


def test_pushed_card_is_ours_and_parses_back_the_eval_results(hub, tmp_path):
    saved_model(tmp_path / "m")
    push(tmp_path / "m", "hdcid-org/tiny-card", token="hf_fake")
    card = ModelCard.load("hdcid-org/tiny-card")  # from the HF cache, offline
    expected = [EvalResult(**r) for r in RESULTS]
    assert card.data.eval_results == expected
    meta = yaml.safe_load(card.content.split("---")[1])
    assert model_index_to_eval_results(meta["model-index"]) == ("tiny-card", expected)
    assert meta["library_name"] == "transformers" and meta["license"] == "mit"
    assert meta["pipeline_tag"] == "feature-extraction"
    assert {"hdcid", "h-dcid", "toc", "multimodal", "vector-quantization"} <= set(meta["tags"])
    text = card.text
    assert "Provide a quick summary" not in text and "[More Information Needed]" not in text  # not the template
    assert text.startswith("\n# tiny-card\n") and PAPER_TITLE in text
    assert 'HDCIDModel.from_pretrained("hdcid-org/tiny-card")' in text
    assert 'AutoModel.from_pretrained("hdcid-org/tiny-card", trust_remote_code=True)' in text
    assert "| Architecture | H-DCID (2 layers) |" in text
    assert "![TOC heat map](toc_cosine.png)" in text and "![Training losses](loss_curves.png)" in text
    assert "results.png" not in text  # absent figures are not linked
    assert "| cross-modal event classification (video -> audio) | [AVE](https://huggingface.co/datasets/" \
           "hdcid-org/ave-features) | test | precision (%) | 54.25 | [hf-hdcid](https://example.org/eval) |" in text


def test_push_never_overwrites_an_existing_card(hub, tmp_path):
    saved_model(tmp_path / "m")
    own = "---\nlicense: mit\nlibrary_name: transformers\n---\n\n# My own card\n\nHand-written.\n"
    (tmp_path / "m" / "README.md").write_text(own)
    push(tmp_path / "m", "hdcid-org/tiny-own-card", token="hf_fake")
    assert (tmp_path / "m" / "README.md").read_text() == own
    assert (hub.tree("hdcid-org/tiny-own-card") / "README.md").read_text() == own
    assert ModelCard.load("hdcid-org/tiny-own-card").text == "\n# My own card\n\nHand-written.\n"


def test_push_to_a_revision_creates_the_branch_and_commits_there(hub, tmp_path, monkeypatch):
    saved_model(tmp_path / "m", results=False, figures=False, info=False)
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    push(tmp_path / "m", "hdcid-org/tiny-branch", revision="v1", commit_message="first cut")
    assert [c[0] for c in hub.calls] == ["create_repo", "create_branch", "validate_yaml", "create_commit"]
    assert hub.calls[1][2] == {"branch": "v1", "exist_ok": True}
    assert hub.calls[-1][2] == {"branch": "v1", "message": "first cut", "token": "hf_from_env"}
    assert hub.commits[0].paths == sorted(["README.md", "config.json", "model.safetensors", *REMOTE_CODE])
    config = hf_hub_download("hdcid-org/tiny-branch", "config.json", revision="v1")
    assert json.loads(open(config).read())["toc_channels"] is not None


# =============================================================================================
# errors before any network call
# =============================================================================================
@pytest.mark.parametrize("repo_id", ["no-namespace", "org/name/extra", "org/na--me", "org/", "/name", "org/bad name",
                                     "", None])
def test_push_rejects_a_bad_repo_id_before_any_hub_call(hub, tmp_path, repo_id):
    saved_model(tmp_path / "m", num_layers=1)
    with pytest.raises(ValueError) as err:
        push(tmp_path / "m", repo_id, token="hf_fake")
    assert str(err.value).startswith("repo_id: expected 'ORG/NAME'") and str(err.value).endswith(f"got {repo_id!r}")
    assert hub.calls == [] and not (tmp_path / "m" / "README.md").exists()


def test_push_without_a_token_says_how_to_log_in(hub, tmp_path):
    saved_model(tmp_path / "m", num_layers=1)
    with pytest.raises(ValueError, match=r"no Hugging Face token: .*`hf auth login`.*HF_TOKEN"):
        push(tmp_path / "m", "hdcid-org/no-token")
    assert hub.calls == [] and not (tmp_path / "m" / "README.md").exists()


def test_push_rejects_folders_that_are_not_saved_models(hub, tmp_path):
    with pytest.raises(ValueError, match=r"model_dir: expected a save_pretrained .*\(a path that does not exist\)"):
        push(tmp_path / "missing", "hdcid-org/x", token="hf_fake")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"without config.json"):
        push(tmp_path / "empty", "hdcid-org/x", token="hf_fake")
    saved_model(tmp_path / "m", num_layers=1)
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"without \*\.safetensors weights"):
        push(tmp_path / "m", "hdcid-org/x", token="hf_fake")
    assert hub.calls == []


def test_push_rejects_a_bad_eval_results_file_before_any_hub_call(hub, tmp_path):
    saved_model(tmp_path / "m", num_layers=1, results=False)
    bad = [RESULTS[0], {**RESULTS[1], "metric_value": "high"}]
    (tmp_path / "m" / "eval_results.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"eval_results.json entry 1: field 'metric_value': expected a finite "
                                         r"number, got 'high'"):
        push(tmp_path / "m", "hdcid-org/bad-results", token="hf_fake")
    assert hub.calls == [] and not (tmp_path / "m" / "README.md").exists()


def test_push_rejects_an_existing_card_with_broken_metadata(hub, tmp_path):
    saved_model(tmp_path / "m", num_layers=1)
    (tmp_path / "m" / "README.md").write_text("---\nlicense: [mit\n---\n# card\n")
    with pytest.raises(ValueError, match=r"README.md: expected a model card with valid YAML metadata"):
        push(tmp_path / "m", "hdcid-org/bad-card", token="hf_fake")
    assert hub.calls == []


@pytest.mark.parametrize("entry, message", [
    ({k: v for k, v in RESULTS[1].items() if k != "dataset_name"},
     "entry 1: field 'dataset_name': expected a non-empty string, got nothing (missing)"),
    ({**RESULTS[1], "task_type": ""}, "entry 1: field 'task_type': expected a non-empty string, got ''"),
    ({**RESULTS[1], "metric_value": float("nan")}, "entry 1: field 'metric_value': expected a finite number, got nan"),
    ({**RESULTS[1], "metric_value": True}, "entry 1: field 'metric_value': expected a finite number, got True"),
    ({**RESULTS[1], "dataset_split": 3}, "entry 1: field 'dataset_split': expected a non-empty string or null, got 3"),
    ({**RESULTS[1], "source_name": "paper"}, "entry 1: field 'source_url': expected a URL when source_name is given"),
    ({**RESULTS[1], "accuracy": 0.5}, "entry 1: field 'accuracy': expected no such field (allowed: task_type,"),
    ([1, 2], "entry 1: expected a dict with the fields ['task_type', 'dataset_type', 'dataset_name', "
             "'metric_type', 'metric_value'], got list [1, 2]"),
])
def test_bad_eval_results_name_the_entry_the_field_and_the_values(entry, message):
    with pytest.raises(ValueError) as err:
        eval_results_from_dicts([RESULTS[0], entry])
    assert message in str(err.value)


def test_eval_results_must_be_a_list():
    with pytest.raises(ValueError, match=r"eval results: expected a list of dicts .*, got dict"):
        eval_results_from_dicts({"results": RESULTS})


# =============================================================================================
# the card
# =============================================================================================
def test_card_of_a_dcid_without_run_files_says_what_is_missing(tmp_path):
    torch.manual_seed(0)
    HDCIDModel(HDCIDConfig.tiny(num_layers=1, modalities=["audio", "video"])).save_pretrained(tmp_path)
    card = render_model_card(tmp_path)
    assert "model-index" not in card.content and card.data.eval_results is None
    assert set(card.data.tags) >= {"hdcid", "dcid", "audio", "video"} and "toc" not in card.data.tags
    text = card.text
    assert "| Architecture | DCID (1 layer) |" in text and "| Saved class | `HDCIDModel` |" in text
    assert "| Input features | audio `[B, 6, 8]`; video `[B, 6, 5, 5, 12]` |" in text
    assert "No TOC channels are stored" in text and "apply_toc=True" not in text
    assert "No `training_info.json` was saved with this model" in text
    assert "Not recorded: no final codebook metrics" in text
    assert "No evaluation results were provided" in text and "## Figures" not in text
    assert 'HDCIDModel.from_pretrained("ORG/NAME")' in text
    assert "both = model(audio=torch.randn(2, 6, 8), video=torch.randn(2, 6, 5, 5, 12))" in text


def test_card_reports_training_codebook_health_toc_and_option_differences(tmp_path):
    saved_model(tmp_path / "run", use_cmcm=False, club_estimator="full")
    text = render_model_card(tmp_path / "run", results=[]).text
    # training: settings and data, without local paths
    for row in ("| Processes | 2 |", "| Global batch size | 32 |", "| Optimiser steps | 48 |",
                "| Training time | 1 h 2 min 5 s |", "| `lr_scheduler` | constant |", "| `club_steps` | 2 |",
                "| Feature shards | `synthetic_avt` |", "| Clips | 512 |",
                "| Dataset | not a published dataset (local feature shards) |", "| `total/layer2` | 4.125 |"):
        assert row in text, row
    assert "/home/someone" not in text and "`output_dir`" not in text
    assert "**Trained on synthetic features**" in text
    # codebook health per layer, modalities in model order
    assert "| Layer | Active codes | equal_num | Perplexity audio | Perplexity video | Perplexity text |" in text
    assert "| 1 | 21 / 24 | 3.5 | 7.125 | 6.5 | 5.25 |" in text and "| 2 | 9 / 24 | 1 | 2.5 | 1.75 | 1.5 |" in text
    # TOC
    assert "| 1 | 5 of 16 |" in text and "| 2 | 5 of 16 |" in text and "`unified` is `[B, T, 10]`" in text
    assert "Q = 5" in text and "λ = 0.7" in text
    # paper-vs-original options that differ from HDCIDConfig.hdcid(), and only those
    assert "| `use_cmcm` | `False` | `True` |" in text and "| `club_estimator` | `full` | `sampled` |" in text
    assert "| `dead_code_reset` |" not in text
    assert "| `hidden_size` | `16` | `256` |" in text  # other differences, folded away
    # an explicit empty results list overrides eval_results.json
    assert "No evaluation results were provided" in text


def test_card_of_a_dcid_leaves_out_metrics_of_layers_it_does_not_have(tmp_path):
    saved_model(tmp_path / "m", num_layers=1)  # TRAINING_INFO also has layer-2 metrics
    text = render_model_card(tmp_path / "m").text
    assert "| 1 | 21 / 24 | 3.5 | 7.125 | 6.5 | 5.25 |" in text and "| 2 | 9 / 24 |" not in text
    assert "| `total/layer1` | 2.25 |" in text and "total/layer2" not in text
    assert "Every option where the paper and the original code differ has its `HDCIDConfig.hdcid()` default." in text


def test_card_survives_training_info_with_missing_or_odd_values(tmp_path):
    saved_model(tmp_path / "m", num_layers=1, info=False, results=False)
    odd = {"data": "shards", "pretrain_config": None, "final_metrics": [1, 2], "steps": "many", "epochs": None}
    (tmp_path / "m" / "training_info.json").write_text(json.dumps(odd))
    text = render_model_card(tmp_path / "m").text
    assert "`training_info.json` records no training data or settings." in text
    assert "Not recorded: no final codebook metrics" in text and "many" not in text
    (tmp_path / "m" / "training_info.json").write_text('{"steps": 3,')
    with pytest.raises(ValueError, match=r"training_info.json: expected valid JSON, got a parse error"):
        render_model_card(tmp_path / "m")


def test_behaviour_options_are_the_paper_vs_original_options_of_the_config():
    from hf_hdcid.modeling.configuration_hdcid import _PRESET_ORIGINAL

    assert set(BEHAVIOUR_OPTIONS) == set(_PRESET_ORIGINAL) | {"use_cmcm"}


def test_card_template_ships_inside_the_package():
    from hf_hdcid import model_cards

    assert model_cards.HDCID_CARD_TEMPLATE.is_file() and model_cards.HDCID_CARD_TEMPLATE.parent.name == "model_cards"
    assert "{{ card_data }}" in model_cards.HDCID_CARD_TEMPLATE.read_text()


# =============================================================================================
# CLI
# =============================================================================================
def test_cli_card_writes_the_readme_with_the_given_results(tmp_path, capsys):
    saved_model(tmp_path / "m", num_layers=1, results=False)
    (tmp_path / "r.json").write_text(json.dumps(RESULTS[:1]))
    assert main(["card", str(tmp_path / "m"), "--results", str(tmp_path / "r.json"), "--repo-id", "org/x"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'm' / 'README.md'}"
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.eval_results == [EvalResult(**RESULTS[0])] and 'from_pretrained("org/x")' in card.text
    (tmp_path / "bad.json").write_text(json.dumps([{"task_type": "x"}]))
    assert main(["card", str(tmp_path / "m"), "--results", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hf-hdcid card: error: eval results entry 0: field 'dataset_type': expected a non-empty string, "
                   "got nothing (missing)"]
    assert ModelCard.load(tmp_path / "m" / "README.md").data.eval_results  # the old card is kept
    assert main(["card", str(tmp_path / "m"), "--repo-id", "not a repo"]) == 2
    assert capsys.readouterr().err.startswith("hf-hdcid card: error: repo_id: expected 'ORG/NAME'")


def test_cli_push_uploads_with_the_token_from_the_environment(hub, tmp_path, monkeypatch, capsys):
    saved_model(tmp_path / "m", num_layers=1)
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert main(["push", str(tmp_path / "m"), "hdcid-org/cli-push", "--private", "--commit-message", "via cli"]) == 0
    out = capsys.readouterr().out.strip()
    url = "https://huggingface.co/hdcid-org/cli-push/commit/"
    assert out.startswith(f"pushed {tmp_path / 'm'} to hdcid-org/cli-push: {url}")
    assert hub.calls[0][2] == {"private": True, "exist_ok": True, "token": "hf_env"}
    assert [(c.repo_id, c.message) for c in hub.commits] == [("hdcid-org/cli-push", "via cli")]


def test_cli_card_runs_in_a_subprocess(tmp_path):
    saved_model(tmp_path / "m", num_layers=1)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "hf_hdcid.cli", "card", str(tmp_path / "m"), "--repo-id", "org/x"],
                          capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"wrote {tmp_path / 'm' / 'README.md'}"
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.eval_results == [EvalResult(**r) for r in RESULTS]  # from the folder's eval_results.json
    assert "| Architecture | DCID (1 layer) |" in card.text


def test_cli_push_errors_print_one_line_and_exit_2_in_a_subprocess(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "fake", "HF_HUB_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "hf_hdcid.cli", "push", str(tmp_path / "nowhere"), "org/x"],
                          capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"hf-hdcid push: error: model_dir: expected a save_pretrained folder with config.json and *.safetensors "
        f"weights, got {str(tmp_path / 'nowhere')!r} (a path that does not exist)"]
