"""GPU checks (``pytest -m gpu``; run by ``benchmarks/gpu_check.py``). They run on CUDA when one is
present; ``HDCID_TEST_DEVICE=cpu`` runs their CPU variants (the smoke run of gpu_check.py: the same
code paths, fp16 excepted, which Accelerate offers only on a GPU). Without either they are skipped.

* one EMA codebook update on the device equals the same update on the CPU (float32 rounding);
* a bf16 and an fp16 step through Accelerate (the loop's step) stay finite and keep float32 weights,
  codebooks and EMA statistics; fp16 runs with Accelerate's GradScaler;
* ``accelerate launch`` of scripts/pretrain.py on the GPU(s): DDP (``--multi_gpu``) trains and saves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.data.synthetic import random_feature_batch

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
DEVICE = os.environ.get("HDCID_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else None)
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEVICE is None, reason="no GPU (HDCID_TEST_DEVICE=cpu runs the CPU variants)")]


def _codebook_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if ".codebook." in k}


def test_codebook_update_on_the_device_equals_the_cpu_update():
    torch.manual_seed(0)
    config = HDCIDConfig.tiny(dead_code_reset="none")  # resets draw on the device's own RNG stream
    cpu_model = HDCIDForPreTraining(config).train()
    device_model = HDCIDForPreTraining(config).train()
    device_model.load_state_dict(cpu_model.state_dict())
    device_model.to(DEVICE)
    batch = random_feature_batch(config, 8, torch.Generator().manual_seed(1))
    initial = _codebook_state(cpu_model)
    with torch.no_grad():  # the same global RNG state for both (dead-code resets draw from it)
        torch.manual_seed(2)
        cpu_model.extract_features(batch, 0)
        torch.manual_seed(2)
        device_model.extract_features({m: x.to(DEVICE) for m, x in batch.items()}, 0)
    a, b = _codebook_state(cpu_model), _codebook_state(device_model)
    assert sorted(a) == sorted(b) and a
    assert any(not torch.equal(a[k], initial[k]) for k in a if k.endswith("embed"))  # the update moved codes
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.allclose(a[k].double(), b[k].double(), rtol=1e-4, atol=1e-5), k


def _accelerate_step(mixed_precision: str):
    from accelerate import Accelerator

    from hf_hdcid.training.step import CLUBObjective, PretrainingStep

    accelerator = Accelerator(cpu=DEVICE == "cpu", mixed_precision=mixed_precision)
    torch.manual_seed(0)
    model = HDCIDForPreTraining(HDCIDConfig.tiny(warm_start_epoch=0)).train().to(accelerator.device)
    main_opt = torch.optim.Adam(model.main_parameters(), lr=1e-3)
    club_opt = torch.optim.Adam(model.club_parameters(), lr=1e-3)
    main_module, club_module, main_opt = accelerator.prepare(model, CLUBObjective(model), main_opt)
    step = PretrainingStep(model, main_opt, club_opt, club_steps=2, clip=0.5, accelerator=accelerator,
                           main_module=main_module, club_module=club_module)
    results = []
    for i in range(3):
        batch = random_feature_batch(model.config, 8, torch.Generator().manual_seed(i))
        results.append(step({m: x.to(accelerator.device) for m, x in batch.items()}, 0))
    return accelerator, model, results


@pytest.mark.parametrize("mixed_precision", ["bf16", "fp16"])
def test_mixed_precision_step_stays_finite_and_keeps_fp32_state(mixed_precision):
    if mixed_precision == "fp16" and DEVICE == "cpu":
        pytest.skip("Accelerate runs fp16 only on a GPU")
    accelerator, model, results = _accelerate_step(mixed_precision)
    assert all(torch.isfinite(r.output.loss) for r in results)
    assert all(r.club_loss is not None and torch.isfinite(r.club_loss) for r in results)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {v.dtype for k, v in model.state_dict().items() if ".codebook." in k and v.is_floating_point()} \
        == {torch.float32}
    if mixed_precision == "fp16":
        assert accelerator.scaler is not None  # loss scaling through Accelerate
        assert sum(r.optimizer_stepped and not r.step_skipped for r in results) >= 1


@pytest.mark.launch
def test_accelerate_launch_trains_with_ddp_on_the_gpus(tmp_path):
    from hf_hdcid.data.synthetic import build_synthetic_shards

    shards = build_synthetic_shards(tmp_path / "shards", HDCIDConfig.tiny(), {"pretrain": 32}, seed=0)
    processes = max(2, torch.cuda.device_count()) if DEVICE == "cpu" else max(1, min(2, torch.cuda.device_count()))
    command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes",
               str(processes), "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(REPO / "scripts" / "pretrain.py"), "--data", str(shards),
               "--output-dir", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "4", "--club-steps", "1",
               "--no-progress", "--report-to", "none", "--no-plot"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "model" / "training_info.json").read_text())
    assert info["num_processes"] == processes
    if processes > 1:
        assert info["distributed_type"] in ("MULTI_GPU", "MULTI_CPU"), info["distributed_type"]
    HDCIDForPreTraining.from_pretrained(tmp_path / "run" / "model")
