"""The data-parallel step is the large-batch step: with every term of eq. 14 a mean over clips
(tests/equivalence_worker.py: no CPC / CMCM, closed-form CLUB with zero outputs, no resets, no dropout),

* two processes at batch B (DDP over gloo, ``accelerate launch --multi_gpu``) end with the weights and
  codebooks of one process at batch 2B after 3 optimiser steps, and
* one process with 2 micro-batches of B per step (``accelerator.accumulate``) ends with the weights of
  one process at batch 2B,

in float64 within max |difference| <= 1e-9 over every parameter and codebook buffer. (In float32 the
sums over clips in another order differ by ~1e-7 relative, and Adam turns that into updates of up to
lr, 8e-4 measured, for the weights whose true gradient is ~0; float64 leaves 1e-12.) Both runs see the same clips:
the seedable sampler's batches of B, taken two at a time, are its batches of 2B.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import free_port, minilm_synthetic_shards, reset_accelerate_state

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("equivalence_worker.py")
B, CLIPS, STEPS = 4, 48, 3
TOLERANCE = 1e-9


def _worker():
    spec = importlib.util.spec_from_file_location("hdcid_equivalence_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _worker()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return minilm_synthetic_shards(tmp_path_factory.mktemp("equivalence") / "shards", {"pretrain": CLIPS})


def settings(shards, out, batch_size, **extra) -> dict:
    return dict(data=str(shards), output_dir=str(out), epochs=1, max_steps=STEPS, batch_size=batch_size,
                club_steps=0, save_every_steps=0, progress=False, report_to="none", plot=False, toc_num_channels=0,
                model_config=dict(worker.DECOMPOSABLE), **extra)


def max_difference(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def moved(a: dict, b: dict) -> float:
    return max_difference(a, b)


def test_two_processes_at_batch_b_equal_one_process_at_batch_2b(shards, tmp_path):
    single = tmp_path / "single"
    worker.train(settings(shards, tmp_path / "run1", 2 * B), str(single))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(WORKER),
               json.dumps(settings(shards, tmp_path / "run2", B)), str(tmp_path / "ddp")]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    reference = load_file(f"{single}.rank0.safetensors")
    rank0 = load_file(tmp_path / "ddp.rank0.safetensors")
    rank1 = load_file(tmp_path / "ddp.rank1.safetensors")
    assert max_difference(rank0, rank1) == 0.0  # the ranks hold identical weights and codebooks
    assert max_difference(rank0, reference) <= TOLERANCE, _report(rank0, reference)
    # not vacuous: 3 steps moved the weights far more than the tolerance
    initial = load_file(f"{single}.initial.safetensors")
    assert moved(reference, initial) > 1e-3
    # warm start (layer 2 from epoch 3): under DDP the unused layer keeps no gradient (None, not zeros),
    # so Adam never touched it: no Adam state, and the initial weights and codebook on every rank
    upper_prefixes = ("hdcid.layers.1.", "decoders.1.", "cpc.1.")
    upper = [k for k in initial if k.startswith(upper_prefixes)]
    assert upper and all(torch.equal(rank0[k], initial[k]) for k in upper)
    for rank in (0, 1):
        with_state = json.loads((tmp_path / f"ddp.rank{rank}.adam.json").read_text())
        assert with_state and not [n for n in with_state if n.startswith(upper_prefixes)]
    assert not all(torch.equal(rank0[k], initial[k]) for k in initial if k.startswith("hdcid.layers.0."))
    worker.train(settings(shards, tmp_path / "run3", B), str(tmp_path / "small"))
    assert max_difference(load_file(tmp_path / "small.rank0.safetensors"), reference) > 100 * TOLERANCE


def test_two_micro_batches_of_b_equal_one_batch_of_2b(shards, tmp_path):
    """With the codebooks frozen: under accumulation the EMA codebooks update once per micro-batch (as
    the original updates them once per forward), so 2 micro-batches of B are one gradient step of 2B
    but two codebook updates of B; the gradients, the loss scaling by 1/2, the skipped optimiser steps
    and DDP's no_sync are what this checks."""
    worker.train(settings(shards, tmp_path / "big", 2 * B), str(tmp_path / "big"), freeze_codebooks=True)
    reset_accelerate_state()
    worker.train(settings(shards, tmp_path / "acc", B, gradient_accumulation_steps=2), str(tmp_path / "acc"),
                 freeze_codebooks=True)
    big = load_file(tmp_path / "big.rank0.safetensors")
    accumulated = load_file(tmp_path / "acc.rank0.safetensors")
    assert max_difference(accumulated, big) <= TOLERANCE, _report(accumulated, big)
    assert moved(big, load_file(tmp_path / "big.initial.safetensors")) > 1e-3
    log = [json.loads(line) for line in (tmp_path / "acc" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and [r["batch"] for r in log] == [2, 4, 6]

def _report(a, b, n=8):  # debugging aid: the keys that differ most
    diffs = sorted(((a[k].double() - b[k].double()).abs().max().item(), k) for k in a if a[k].is_floating_point())
    return diffs[-n:]
