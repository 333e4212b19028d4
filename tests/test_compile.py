"""``dynamo_backend="inductor"``: torch.compile applied by Accelerate to the model's forward gives the
losses of the eager run. The first step's loss (same weights, same batch) agrees to float32 rounding;
later steps agree to 0.5 %: inductor's fused reductions change the last bits of the gradients and Adam
turns that into different updates of the weights whose gradient is ~0 (the eager aot_eager backend,
which does not fuse, reproduces the eager losses to 1e-6)."""

import json
import math

import pytest

from hf_hdcid import HDCIDConfig
from hf_hdcid.training import PretrainConfig, pretrain


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    import torch._dynamo
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    torch._dynamo.reset()


def _losses(shards, out, backend) -> list[float]:
    pretrain(PretrainConfig(data=str(shards), output_dir=str(out), epochs=1, max_steps=3, batch_size=8,
                            club_steps=1, progress=False, report_to="none", plot=False, save_every_steps=0,
                            toc_channels=0, dynamo_backend=backend, model_config={"modalities": ["audio", "video"]}))
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_inductor_compiled_forward_gives_the_eager_losses(tmp_path):
    from accelerate.state import AcceleratorState, GradientState
    from hf_hdcid.data.synthetic import build_synthetic_shards

    shards = build_synthetic_shards(tmp_path / "shards", HDCIDConfig.tiny(modalities=["audio", "video"]),
                                    {"pretrain": 32}, seed=0)
    eager = _losses(shards, tmp_path / "eager", "no")
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    compiled = _losses(shards, tmp_path / "inductor", "inductor")
    assert len(eager) == len(compiled) == 3 and all(math.isfinite(v) for v in compiled)
    assert math.isclose(compiled[0], eager[0], rel_tol=1e-5), (compiled, eager)
    assert all(math.isclose(c, e, rel_tol=5e-3) for c, e in zip(compiled, eager)), (compiled, eager)
    assert eager[0] != eager[1]  # the steps trained
