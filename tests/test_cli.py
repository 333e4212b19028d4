"""The ``hf-hdcid demo`` command runs end to end in a subprocess."""

import os
import subprocess
import sys


def test_demo_trains_saves_reloads_and_prints_codes(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "hf_hdcid.cli", "demo", "--output-dir", str(tmp_path / "demo")],
                          capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "step 0: loss" in out and "step 29: loss" in out and "reloaded as HDCIDModel" in out
    for modality in ("audio", "video", "text"):
        assert f"{modality}: unified [1, 6, 32]" in out
    assert (tmp_path / "demo" / "model.safetensors").exists()
    assert "UNEXPECTED" not in proc.stderr  # pretraining heads are dropped quietly when loading the encoder


def test_cli_rejects_unknown_commands():
    proc = subprocess.run([sys.executable, "-m", "hf_hdcid.cli", "fly"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'fly'" in proc.stderr
