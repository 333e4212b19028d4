"""benchmarks/gpu_check.py --device cpu --smoke: the GPU check's code paths on a CPU, in seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_runs_on_the_cpu_and_writes_one_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
                             "--out", str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["smoke"] is True
    assert report["tests"]["returncode"] == 0 and "passed" in report["tests"]["summary"]
    assert [s["precision"] for s in report["steps"]] == ["bf16", "fp32"]
    for s in report["steps"]:
        assert s["loss_finite"] and s["median_step_s"] > 0 and s["gflop_per_step"] > 0
        assert 0 < s["fraction_of_matmul_peak"] < 10
        assert s["samples_per_s"] == round(4 / s["median_step_s"], 2) or abs(s["samples_per_s"] - 4 / s["median_step_s"]) < 0.1
