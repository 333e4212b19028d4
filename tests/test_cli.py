"""The ``hf-hdcid demo`` command runs end to end in a subprocess."""

import json
import os
import subprocess
import sys


def test_demo_runs_the_pipeline_end_to_end(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "hf_hdcid.cli", "demo", "--output-dir", str(tmp_path / "demo"),
                           "--epochs", "3"], capture_output=True, text=True, env=env, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for marker in ("1. synthetic benchmark: 512 pretraining + 128 test clips", "epoch 2: mean L_k layer1",
                   "3. TOC: 8 of 16 channels per layer", "4. reloaded as HDCIDModel", "audio-video: layer 1"):
        assert marker in out, marker
    for modality in ("audio", "video", "text"):
        assert f"{modality} codes layer1" in out
    demo = tmp_path / "demo"
    assert (demo / "model" / "model.safetensors").exists() and (demo / "toc_cosine.png").exists()
    results = json.loads((demo / "demo_results.json").read_text())
    assert set(results["agreement"]) == {"audio-video", "audio-text"} and len(results["channels"]) == 2
    assert "UNEXPECTED" not in proc.stderr  # pretraining heads are dropped quietly when loading the encoder


def test_cli_rejects_unknown_commands():
    proc = subprocess.run([sys.executable, "-m", "hf_hdcid.cli", "fly"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'fly'" in proc.stderr
