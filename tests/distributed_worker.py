"""Worker of tests/test_distributed.py, launched on two processes by ``torch.distributed.run``::

    python -m torch.distributed.run --nproc_per_node 2 --master_port PORT tests/distributed_worker.py OUTDIR

Every rank starts from the same seed, trains a tiny H-DCID for a few steps on its own batch (gradients
averaged by hand over the gloo group, so the parameters stay identical) and writes, after every step,
the codebook buffers of every layer to ``OUTDIR/rank{r}_step{s}.pt`` (step -1 = the initial state).
The argument ``used`` of every dead-code reset is recorded too, so that the test can tell which codes
were reset. Then one update of a bare :class:`MultimodalEMACodebook` on rank-specific semantic
features is written to ``OUTDIR/rank{r}_codebook.pt`` together with the inputs, for the
"all-reduced statistics == one process on the concatenated batch" check. Last, a bare two-stage
:class:`ResidualEMACodebook` makes ``RVQ_UPDATES`` updates on rank-specific features with a rank-specific
global RNG (resets from the third update) and writes every stage's buffers after each update to
``OUTDIR/rank{r}_rvq.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining, MultimodalEMACodebook
from hf_hdcid.modeling import ResidualEMACodebook
from hf_hdcid.data.synthetic import random_feature_batch

STEPS = 5
BATCH_SIZE = 3
BUFFERS = ("embed", "ema_count", "ema_weight", "unused_steps")


def model_config(**overrides) -> HDCIDConfig:
    # thresholds so small that codes unused for 3 updates in a row are reset (the 4th update)
    return HDCIDConfig.tiny(**{"warm_start_epoch": 0, "dropout": 0.0, "dead_code_threshold": 2,
                               "active_code_threshold": 1, **overrides})


def codebook_config() -> HDCIDConfig:
    # one update from the initial state (unused_steps = -1) can never make a code dead, so no reset
    # (which would draw random numbers) changes the statistics compared in the test
    return HDCIDConfig.tiny(dead_code_reset="none")


def rvq_config() -> HDCIDConfig:
    # two residual stages; a code unused for 2 updates is reset at the next one
    return HDCIDConfig.tiny(quantizer="rvq", num_quantizers=2, dead_code_threshold=1, active_code_threshold=1)


RVQ_UPDATES = 4
CODEBOOK_SEED = 1234
CODEBOOK_BATCH = 4


def codebook_inputs(config: HDCIDConfig, rank: int) -> dict:
    """Rank-specific semantic features {modality: [B, T, D]} (spread wide enough to use many codes)."""
    g = torch.Generator().manual_seed(1000 + rank)
    shape = (CODEBOOK_BATCH, config.num_frames, config.hidden_size)
    bound = 1.0 / config.codebook_size
    return {m: (torch.rand(shape, generator=g) * 2 - 1) * bound * 1.5 for m in config.modalities}


def average_gradients(params, world: int) -> None:
    """All-reduce-average the gradients of ``params`` in one flat buffer (missing grads count as 0)."""
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset: offset + n].view_as(p).clone()
        offset += n


def codebook_state(model) -> dict:
    return {f"layer{k}.{name}": getattr(layer.codebook, name).detach().clone()
            for k, layer in enumerate(model.hdcid.layers) for name in BUFFERS}


def main(outdir: Path) -> None:
    dist.init_process_group(backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)

    # ---------------------------------------------------------------- full training steps
    torch.manual_seed(0)
    config = model_config()
    model = HDCIDForPreTraining(config).train()
    main_params, club_params = model.main_parameters(), model.club_parameters()
    main_opt = torch.optim.Adam(main_params, lr=1e-3)
    club_opt = torch.optim.Adam(club_params, lr=1e-3)
    generator = torch.Generator().manual_seed(100 + rank)
    # from here on the global RNG differs between ranks (CPC time step, CLUB permutation, dead-code
    # replacement draws): identical codebooks then need the all-reduce *and* the reset broadcast
    torch.manual_seed(10 + rank)

    # record the (all-reduced) "used" mask of every dead-code reset call
    used_log = {k: [] for k in range(config.num_layers)}
    for k, layer in enumerate(model.hdcid.layers):
        original = layer.codebook.expire_codes_

        def recording(used, _original=original, _k=k):
            used_log[_k].append(used.detach().clone())
            return _original(used)

        layer.codebook.expire_codes_ = recording

    torch.save(codebook_state(model), outdir / f"rank{rank}_step-1.pt")
    for step in range(STEPS):
        batch = random_feature_batch(config, BATCH_SIZE, generator)
        features = model.extract_features(batch, epoch=0)
        club_opt.zero_grad()
        model.club_loss(features).backward()
        average_gradients(club_params, world)
        club_opt.step()
        out = model.compute_losses(batch, epoch=0, features=features)
        main_opt.zero_grad()
        out.loss.backward()
        average_gradients(main_params, world)
        main_opt.step()
        state = codebook_state(model)
        for k in range(config.num_layers):
            state[f"layer{k}.used"] = used_log[k][step]
        state["loss"] = out.loss.detach()
        torch.save(state, outdir / f"rank{rank}_step{step}.pt")
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.save({"params": params}, outdir / f"rank{rank}_params.pt")

    # ---------------------------------------------------------------- one bare codebook update
    cb_config = codebook_config()
    torch.manual_seed(CODEBOOK_SEED)
    codebook = MultimodalEMACodebook(cb_config)
    inputs = codebook_inputs(cb_config, rank)
    codebook(inputs, update=True)
    result = {f"input.{m}": x for m, x in inputs.items()}
    result.update({name: getattr(codebook, name).detach().clone() for name in BUFFERS})
    torch.save(result, outdir / f"rank{rank}_codebook.pt")

    # ---------------------------------------------------------------- residual VQ, every stage synced
    rvq_cfg = rvq_config()
    torch.manual_seed(CODEBOOK_SEED)
    rvq = ResidualEMACodebook(rvq_cfg)
    torch.manual_seed(20 + rank)  # reset draws differ per rank: only the broadcast keeps them equal
    rvq_result = {}
    for update in range(RVQ_UPDATES):
        rvq_inputs = codebook_inputs(rvq_cfg, rank + 10 * update)
        rvq(rvq_inputs, update=True)
        for m, x in rvq_inputs.items():
            rvq_result[f"update{update}.input.{m}"] = x
        for s, stage in enumerate(rvq.stages):
            for name in BUFFERS:
                rvq_result[f"update{update}.stage{s}.{name}"] = getattr(stage, name).detach().clone()
    torch.save(rvq_result, outdir / f"rank{rank}_rvq.pt")

    # ---------------------------------------------------------------- control: sync_codebook=False
    # the same model without synchronisation must end with different codebooks on the two ranks
    # (otherwise the identical codebooks above would prove nothing)
    torch.manual_seed(0)
    control = HDCIDForPreTraining(model_config(sync_codebook=False)).train()
    control_batch = random_feature_batch(control.config, BATCH_SIZE, torch.Generator().manual_seed(100 + rank))
    with torch.no_grad():
        control.extract_features(control_batch, epoch=0)
    torch.save(codebook_state(control), outdir / f"rank{rank}_unsynced.pt")

    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
