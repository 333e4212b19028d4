"""The quantizer family (config.quantizer): mmema, rvq, fsq, fdt with one calling convention."""

import itertools
import math
import os

import pytest
import torch

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining, HDCIDModel, MultimodalEMACodebook
from hf_hdcid.modeling import FiniteDiscreteTokens, FiniteScalarQuantizer, ResidualEMACodebook, sparsemax
from hf_hdcid.modeling.toc_hdcid import select_channels

from conftest import make_batch

QUANTIZERS = {
    "mmema": {},
    "rvq": {"quantizer": "rvq", "num_quantizers": 3},
    "fsq": {"quantizer": "fsq", "use_cmcm": False, "fsq_levels": [4, 3, 5]},
    "fdt": {"quantizer": "fdt", "fdt_num_tokens": 20, "fdt_temperature": 0.5, "fdt_query_hidden_size": 12},
}


def tiny(name, **overrides):
    return HDCIDConfig.tiny(warm_start_epoch=0, **{**QUANTIZERS[name], **overrides})


def trained(name, steps=2, **overrides):
    """A tiny pretraining model after ``steps`` loss evaluations in train mode (EMA buffers moved)."""
    torch.manual_seed(0)
    cfg = tiny(name, **overrides)
    model = HDCIDForPreTraining(cfg).train()
    for seed in range(steps):
        model.compute_losses(make_batch(cfg, seed=seed), epoch=0)
    return model


def ema_codebook_input(config, seed=0, batch=4):
    """Semantic features {modality: [B, T, D]} spread over the initial codebook's range."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, config.num_frames, config.hidden_size)
    return {m: (torch.rand(shape, generator=g) * 2 - 1) * 1.5 / config.codebook_size for m in config.modalities}


# ------------------------------------------------------------------ shapes and gradients
@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_shapes_and_gradients(name):
    torch.manual_seed(0)
    cfg = tiny(name)
    model = HDCIDForPreTraining(cfg).train()
    batch = make_batch(cfg)
    out = model.compute_losses(batch, epoch=0)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for k in range(cfg.num_layers):
        for m in cfg.modalities:
            grad = model.hdcid.layers[k].general[m].transformer.projection.weight.grad
            assert grad is not None and grad.abs().sum() > 0, (k, m)
        assert f"commit/audio/layer{k + 1}" in out.losses and (f"cmcm/layer{k + 1}" in out.losses) == cfg.use_cmcm
    book = model.hdcid.layers[0].codebook
    trainable = [p for p in book.parameters()]
    if name in ("fsq", "fdt"):  # learnt by gradient, not by EMA
        assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    else:
        assert not trainable
    enc = model.hdcid.eval().encode("video", batch["video"])
    assert [tuple(i.shape) for i in enc.indices] == [(3, cfg.num_frames)] * 2
    assert all(i.dtype == torch.long for i in enc.indices)
    assert [tuple(q.shape) for q in enc.quantized] == [(3, cfg.num_frames, cfg.hidden_size)] * 2
    assert enc.unified.shape == (3, cfg.num_frames, 2 * cfg.hidden_size)
    assert all(int(i.max()) < cfg.num_codes for i in enc.indices)


# ------------------------------------------------------------------ FSQ
def test_fsq_codes_lie_on_the_level_grid_and_every_level_is_reached():
    cfg = tiny("fsq")
    fsq = FiniteScalarQuantizer(cfg)
    h = torch.randn(4000, 3) * 4  # wide spread, large magnitudes included
    codes = fsq.codes(h)
    for i, levels in enumerate([4, 3, 5]):
        half = levels // 2
        grid = torch.tensor([(j - half) / half for j in range(levels)])
        values = codes[:, i].unique()
        assert torch.equal(values, grid), (levels, values)  # exactly the grid, every level reached
    assert fsq.num_codes == cfg.num_codes == 60


def test_fsq_indices_and_codes_round_trip():
    fsq = FiniteScalarQuantizer(tiny("fsq"))
    all_indices = torch.arange(60)
    codes = fsq.indices_to_codes(all_indices)  # [60, 3]
    assert codes.unique(dim=0).shape[0] == 60  # a bijection onto the grid
    assert torch.equal(fsq.codes_to_indices(codes), all_indices)
    # first channel least significant: index 1 moves only channel 0 one level up
    assert torch.equal(codes[1] - codes[0], torch.tensor([0.5, 0.0, 0.0]))
    # encode's indices are those of the codes it projects out
    z = torch.randn(2, 6, 16)
    idx, q = fsq.encode(z)
    torch.testing.assert_close(q, fsq.dequantize(idx))


def test_fsq_gradient_is_straight_through_the_rounding():
    fsq = FiniteScalarQuantizer(tiny("fsq"))
    h = torch.randn(5, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(fsq.codes(h).sum(), h)
    h2 = h.detach().requires_grad_()
    (expected,) = torch.autograd.grad((fsq.bound(h2) / torch.tensor([2.0, 1.0, 2.0])).sum(), h2)
    assert (grad > 0).all()
    torch.testing.assert_close(grad, expected)  # d round / dx taken as 1


# ------------------------------------------------------------------ sparsemax
def brute_force_simplex_projection(z: torch.Tensor) -> torch.Tensor:
    """argmin_p ||p - z||^2 over the simplex by trying every support set."""
    n, best, best_dist = z.numel(), None, math.inf
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            s = list(support)
            p = torch.zeros(n, dtype=torch.float64)
            p[s] = z[s] - (z[s].sum() - 1) / size
            if (p[s] < 0).any():
                continue
            dist = float(((p - z) ** 2).sum())
            if dist < best_dist:
                best, best_dist = p, dist
    return best


def test_sparsemax_matches_brute_force_projection_sums_to_one_and_is_sparse():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(40, 6, generator=g, dtype=torch.float64) * 1.5
    p = sparsemax(z, dim=-1)
    expected = torch.stack([brute_force_simplex_projection(row) for row in z])
    torch.testing.assert_close(p, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(p.sum(-1), torch.ones(40, dtype=torch.float64))
    assert (p >= 0).all() and (p == 0).any(dim=-1).float().mean() > 0.5  # mostly sparse rows
    # other axis, and a clear winner takes everything
    torch.testing.assert_close(sparsemax(z.t(), dim=0), p.t())
    assert torch.equal(sparsemax(torch.tensor([5.0, 0.0, -1.0])), torch.tensor([1.0, 0.0, 0.0]))


def test_sparsemax_gradient_is_zero_off_support_and_sums_to_zero():
    z = torch.tensor([[1.0, 0.8, -2.0, 0.5]], requires_grad=True)
    p = sparsemax(z)
    (p * torch.tensor([[1.0, 2.0, 3.0, 4.0]])).sum().backward()
    assert p[0, 2] == 0 and z.grad[0, 2] == 0
    torch.testing.assert_close(z.grad.sum(), torch.tensor(0.0))


# ------------------------------------------------------------------ FDT
def test_fdt_output_is_the_sparse_weighted_token_sum_and_indices_the_top_token():
    torch.manual_seed(0)
    fdt = FiniteDiscreteTokens(tiny("fdt"))
    z = torch.randn(2, 6, 16)
    w = fdt.weights(z)  # [2, 6, 20]
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 6))
    scores = fdt.query(z) @ fdt.tokens.t() / (4.0 * 0.5)  # 1/sqrt(D) with D = 16, temperature 0.5
    torch.testing.assert_close(w, sparsemax(scores))
    idx, q = fdt.encode(z)
    assert torch.equal(idx, w.argmax(-1))
    torch.testing.assert_close(q, w @ fdt.tokens)
    out = fdt({"audio": z, "video": z.flip(0)}, update=True)
    assert out.codebook is fdt.tokens and float(out.commitment["audio"]) == 0.0
    assert 1 <= int(out.active_codes) <= 20 and out.diagnostics["fdt_support/audio"] >= 1


# ------------------------------------------------------------------ RVQ
def test_rvq_with_one_stage_equals_the_plain_codebook():
    cfg_plain = HDCIDConfig.tiny(dead_code_threshold=1, active_code_threshold=1)
    cfg_rvq = HDCIDConfig.tiny(dead_code_threshold=1, active_code_threshold=1, quantizer="rvq", num_quantizers=1)
    torch.manual_seed(5)
    plain = MultimodalEMACodebook(cfg_plain)
    torch.manual_seed(5)
    rvq = ResidualEMACodebook(cfg_rvq)
    resets = 0
    for step in range(4):  # resets happen from the 3rd update
        z = {m: x.requires_grad_() for m, x in ema_codebook_input(cfg_plain, seed=step).items()}
        previous_unused = plain.unused_steps.clone()
        torch.manual_seed(100 + step)
        a = plain(z, update=True)
        torch.manual_seed(100 + step)  # the reset's random draws
        b = rvq(z, update=True)
        for m in z:
            assert torch.equal(a.quantized[m], b.quantized[m])
            assert torch.equal(a.indices[m], b.indices[m])
            assert torch.equal(a.commitment[m], b.commitment[m])
            assert torch.equal(a.perplexity[m], b.perplexity[m])
        assert torch.equal(a.codebook, b.codebook) and torch.equal(a.equal_num, b.equal_num)
        for name in ("embed", "ema_count", "ema_weight", "unused_steps"):
            assert torch.equal(getattr(plain, name), getattr(rvq.stages[0], name)), (step, name)
        used = torch.zeros(cfg_plain.codebook_size, dtype=torch.bool)
        used[torch.cat([i.reshape(-1) for i in a.indices.values()])] = True
        resets += int((~used & (previous_unused + 1 > 1)).sum())
    assert resets > 0
    z = torch.randn(2, 6, 16) / 24
    assert all(torch.equal(x, y) for x, y in zip(plain.encode(z), rvq.encode(z)))


def test_rvq_one_stage_model_matches_the_default_model_step_for_step():
    losses, states = [], []
    for kw in ({}, {"quantizer": "rvq", "num_quantizers": 1}):
        torch.manual_seed(0)
        cfg = HDCIDConfig.tiny(warm_start_epoch=0, **kw)
        model = HDCIDForPreTraining(cfg).train()
        out = [model.compute_losses(make_batch(cfg, seed=s), epoch=0).loss.detach() for s in range(2)]
        losses.append(torch.stack(out))
        states.append([v for _, v in sorted((k.replace("stages.0.", ""), v) for k, v in model.state_dict().items())])
    assert torch.equal(losses[0], losses[1])
    assert all(torch.equal(a, b) for a, b in zip(*states))


def test_rvq_code_is_the_sum_of_stage_codes_on_residuals():
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny(quantizer="rvq", num_quantizers=3)
    rvq = ResidualEMACodebook(cfg)
    z = torch.randn(2, 6, 16) / 24
    stage_idx = rvq.quantize_stages(z)  # [2, 6, 3]
    residual = z
    for s, stage in enumerate(rvq.stages):
        assert torch.equal(stage_idx[..., s], stage.quantize(residual))
        residual = residual - stage.dequantize(stage_idx[..., s])
    idx, q = rvq.encode(z)
    assert torch.equal(idx, stage_idx[..., 0])
    torch.testing.assert_close(q, rvq.dequantize(stage_idx), rtol=0, atol=0)
    # each stage can only lower the error: it may pick the code nearest to 0
    first = rvq.stages[0].dequantize(idx)
    assert (z - q).norm() < (z - first).norm()
    # commitment = sum of the stages' commitments to their residuals; all stages updated
    before = [s.embed.clone() for s in rvq.stages]
    out = rvq({"audio": z, "video": z.flip(1)}, update=True)
    assert "perplexity_stage3/audio" in out.diagnostics
    assert all(not torch.equal(b, s.embed) for b, s in zip(before, rvq.stages))


# ------------------------------------------------------------------ save / load and TOC
@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_save_load_round_trip_is_bit_exact(name, tmp_path):
    model = trained(name)
    model.save_pretrained(tmp_path)
    assert "quantizer_family_hdcid.py" in os.listdir(tmp_path)  # remote code carries the family
    back = HDCIDForPreTraining.from_pretrained(tmp_path)
    own, loaded = model.state_dict(), back.state_dict()
    assert own.keys() == loaded.keys()
    for key, value in own.items():
        assert value.dtype == loaded[key].dtype and torch.equal(value, loaded[key]), key
    assert back.config.quantizer == name
    x = make_batch(model.config, seed=7)["text"]
    a, b = model.hdcid.eval().encode("text", x), back.hdcid.eval().encode("text", x)
    assert torch.equal(a.unified, b.unified) and all(torch.equal(i, j) for i, j in zip(a.indices, b.indices))


def test_toc_per_rvq_stage_and_on_the_fdt_token_bank():
    rvq = trained("rvq", steps=1)
    channels = rvq.compute_toc(5, stage=2)
    assert channels == [select_channels(layer.codebook.stages[2].embed, 5).tolist() for layer in rvq.hdcid.layers]
    assert rvq.config.toc_settings["stage"] == 2
    assert rvq.compute_toc(5) == [select_channels(l.codebook.stages[0].embed, 5).tolist() for l in rvq.hdcid.layers]
    with pytest.raises(ValueError, match=r"stage: expected an int in \[0, 3\)"):
        rvq.compute_toc(5, stage=3)
    fdt = trained("fdt", steps=1)
    assert fdt.compute_toc(6) == [select_channels(l.codebook.tokens, 6).tolist() for l in fdt.hdcid.layers]
    assert "stage" not in fdt.config.toc_settings
    out = fdt.hdcid.eval().encode("audio", make_batch(fdt.config)["audio"], apply_toc=True)
    assert out.unified.shape[-1] == 12
    with pytest.raises(ValueError, match="stage: expected 0"):
        fdt.compute_toc(6, stage=1)


def test_fsq_says_why_toc_does_not_apply():
    model = HDCIDModel(tiny("fsq"))
    with pytest.raises(ValueError, match="TOC is not available with quantizer='fsq': TOC ranks the channels of a"):
        model.compute_toc(4)
    with pytest.raises(ValueError, match="apply_toc=True is not available with quantizer='fsq'"):
        model.encode("audio", make_batch(model.config)["audio"], apply_toc=True)
    with pytest.raises(ValueError, match=r"HDCIDConfig.toc_channels: expected None with quantizer='fsq'"):
        tiny("fsq", toc_channels=[[0], [1]])


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize("overrides, field", [
    ({"quantizer": "vq"}, "quantizer"),
    ({"num_quantizers": 2}, "num_quantizers"),
    ({"quantizer": "rvq", "num_quantizers": 0}, "num_quantizers"),
    ({"quantizer": "rvq", "fsq_levels": [8, 5]}, "fsq_levels"),
    ({"quantizer": "fsq", "use_cmcm": False, "fsq_levels": [8, 1]}, "fsq_levels"),
    ({"quantizer": "fsq", "use_cmcm": False, "fsq_levels": []}, "fsq_levels"),
    ({"quantizer": "fsq"}, "use_cmcm"),
    ({"quantizer": "fsq", "use_cmcm": False, "ema_decay": 0.9}, "ema_decay"),
    ({"quantizer": "fsq", "use_cmcm": False, "codebook_size": 50}, "codebook_size"),
    ({"quantizer": "fdt", "dead_code_threshold": 500}, "dead_code_threshold"),
    ({"quantizer": "fdt", "commitment_cost": 0.5}, "commitment_cost"),
    ({"quantizer": "fdt", "fdt_temperature": 0.0}, "fdt_temperature"),
    ({"quantizer": "fdt", "fdt_num_tokens": 1}, "fdt_num_tokens"),
    ({"quantizer": "fdt", "fdt_query_hidden_size": 0}, "fdt_query_hidden_size"),
    ({"fdt_temperature": 2.0}, "fdt_temperature"),
    ({"quantizer": "rvq", "fdt_num_tokens": 8}, "fdt_num_tokens"),
])
def test_bad_option_combinations_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"^HDCIDConfig\.{field}: expected .*, got "):
        HDCIDConfig.tiny(**overrides)


def test_tiny_preset_drops_ema_only_values_for_fsq_and_fdt():
    fsq = HDCIDConfig.tiny(quantizer="fsq", use_cmcm=False)
    assert fsq.num_codes == 1000 and fsq.fsq_levels_or_default == [8, 5, 5, 5] and fsq.hidden_size == 16
    fdt = HDCIDConfig.tiny(quantizer="fdt")
    assert fdt.num_codes == fdt.codebook_size == 24 and fdt.dead_code_threshold == 300
    assert HDCIDConfig.tiny(quantizer="rvq", num_quantizers=4).dead_code_threshold == 30
    assert HDCIDConfig().quantizer == "mmema" and HDCIDConfig().num_quantizers == 1
