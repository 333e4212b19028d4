"""MultimodalEMACodebook: nearest code, multimodal EMA step, commitment, resets, dtype rules."""


import pytest
import torch

from hf_hdcid import HDCIDConfig, HDCIDModel, MultimodalEMACodebook
from hf_hdcid.modeling.codebook_hdcid import nearest_code

from conftest import make_batch


def small_codebook(**overrides):
    cfg = HDCIDConfig.tiny(hidden_size=2, num_attention_heads=1, codebook_size=3, **overrides)
    cb = MultimodalEMACodebook(cfg).double()
    with torch.no_grad():
        cb.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64))
        cb.ema_weight.copy_(cb.embed)
        cb.ema_count.copy_(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))
    return cfg, cb


def test_nearest_code_equals_brute_force():
    g = torch.Generator().manual_seed(1)
    z, e = torch.randn(50, 7, generator=g), torch.randn(11, 7, generator=g)
    exact = [[float(((z[i].double() - e[k].double()) ** 2).sum()) for k in range(11)] for i in range(50)]
    brute = torch.tensor([min(range(11), key=row.__getitem__) for row in exact])
    # no near-tie: the best and second-best codes are further apart than any fp32 rounding of the
    # addmm expansion, so every CPU's kernels must pick the brute-force code
    assert min(sorted(row)[1] - sorted(row)[0] for row in exact) > 1e-3
    assert torch.equal(nearest_code(z, e), brute)


def test_one_ema_step_equals_hand_computation():
    cfg, cb = small_codebook(modalities=["audio", "video", "text"], ema_decay=0.9, ema_epsilon=0.01,
                             dead_code_reset="none")
    # B=1, T=2: positions chosen so the nearest codes are known by eye
    z = {
        "audio": torch.tensor([[[0.1, 0.0], [0.9, 0.1]]], dtype=torch.float64),  # codes 0, 1
        "video": torch.tensor([[[0.0, 1.9], [1.2, 0.0]]], dtype=torch.float64),  # codes 2, 1
        "text": torch.tensor([[[0.0, 0.1], [0.1, 2.2]]], dtype=torch.float64),   # codes 0, 2
    }
    out = cb(z, update=True)
    assert [out.indices[m].tolist() for m in z] == [[[0, 1]], [[2, 1]], [[0, 2]]]
    # hand computation of the sequential multimodal EMA (audio -> video -> text)
    g, eps, L = 0.9, 0.01, 3
    n_ = [0.5, 1.0, 2.0]
    w_ = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]
    assign = {"audio": [0, 1], "video": [2, 1], "text": [0, 2]}
    feats = {m: z[m][0].tolist() for m in z}
    for m in ("audio", "video", "text"):
        counts = [sum(1 for k in assign[m] if k == c) for c in range(L)]
        n_ = [g * n_[c] + (1 - g) * counts[c] for c in range(L)]
        total = sum(n_)
        n_ = [(n_[c] + eps) / (total + L * eps) * total for c in range(L)]
        sums = [[0.0, 0.0] for _ in range(L)]
        for pos, code in enumerate(assign[m]):
            for o in z:
                w = 0.5 if o == m else 0.25
                for d in range(2):
                    sums[code][d] += w * feats[o][pos][d]
        w_ = [[g * w_[c][d] + (1 - g) * sums[c][d] for d in range(2)] for c in range(L)]
    expected_embed = [[w_[c][d] / n_[c] for d in range(2)] for c in range(L)]
    torch.testing.assert_close(cb.ema_count, torch.tensor(n_, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cb.ema_weight, torch.tensor(w_, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cb.embed, torch.tensor(expected_embed, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # codes and losses were read from the codebook before the update
    assert torch.equal(out.codebook[1], torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert cb.unused_steps.tolist() == [0, 0, 0]


def test_commitment_equals_brute_force_original_weights():
    cfg, cb = small_codebook(modalities=["audio", "video", "text"], commitment_cross_weight=1.0)
    z = {m: torch.randn(2, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
         for i, m in enumerate(cfg.modalities)}
    out = cb(z, update=False)
    codes = {m: cb.embed[out.indices[m]] for m in z}
    for m in z:
        own = ((z[m] - codes[m]) ** 2).mean()
        cross = sum(((z[m] - codes[o]) ** 2).mean() for o in z if o != m)
        expected = 0.25 * (2.0 * own + 0.5 * cross)  # original: 2*beta own + 0.5*beta each other
        torch.testing.assert_close(out.commitment[m], expected)


def test_commitment_paper_weights_and_two_modalities():
    cfg, cb = small_codebook(modalities=["audio", "video"], commitment_own_weight=1.0)  # default: no cross terms
    z = {m: torch.randn(2, 3, 2, dtype=torch.float64) for m in cfg.modalities}
    out = cb(z, update=False)
    for m in z:
        torch.testing.assert_close(out.commitment[m], 0.25 * ((z[m] - cb.embed[out.indices[m]]) ** 2).mean())
    cfg, cb = small_codebook(modalities=["audio", "video"], commitment_cross_weight=1.0)  # original AV: 2*beta own + beta cross
    out = cb(z, update=False)
    expected = 0.25 * (2 * ((z["audio"] - cb.embed[out.indices["audio"]]) ** 2).mean()
                       + ((z["audio"] - cb.embed[out.indices["video"]]) ** 2).mean())
    torch.testing.assert_close(out.commitment["audio"], expected)


def test_straight_through_value_is_code_and_gradient_is_identity():
    cfg, cb = small_codebook(modalities=["audio", "video"])
    z = {m: torch.randn(1, 3, 2, dtype=torch.float64, requires_grad=True) for m in cfg.modalities}
    out = cb(z, update=False)
    q = out.quantized["audio"]
    assert torch.equal(q.detach(), cb.embed[out.indices["audio"]])
    q.sum().backward()
    assert torch.equal(z["audio"].grad, torch.ones_like(z["audio"]))


def test_dead_codes_are_reset_from_active_codes_without_host_loops():
    cfg, cb = small_codebook(modalities=["audio", "video"], dead_code_threshold=2, active_code_threshold=1,
                             dead_code_noise=0.0, dead_code_reset="full")
    z = {m: torch.tensor([[[0.05, 0.0], [0.0, 0.05]]], dtype=torch.float64) for m in cfg.modalities}
    for _ in range(3):  # only code 0 is ever used; unused counters go -1 -> 0 -> 1 -> 2
        cb(z, update=True)
    assert cb.unused_steps.tolist() == [0, 2, 2]
    cb(z, update=True)
    # codes 1 and 2 unused for 3 > 2 updates: reset to a copy of the only active code (0), noise 0
    assert cb.unused_steps.tolist() == [0, 0, 0]
    assert torch.equal(cb.embed[1], cb.embed[0]) and torch.equal(cb.embed[2], cb.embed[0])
    assert torch.equal(cb.ema_weight[1], cb.embed[0]) and cb.ema_count[1].item() == 1.0


def test_stale_ema_reset_is_undone_by_the_next_update():
    cfg, cb = small_codebook(modalities=["audio", "video"], dead_code_threshold=1, active_code_threshold=1,
                             dead_code_noise=0.0, dead_code_reset="stale_ema")
    z = {m: torch.tensor([[[0.05, 0.0]]], dtype=torch.float64) for m in cfg.modalities}
    cb(z, update=True)
    cb(z, update=True)
    cb(z, update=True)  # codes 1, 2 dead -> copied from code 0, but W and N stay stale
    assert torch.equal(cb.embed[2], cb.embed[0])
    weight_2, count_2 = cb.ema_weight[2].clone(), cb.ema_count[2].clone()
    assert not torch.allclose(weight_2 / count_2, cb.embed[2])


def test_replacement_sources_are_uniform_over_active_codes():
    cfg = HDCIDConfig.tiny(codebook_size=8, dead_code_noise=0.0)
    cb = MultimodalEMACodebook(cfg)
    with torch.no_grad():
        cb.embed.copy_(torch.arange(8.0)[:, None].expand(8, cfg.hidden_size))
    active = torch.tensor([False, True, False, True, True, False, False, False])
    torch.manual_seed(0)
    draws = torch.cat([cb.sample_replacements(active)[:, 0] for _ in range(300)])
    values, counts = draws.unique(return_counts=True)
    assert values.tolist() == [1.0, 3.0, 4.0]
    assert counts.min() > 0.28 * draws.numel()


def test_encode_never_changes_a_buffer_in_train_or_eval_mode():
    model = HDCIDModel(HDCIDConfig.tiny())
    batch = make_batch(model.config)
    before = {k: v.clone() for k, v in model.named_buffers()}
    for mode in (True, False):
        model.train(mode)
        for m, x in batch.items():
            model.encode(m, x)
        model(**batch)
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), k


def test_equal_num_and_perplexity():
    idx = {"audio": torch.tensor([[1, 1, 2], [0, 3, 3]]), "video": torch.tensor([[1, 2, 1], [3, 0, 0]])}
    assert MultimodalEMACodebook.equal_num(idx).item() == 1
    counts = torch.tensor([2.0, 2.0, 0.0, 0.0])
    assert MultimodalEMACodebook.perplexity(counts).item() == pytest.approx(2.0, rel=1e-6)


def test_codebook_stays_fp32_when_the_model_is_cast_to_bf16():
    model = HDCIDModel(HDCIDConfig.tiny())
    with torch.no_grad():
        model.layers[0].codebook.ema_count.fill_(1.0001234)
    before = {k: v.clone() for k, v in model.named_buffers()}
    model.to(torch.bfloat16)
    for k, v in model.named_buffers():  # kept exactly, not rounded through bf16
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    model.half()
    assert torch.equal(model.layers[0].codebook.ema_count, before["layers.0.codebook.ema_count"])
    model.to(torch.bfloat16)
    cb = model.layers[0].codebook
    assert cb.embed.dtype == torch.float32 and cb.ema_weight.dtype == torch.float32
    assert model.layers[0].general["audio"].transformer.projection.weight.dtype == torch.bfloat16
    out = model.encode("audio", make_batch(model.config)["audio"])
    assert out.quantized[0].dtype == torch.float32
    double = HDCIDModel(HDCIDConfig.tiny()).double()
    assert double.layers[0].codebook.embed.dtype == torch.float64


def test_codebook_initial_state_matches_the_original():
    cfg = HDCIDConfig.original_hdcid(codebook_size=40, hidden_size=8, num_attention_heads=2)
    cb = MultimodalEMACodebook(cfg)
    assert cb.embed.abs().max() <= 1 / 400 and cb.embed.abs().max() > 0.5 / 400
    assert torch.equal(cb.ema_weight, cb.embed)
    assert cb.ema_count.eq(0).all() and cb.unused_steps.eq(-1).all()


def test_mixed_sums_use_equal_cross_weights():
    cfg = HDCIDConfig.tiny(modalities=["audio", "video", "text"], ema_self_weight=0.4)
    cb = MultimodalEMACodebook(cfg)
    flat = {m: torch.randn(5, cfg.hidden_size) for m in cfg.modalities}
    idx = {m: torch.randint(0, cfg.codebook_size, (5,)) for m in cfg.modalities}
    sums = cb.mixed_sums(flat, idx)
    for i, m in enumerate(cfg.modalities):
        expected = torch.zeros(cfg.codebook_size, cfg.hidden_size)
        for pos, code in enumerate(idx[m].tolist()):
            for o in cfg.modalities:
                expected[code] += (0.4 if o == m else 0.3) * flat[o][pos]
        torch.testing.assert_close(sums[i], expected)


def test_quantize_dequantize_round_trip_and_model_codebooks():
    model = HDCIDModel(HDCIDConfig.tiny())
    cb = model.layers[1].codebook
    idx = torch.tensor([[0, 5, 23], [7, 7, 1]])
    codes = cb.dequantize(idx)
    assert codes.shape == (2, 3, 16) and torch.equal(codes, cb.embed[idx])
    assert torch.equal(cb.quantize(codes), idx)  # a code is its own nearest code
    books = model.codebooks()
    assert len(books) == 2 and books[1] is cb.embed


def test_unused_codes_explode_with_zero_initial_count_and_stay_put_with_one():
    def one_update(init_count):
        torch.manual_seed(0)
        cfg = HDCIDConfig.tiny(codebook_size=8, codebook_init_count=init_count, dead_code_reset="none")
        cb = MultimodalEMACodebook(cfg)
        init = cb.embed.clone()
        assert torch.equal(cb.ema_count, torch.full((8,), float(init_count)))
        assert torch.equal(cb.ema_weight, init * (init_count or 1.0))
        z = {m: torch.full((1, 2, cfg.hidden_size), 0.5) for m in ("audio", "video")}  # all on one code
        used = cb(z, update=True).indices["audio"][0, 0]
        unused = torch.arange(8) != used
        return init[unused], cb.embed[unused]

    before, after = one_update(0.0)  # the original: E = gamma * W / (epsilon-sized N)
    assert after.norm(dim=-1).min() > 100 * before.norm(dim=-1).max()
    before, after = one_update(1.0)  # W / N decay together: the code does not move
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-6)


def test_quantize_modalities_is_the_training_call_without_the_autocast_guard():
    cfg = HDCIDConfig.tiny(hidden_size=2, num_attention_heads=1, codebook_size=3)
    z = {"audio": torch.tensor([[[0.9, 0.1], [0.1, 1.8]]]), "video": torch.tensor([[[0.0, 0.1], [1.1, 0.0]]])}
    torch.manual_seed(0)
    a = MultimodalEMACodebook(cfg)
    b = MultimodalEMACodebook(cfg)
    b.load_state_dict(a.state_dict())
    out_a = a(z, update=True)
    out_b = b.quantize_modalities(z, update=True)
    assert all(torch.equal(out_a.indices[m], out_b.indices[m]) for m in z)
    assert all(torch.equal(out_a.quantized[m], out_b.quantized[m]) for m in z)
    for name, value in a.state_dict().items():  # the same EMA update and dead-code bookkeeping
        assert torch.equal(value, b.state_dict()[name]), name
