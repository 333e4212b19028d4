"""Codebook synchronisation across processes (gloo, two CPU processes via torch.distributed.run).

The worker (tests/distributed_worker.py) trains a tiny H-DCID on a different batch per rank, with the
global RNG deliberately different per rank, and writes the codebook buffers after every step. Checks:

* after every step both ranks hold bit-identical codebook buffers (embed, N, W, unused steps) of
  every layer, and identical parameters at the end;
* the codebooks moved away from their initial state, and dead-code resets happened (so the
  broadcast of the replacement codes was exercised, with per-rank random draws);
* without ``sync_codebook`` the same run gives different codebooks (the check is not vacuous);
* one EMA update with all-reduced statistics equals one update of a single process on the two
  ranks' inputs concatenated along the batch axis;
* the same two holds for every stage of a residual VQ (``quantizer="rvq"``), resets included.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from hf_hdcid import MultimodalEMACodebook
from hf_hdcid.modeling import ResidualEMACodebook

from conftest import free_port

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is required"
)

WORKER_PATH = Path(__file__).with_name("distributed_worker.py")
REPO_ROOT = Path(__file__).resolve().parents[1]
WORLD = 2


def _load_worker():
    spec = importlib.util.spec_from_file_location("hdcid_distributed_worker", WORKER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


@pytest.fixture(scope="module")
def outdir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distributed")
    env = dict(os.environ)
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               HF_HOME=str(out / "hf_home"), TOKENIZERS_PARALLELISM="false")
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only: no dependence on host name resolution
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(WORLD),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(WORKER_PATH), str(out)]
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"distributed worker timed out after 240 s\nstdout:\n{err.stdout}\nstderr:\n{err.stderr}")
    assert proc.returncode == 0, (
        f"distributed worker failed (rc {proc.returncode})\nstdout:\n{proc.stdout[-5000:]}\n"
        f"stderr:\n{proc.stderr[-8000:]}"
    )
    return out


def _load(outdir: Path, rank: int, name: str) -> dict:
    return torch.load(outdir / f"rank{rank}_{name}.pt", weights_only=True)


def _steps(outdir: Path, rank: int) -> list[dict]:
    """Codebook states of ``rank``: index 0 = initial state, index s + 1 = after step s."""
    return [_load(outdir, rank, f"step{s}") for s in range(-1, worker.STEPS)]


def _layers() -> int:
    return worker.model_config().num_layers


def test_ranks_hold_identical_codebooks_after_every_step(outdir):
    rank0, rank1 = _steps(outdir, 0), _steps(outdir, 1)
    for step, (a, b) in enumerate(zip(rank0, rank1), start=-1):
        for k in range(_layers()):
            for name in worker.BUFFERS:
                key = f"layer{k}.{name}"
                assert torch.equal(a[key], b[key]), f"{key} differs between ranks after step {step}"
    # the ranks really trained on different data
    assert not torch.equal(rank0[1]["loss"], rank1[1]["loss"])
    # and the averaged gradients kept every parameter identical
    assert torch.equal(_load(outdir, 0, "params")["params"], _load(outdir, 1, "params")["params"])


def test_codebooks_changed_from_init(outdir):
    states = _steps(outdir, 0)
    init, last = states[0], states[-1]
    for k in range(_layers()):
        assert (init[f"layer{k}.unused_steps"] == -1).all()
        assert not torch.allclose(init[f"layer{k}.embed"], last[f"layer{k}.embed"])
        assert not torch.allclose(init[f"layer{k}.ema_weight"], last[f"layer{k}.ema_weight"])
        assert (last[f"layer{k}.ema_count"] > 0).all()
        assert (last[f"layer{k}.unused_steps"] >= 0).all()
        for step, state in enumerate(states[1:]):
            assert state[f"layer{k}.used"].any(), f"layer {k} step {step}: no code used"


def test_dead_code_resets_happened_and_are_synchronised(outdir):
    config = worker.model_config()
    assert config.dead_code_reset == "full"
    states = _steps(outdir, 0)
    for k in range(_layers()):
        total_resets = 0
        for step in range(worker.STEPS):
            prev, cur = states[step], states[step + 1]
            used = cur[f"layer{k}.used"]
            prev_unused = prev[f"layer{k}.unused_steps"]
            dead = ~used & (prev_unused + 1 > config.dead_code_threshold)
            unused = cur[f"layer{k}.unused_steps"]
            # the counter: 0 for used and reset codes, +1 for the others
            assert torch.equal(unused[used | dead], torch.zeros_like(unused[used | dead]))
            assert torch.equal(unused[~used & ~dead], prev_unused[~used & ~dead] + 1)
            if not dead.any():
                continue
            total_resets += int(dead.sum())
            embed, weight, count = (cur[f"layer{k}.{n}"] for n in ("embed", "ema_weight", "ema_count"))
            # "full" reset: the replacement is written into W too, with N = 1
            assert torch.equal(embed[dead], weight[dead])
            assert torch.equal(count[dead], torch.ones_like(count[dead]))
            assert not torch.equal(embed[dead], prev[f"layer{k}.embed"][dead])
            # each replacement is an active code (used at this update) plus U(-noise, noise)
            active = embed[used]  # [n_active, D]
            gap = (embed[dead][:, None, :] - active[None, :, :]).abs().amax(-1).amin(-1)
            assert (gap <= config.dead_code_noise * (1 + 1e-4)).all(), gap
        assert total_resets > 0, f"no dead-code reset happened in layer {k} within {worker.STEPS} steps"


def test_unsynchronised_ranks_diverge(outdir):
    """Control: with sync_codebook=False one update on different data gives different codebooks."""
    a, b = _load(outdir, 0, "unsynced"), _load(outdir, 1, "unsynced")
    assert not torch.equal(a["layer0.ema_count"], b["layer0.ema_count"])
    assert not torch.equal(a["layer0.embed"], b["layer0.embed"])


def test_synchronised_ema_statistics_equal_single_process_on_concatenated_batch(outdir):
    assert not (dist.is_available() and dist.is_initialized())
    config = worker.codebook_config()
    per_rank = [_load(outdir, r, "codebook") for r in range(WORLD)]
    for name in worker.BUFFERS:
        assert torch.equal(per_rank[0][name], per_rank[1][name]), f"{name} differs between ranks"
    inputs = [{m: d[f"input.{m}"] for m in config.modalities} for d in per_rank]
    assert not torch.equal(inputs[0][config.modalities[0]], inputs[1][config.modalities[0]])
    concatenated = {m: torch.cat([x[m] for x in inputs], dim=0) for m in config.modalities}

    def single_process_update(batch: dict) -> MultimodalEMACodebook:
        torch.manual_seed(worker.CODEBOOK_SEED)
        codebook = MultimodalEMACodebook(config)
        codebook(batch, update=True)
        return codebook

    reference = single_process_update(concatenated)
    distributed = per_rank[0]
    for name in ("ema_count", "ema_weight", "embed"):
        torch.testing.assert_close(distributed[name], getattr(reference, name), rtol=1e-5, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
    assert torch.equal(distributed["unused_steps"], reference.unused_steps)
    # not vacuous: one rank's inputs alone give other statistics, and many codes are in use
    alone = single_process_update(inputs[0])
    assert not torch.allclose(distributed["ema_count"], alone.ema_count, rtol=1e-3, atol=1e-4)
    torch.manual_seed(worker.CODEBOOK_SEED)
    fresh = MultimodalEMACodebook(config)
    used = torch.cat([fresh.quantize(z).reshape(-1) for z in concatenated.values()]).unique()
    assert used.numel() >= 4, used


def test_rvq_stages_stay_synchronised_and_equal_one_process_on_the_concatenated_batch(outdir):
    config = worker.rvq_config()
    a, b = _load(outdir, 0, "rvq"), _load(outdir, 1, "rvq")
    resets = 0
    for update in range(worker.RVQ_UPDATES):
        for s in range(config.num_quantizers):
            for name in worker.BUFFERS:
                key = f"update{update}.stage{s}.{name}"
                assert torch.equal(a[key], b[key]), f"{key} differs between ranks"
            if update:
                resets += int((a[f"update{update}.stage{s}.ema_count"] == 1).sum())
    assert resets > 0  # "full" resets set N = 1: the broadcast of replacements was exercised
    # the first update (no reset possible yet) equals one process on both ranks' inputs
    torch.manual_seed(worker.CODEBOOK_SEED)
    reference = ResidualEMACodebook(config)
    batch = {m: torch.cat([a[f"update0.input.{m}"], b[f"update0.input.{m}"]]) for m in config.modalities}
    reference(batch, update=True)
    assert not torch.equal(a["update0.input.audio"], b["update0.input.audio"])
    for s, stage in enumerate(reference.stages):
        for name in ("ema_count", "ema_weight", "embed"):
            torch.testing.assert_close(a[f"update0.stage{s}.{name}"], getattr(stage, name), rtol=1e-5, atol=1e-6)
        assert torch.equal(a[f"update0.stage{s}.unused_steps"], stage.unused_steps)
