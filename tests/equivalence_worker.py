"""Worker of tests/test_training_equivalence.py: pretrains with :func:`hf_hdcid.training.setup.setup_run`
and the loop's own epoch loop, after making every term of eq. 14 a mean over clips (see the test), and
writes the final state_dict of this process as safetensors.

    python tests/equivalence_worker.py SETTINGS_JSON OUT_FILE      (also under accelerate launch)
"""

from __future__ import annotations

import json
import sys

import torch
from safetensors.torch import save_file

#: HDCIDConfig overrides that leave only terms that are means over clips: no CPC / CMCM (their negatives
#: are the other clips of the batch), the closed-form CLUB estimate (no random pairing), no dead-code
#: resets (random draws), no dropout
DECOMPOSABLE = {"cpc_self_weight": 0.0, "cpc_cross_weight": 0.0, "use_cmcm": False, "club_estimator": "full",
                "dead_code_reset": "none", "dropout": 0.0}


def zero_club_outputs(model) -> None:
    """mu(x) = 0 and logvar(x) = 0 for every CLUB network: the MI estimate is then 0 for any batch (its
    gradient too), so it couples no clips (the CLUB networks themselves are not trained: club_steps 0)."""
    with torch.no_grad():
        for layer in model.club:
            for estimator in layer.values():
                for head in (estimator.mu, estimator.logvar):
                    last = [m for m in head if isinstance(m, torch.nn.Linear)][-1]
                    last.weight.zero_()
                    last.bias.zero_()


def train(settings: dict, out_file: str, dtype: str = "float64", freeze_codebooks: bool = False) -> None:
    """float64 (default): in float32 the sums over clips in another order differ by ~1e-7 relative, and
    Adam turns that into updates of up to lr for the weights whose true gradient is ~0.
    ``freeze_codebooks``: the model runs in eval mode (no EMA update; dropout is 0 anyway)."""
    from hf_hdcid.training.config import PretrainConfig
    from hf_hdcid.training.loop import run_epochs, start_run_files
    from hf_hdcid.training.setup import setup_run

    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # the model is built in it; inputs are cast to it
    try:
        run = setup_run(PretrainConfig(**settings))
        zero_club_outputs(run.model)
        if freeze_codebooks:
            run.model.eval()
        rank = run.accelerator.process_index
        if rank == 0:
            save_file(_cpu_state(run.model), f"{out_file}.initial.safetensors")
        start_run_files(run)
        run_epochs(run)
        save_file(_cpu_state(run.model), f"{out_file}.rank{rank}.safetensors")
        # which parameters Adam has a state for (a parameter whose gradient stayed None has none)
        names = {id(p): n for n, p in run.model.named_parameters()}
        with open(f"{out_file}.rank{rank}.adam.json", "w") as f:
            json.dump(sorted(names[id(p)] for p in run.main_optimizer.optimizer.state), f)
        run.accelerator.wait_for_everyone()
    finally:
        torch.set_default_dtype(previous)


def _cpu_state(model) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}

if __name__ == "__main__":
    train(json.loads(sys.argv[1]), sys.argv[2], *sys.argv[3:])
