"""The ``hf-hdcid demo`` command runs end to end in a subprocess."""

import json
import os
import subprocess
import sys


def test_demo_runs_the_pipeline_end_to_end(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "hf_hdcid.cli", "demo", "--output-dir", str(tmp_path / "demo"),
                           "--epochs", "3", "--probe-epochs", "3", "--segmentation-epochs", "1"],
                          capture_output=True, text=True, env=env,
                          timeout=420, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for marker in ("1. synthetic benchmark (10 event classes): 512 pretraining + 256 train + 256 test clips",
                   "pretraining a tiny DCID (1 layer)", "pretraining a tiny H-DCID (2 layers, layer 2 from epoch 1)",
                   "epoch 2: mean L_k layer1", "3. TOC: 8 of 16 channels per layer", "4. reloaded as HDCIDModel",
                   "audio-video: layer 1", "5. cross-modal generalisation (heldout protocol",
                   "| DCID | 1 |", "| H-DCID | 2 |", "| H-DCID+TOC |", "| untrained H-DCID |",
                   "synthetic_ave V→A (accuracy)", "synthetic_avvp A→V (f1)",
                   "Cross-modal retrieval (zero-shot", "| H-DCID+TOC | retrieval | A→V |",
                   "cross-modal segmentation (synthetic AVS-S4", "Cross-modal segmentation (the segmenter",
                   "| H-DCID | synthetic_avs | A→T (heldout) |", "| untrained H-DCID | synthetic_avs | T→A (heldout) |",
                   "7. robustness: a tiny DCID pretrained the same way on the harder world",
                   "DCID a-v code agreement"):
        assert marker in out, marker
    for modality in ("audio", "video", "text"):
        assert f"{modality} codes layer1" in out
    demo = tmp_path / "demo"
    results = json.loads((demo / "demo_results.json").read_text())
    assert [m["num_layers"] for m in results["models"]] == [1, 2]
    for name, layers in (("dcid", 1), ("hdcid", 2)):
        model = demo / name / "model"
        for f in ("model.safetensors", "config.json", "toc_cosine.png", "loss_curves.png", "results.png",
                  "README.md", "training_info.json", "eval_results.json"):
            assert (model / f).is_file(), (name, f)
        assert len(json.loads((model / "config.json").read_text())["toc_channels"]) == layers
        # the tiny recipe of the issue-14 sweep: lr 3e-3, standardised inputs, no cross commitment
        info = json.loads((model / "training_info.json").read_text())["pretrain_config"]
        assert info["lr"] == 3e-3 and info["normalize_inputs"] in (None, True)
        config = json.loads((model / "config.json").read_text())
        assert config["input_normalization"] and config["commitment_cross_weight"] == 0.0
        card = (model / "README.md").read_text()
        assert "toc_cosine.png" in card and "results.png" in card and "model-index" in card
        assert "Trained on synthetic features" in card
        assert [r["step"] for r in map(json.loads, (demo / name / "train_log.jsonl").read_text().splitlines())][-1] \
            == 3 * (512 // 16)
    row = results["models"][1]
    assert set(row["agreement"]) == {"audio-video", "audio-text"} and len(row["channels"]) == 2
    # 3 tasks (2 probe tasks, retrieval) x 2 directions x with / without TOC, and segmentation A->T, T->A
    assert len(row["downstream"]) == 14
    assert {r["direction"] for r in row["downstream"] if r["task"] == "synthetic_avs"} == {"a2t", "t2a"}
    assert len(list((demo / "segmentation").glob("*.json"))) == 6  # 3 models x 2 directions
    assert "## Cross-modal segmentation" in (demo / "results.md").read_text()
    entries = json.loads((demo / "hdcid" / "model" / "eval_results.json").read_text())
    assert {e["dataset_config"] for e in entries if e["task_type"] == "image-segmentation"} == {
        "synthetic_avs-a2t-all-heldout", "synthetic_avs-t2a-all-heldout"}
    assert {r["direction"] for r in row["downstream"] if r["task"] == "retrieval"} == {"a2v", "v2a"}
    assert "| H-DCID+TOC |" in (demo / "results.md").read_text()
    assert "epochs, batch 16, lr 0.003." in (demo / "results.md").read_text()
    assert (demo / "downstream" / "results.png").is_file()
    assert len(list((demo / "downstream").glob("*.json"))) == 36  # 3 models x 12 runs
    robust = results["robustness"]
    assert robust["setting"] == "heavy_nuisance" and 0 <= robust["untrained_agreement"] <= 1
    assert 0 <= robust["ave"] <= 1 and robust["chance"] == 0.1
    assert (demo / "robustness" / "dcid" / "model" / "model.safetensors").is_file()
    assert "## Robustness" in (demo / "results.md").read_text()
    assert "UNEXPECTED" not in proc.stderr  # pretraining heads are dropped quietly when loading the encoder


def test_cli_rejects_unknown_commands(capsys):
    import pytest

    from hf_hdcid.cli import main

    with pytest.raises(SystemExit) as exit_info:  # argparse's exit, status 2 (the entry point: the demo test)
        main(["fly"])
    assert exit_info.value.code == 2 and "invalid choice: 'fly'" in capsys.readouterr().err
