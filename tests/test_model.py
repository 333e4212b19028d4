"""HDCIDModel / HDCIDForPreTraining: shapes, parameter counts, losses, gradients, dtypes, bad input."""

import math

import pytest
import torch

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining, HDCIDModel

from conftest import make_batch

VARIANTS = {
    "dcid_avt": dict(num_layers=1),
    "hdcid_avt": dict(num_layers=2),
    "hdcid_av": dict(num_layers=2, modalities=["audio", "video"]),
    "dcid_at": dict(num_layers=1, modalities=["audio", "text"]),
    "hdcid_vt": dict(num_layers=2, modalities=["video", "text"]),
}


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_encode_shapes(name):
    cfg = HDCIDConfig.tiny(**VARIANTS[name])
    model = HDCIDModel(cfg).eval()
    batch = make_batch(cfg, batch_size=2)
    out = model(**batch)
    assert out.modalities == tuple(cfg.modalities)
    for m in cfg.modalities:
        enc = out[m]
        assert len(enc.semantic) == len(enc.quantized) == len(enc.indices) == cfg.num_layers
        for k in range(cfg.num_layers):
            assert enc.semantic[k].shape == (2, cfg.num_frames, cfg.hidden_size)
            assert enc.quantized[k].shape == (2, cfg.num_frames, cfg.hidden_size)
            assert enc.indices[k].shape == (2, cfg.num_frames) and enc.indices[k].dtype == torch.long
            codebook = model.layers[k].codebook.embed
            assert torch.equal(enc.quantized[k], codebook[enc.indices[k]])
        assert enc.unified.shape == (2, cfg.num_frames, cfg.num_layers * cfg.hidden_size)
        assert torch.equal(enc.unified, torch.cat(enc.quantized, -1))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_pretraining_losses_have_every_named_term(name):
    cfg = HDCIDConfig.tiny(**VARIANTS[name], warm_start_epoch=1)
    model = HDCIDForPreTraining(cfg).train()
    batch = make_batch(cfg, batch_size=3)
    warm = model.compute_losses(batch, epoch=1)
    expected = set()
    for k in range(1, cfg.num_layers + 1):
        for m in cfg.modalities:
            expected |= {f"recon/{m}/layer{k}", f"commit/{m}/layer{k}", f"mi/{m}/layer{k}"}
        expected |= {f"cpc/layer{k}", f"cmcm/layer{k}", f"total/layer{k}"}
    assert set(warm.losses) == expected
    for k in range(1, cfg.num_layers + 1):
        terms = [v for key, v in warm.losses.items() if key.endswith(f"layer{k}") and not key.startswith("total")]
        torch.testing.assert_close(warm.losses[f"total/layer{k}"], torch.stack(terms).sum())
    upper = sum(warm.losses[f"total/layer{k}"] for k in range(2, cfg.num_layers + 1))
    torch.testing.assert_close(warm.loss, warm.losses["total/layer1"] + 0.3 * upper)
    cold = model.compute_losses(batch, epoch=0)  # warm start: layer 1 only
    assert all(key.endswith("layer1") for key in cold.losses)
    torch.testing.assert_close(cold.loss, cold.losses["total/layer1"])


def test_paper_configuration_parameter_counts_match_the_original():
    """Counts of the original modules (reference §6.2) minus their dead parameters: the unused
    transformer template layers and the dead spatial-attention Linears."""
    model = HDCIDForPreTraining(HDCIDConfig.original_hdcid())
    enc = model.hdcid
    assert count(enc.layers[0].specific["video"]) == 72_358_400
    assert count(enc.layers[0].general["video"].transformer) == 2_500_608 - 789_760
    assert count(enc.layers[0].general["video"].video_pooling) == 328_449 - 262_913
    assert count(enc.text_encoder) == 1_314_816
    assert count(enc) - count(enc.text_encoder) == 87_888_641 - 4_738_560 - 262_913
    assert count(model.decoders) == 38_147_200
    assert count(model.cpc[0]) == count(model.cpc[1]) == 3_355_392
    assert [count(model.club[0][m]) for m in ("video", "text", "audio")] == [263_936, 197_888, 197_888]
    buffers = sum(b.numel() for b in enc.buffers())
    assert buffers == 411_200
    dcid = HDCIDModel(HDCIDConfig.original_dcid())
    assert count(dcid) - count(dcid.text_encoder) == 80_123_649 - 2_369_280 - 262_913


def test_video_general_branch_is_channel_attention_then_sum_or_mean():
    cfg = HDCIDConfig.tiny(video_spatial_pooling="sum")
    pool = HDCIDModel(cfg).layers[0].general["video"].video_pooling
    x = make_batch(cfg, 2)["video"]
    se = pool.excitation
    ref = torch.zeros(2, cfg.num_frames, cfg.video_feature_dim)
    for b in range(2):
        for t in range(cfg.num_frames):
            g = x[b, t].mean((0, 1))
            a = se(g)
            ref[b, t] = (x[b, t] * a + x[b, t]).sum((0, 1))
    torch.testing.assert_close(pool(x), ref, rtol=1e-5, atol=1e-5)
    pool.pooling = "mean"
    torch.testing.assert_close(pool(x), ref / cfg.video_spatial_size ** 2, rtol=1e-5, atol=1e-5)


def test_layer_two_takes_layer_one_specific_features():
    cfg = HDCIDConfig.tiny()
    model = HDCIDModel(cfg).eval()
    audio = make_batch(cfg)["audio"]
    out = model.encode("audio", audio)
    s1 = model.layers[0].specific["audio"](audio)[1]
    torch.testing.assert_close(out.semantic[1], model.layers[1].general["audio"](s1))
    video = make_batch(cfg)["video"]
    pooled = model.layers[0].specific["video"](video)[1]
    torch.testing.assert_close(model.encode("video", video).semantic[1], model.layers[1].general["video"](pooled))


def test_gradients_reach_every_trainable_parameter_the_loss_uses():
    cfg = HDCIDConfig.tiny(warm_start_epoch=0)
    model = HDCIDForPreTraining(cfg).train()
    out = model.compute_losses(make_batch(cfg, batch_size=4), epoch=0)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters()
               if not n.startswith("club.") and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []
    feats = model.extract_features(make_batch(cfg, 4, seed=1), epoch=0)
    model.zero_grad()
    model.club_loss(feats).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.club_parameters())
    assert all(p.grad is None for p in model.main_parameters())  # CLUB loss uses detached features


def test_layer_two_gets_no_gradient_before_warm_start():
    cfg = HDCIDConfig.tiny(warm_start_epoch=3)
    model = HDCIDForPreTraining(cfg).train()
    model.compute_losses(make_batch(cfg), epoch=2).loss.backward()
    assert all(p.grad is None for p in model.hdcid.layers[1].parameters())
    assert all(p.grad is None for p in model.cpc[1].parameters())


def test_upper_codebook_updates_during_warm_up_only_when_asked():
    for flag in (False, True):
        cfg = HDCIDConfig.tiny(warm_start_epoch=3, update_upper_codebooks_before_warm_start=flag)
        model = HDCIDForPreTraining(cfg).train()
        before = model.hdcid.layers[1].codebook.embed.clone()
        model.compute_losses(make_batch(cfg), epoch=0)
        assert torch.equal(model.hdcid.layers[1].codebook.embed, before) is not flag
        assert not torch.equal(model.hdcid.layers[0].codebook.embed, before)


def test_eval_mode_pretraining_forward_changes_no_buffer():
    cfg = HDCIDConfig.tiny(warm_start_epoch=0)
    model = HDCIDForPreTraining(cfg).eval()
    before = {k: v.clone() for k, v in model.named_buffers()}
    with torch.no_grad():
        model.compute_losses(make_batch(cfg), epoch=0)
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_step_runs_in_fp32_and_fp64(dtype):
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny(warm_start_epoch=0)
    model = HDCIDForPreTraining(cfg).to(dtype).train()
    out = model.compute_losses(make_batch(cfg, dtype=torch.float32), epoch=0)
    assert out.loss.dtype == dtype and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.hdcid.layers[0].codebook.embed.dtype == dtype


@pytest.mark.parametrize("lstm_mode", ["auto", "float32"])  # float32: the AVX2-only CPU path, forced
def test_training_step_runs_under_bf16_autocast_with_fp32_codebook(monkeypatch, lstm_mode):
    monkeypatch.setenv("HF_HDCID_LSTM_AUTOCAST", lstm_mode)
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny(warm_start_epoch=0)
    model = HDCIDForPreTraining(cfg).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.compute_losses(make_batch(cfg), epoch=0)
        assert out.features.layers[0].semantic["audio"].dtype == torch.bfloat16
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for layer in model.hdcid.layers:
        assert layer.codebook.embed.dtype == torch.float32 and layer.codebook.ema_weight.dtype == torch.float32
        assert torch.isfinite(layer.codebook.embed).all()


def test_fp64_encode_matches_fp32_codes():
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny()
    m32 = HDCIDModel(cfg).eval()
    m64 = HDCIDModel(cfg).eval()
    m64.load_state_dict(m32.state_dict())
    m64.double()
    x = make_batch(cfg)["text"]
    torch.testing.assert_close(m64.encode("text", x).semantic[1].float(), m32.encode("text", x).semantic[1],
                               rtol=1e-4, atol=1e-5)


def test_training_is_deterministic_given_a_seed():
    def run():
        torch.manual_seed(7)
        cfg = HDCIDConfig.tiny(warm_start_epoch=0, dead_code_threshold=1, active_code_threshold=1)
        model = HDCIDForPreTraining(cfg).train()
        opt = torch.optim.Adam(model.main_parameters(), lr=1e-3)
        for step in range(3):
            out = model.compute_losses(make_batch(cfg, seed=step), epoch=0)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        return out.loss.detach(), model.hdcid.layers[0].codebook.embed.clone()

    (l1, e1), (l2, e2) = run(), run()
    assert torch.equal(l1, l2) and torch.equal(e1, e2)


def test_toc_channels_select_unified_channels():
    cfg = HDCIDConfig.tiny(toc_channels=[[3, 0, 7], [1, 2]])
    model = HDCIDModel(cfg).eval()
    out = model.encode("audio", make_batch(cfg)["audio"], apply_toc=True)
    assert out.unified.shape == (3, cfg.num_frames, 5)
    torch.testing.assert_close(out.unified[..., :3], out.quantized[0][..., [3, 0, 7]])
    torch.testing.assert_close(out.unified[..., 3:], out.quantized[1][..., [1, 2]])
    with pytest.raises(ValueError, match="toc_channels is None"):
        HDCIDModel(HDCIDConfig.tiny()).encode("audio", make_batch(cfg)["audio"], apply_toc=True)


# ------------------------------------------------------------------ bad input
def _bad(model, modality, features, pattern):
    with pytest.raises(ValueError, match=pattern):
        model.encode(modality, features)


def test_bad_inputs_raise_clear_errors():
    cfg = HDCIDConfig.tiny(modalities=["audio", "video"])
    model = HDCIDModel(cfg)
    t = cfg.num_frames
    _bad(model, "smell", torch.zeros(1, t, 8), r"unknown modality 'smell'.*audio")
    _bad(model, "text", torch.zeros(1, t, 20), r"'text' is not in this model's modalities")
    _bad(model, "audio", torch.zeros(t, 8), rf"audio: expected shape \[B, {t}, 8\], got \[{t}, 8\]")
    _bad(model, "audio", torch.zeros(2, t + 1, 8), rf"audio: expected shape \[B, {t}, 8\], got \[2, {t + 1}, 8\]")
    _bad(model, "audio", torch.zeros(2, t, 9), r"got \[2, 6, 9\]")
    _bad(model, "video", torch.zeros(2, t, 5, 5, 3), r"video: expected shape \[B, 6, 5, 5, 12\], got \[2, 6, 5, 5, 3\]")
    _bad(model, "audio", torch.zeros(2, t, 8, dtype=torch.long), "floating-point")
    _bad(model, "audio", [[0.0]], "expected a tensor")
    _bad(model, "audio", torch.zeros(0, t, 8), "B >= 1")
    nan = torch.zeros(2, t, 8)
    nan[1, 2, 3] = float("nan")
    _bad(model, "audio", nan, r"audio: features of shape \[2, 6, 8\] contain NaN or inf")
    inf = torch.zeros(2, t, 5, 5, 12)
    inf[0, 0, 0, 0, 0] = math.inf
    _bad(model, "video", inf, "video.*NaN or inf")


def test_batch_size_mismatch_and_missing_modalities_are_rejected():
    cfg = HDCIDConfig.tiny()
    batch = make_batch(cfg, 3)
    batch["video"] = batch["video"][:2]
    with pytest.raises(ValueError, match=r"batch sizes differ.*'video': 2"):
        HDCIDModel(cfg)(**batch)
    pre = HDCIDForPreTraining(cfg)
    with pytest.raises(ValueError, match=r"batch sizes differ"):
        pre.compute_losses(batch, epoch=0)
    with pytest.raises(ValueError, match=r"missing \['text'\]"):
        pre.compute_losses({"audio": batch["audio"], "video": batch["video"]}, epoch=0)
    with pytest.raises(ValueError, match="unexpected inputs"):
        HDCIDModel(cfg)(sound=batch["audio"])
    features = pre.extract_features(make_batch(cfg), epoch=0)
    with pytest.raises(ValueError, match="extracted for epoch 0, not epoch 3"):
        pre.compute_losses(epoch=3, features=features)


def test_detach_reconstruction_targets_stops_only_the_target_gradient():
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny(warm_start_epoch=0)
    model = HDCIDForPreTraining(cfg).train()
    feats = model.extract_features(make_batch(cfg), epoch=0)
    lstm = model.hdcid.text_encoder.lstm.weight_ih_l0

    def grad(detach):
        model.config.detach_reconstruction_targets = detach
        model.zero_grad()
        model.reconstruction_loss(0, "text", feats.layers[0]).backward(retain_graph=True)
        return lstm.grad.clone()

    attached, detached = grad(False), grad(True)
    assert not torch.allclose(attached, detached)
    lf = feats.layers[0]
    model.zero_grad()
    recon = model.decoders[0]["text"](lf.codes.quantized["text"], lf.specific["text"])
    torch.nn.functional.mse_loss(recon, lf.inputs["text"].detach()).backward(retain_graph=True)
    torch.testing.assert_close(lstm.grad, detached)


# ------------------------------------------------------------------ transformers conventions
def _assert_same_tuple(got, expected):
    assert type(got) is tuple and len(got) == len(expected)
    for a, b in zip(got, expected):
        if isinstance(b, torch.Tensor):
            assert torch.equal(a, b)
        elif isinstance(b, dict):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
        else:
            assert type(a) is type(b)


def test_model_return_dict_false_gives_the_outputs_to_tuple():
    cfg = HDCIDConfig.tiny()
    model = HDCIDModel(cfg).eval()
    batch = make_batch(cfg, batch_size=2)
    out = model(**batch)
    as_tuple = model(**batch, return_dict=False)
    assert as_tuple[0] == out.modalities == ("audio", "video", "text")
    assert all(torch.equal(a.unified, b.unified) for a, b in zip(as_tuple[1:], (out.audio, out.video, out.text)))
    assert len(as_tuple) == len(out.to_tuple()) == 4
    assert type(model(**batch, return_dict=True)).__name__ == "HDCIDModelOutput"
    cfg.return_dict = False  # the default comes from the config, as in transformers
    assert type(model(**batch)) is tuple


def test_pretraining_return_dict_false_gives_the_outputs_to_tuple():
    cfg = HDCIDConfig.tiny(warm_start_epoch=0)
    model = HDCIDForPreTraining(cfg).eval()
    batch = make_batch(cfg, batch_size=2)
    torch.manual_seed(0)  # the sampled CLUB estimator draws a permutation
    out = model(**batch)
    torch.manual_seed(0)
    as_tuple = model(**batch, return_dict=False)
    _assert_same_tuple(as_tuple[:3], out.to_tuple()[:3])  # loss, losses, diagnostics
    assert len(as_tuple) == 4 and torch.equal(as_tuple[0], out.loss)
    features = model.extract_features(batch, epoch=0)
    torch.manual_seed(1)
    expected = model(features=features).to_tuple()
    torch.manual_seed(1)
    _assert_same_tuple(model(features=features, return_dict=False)[:3], expected[:3])


def test_no_split_modules_name_the_blocks_that_hold_a_quantizer_with_its_encoders():
    from hf_hdcid.modeling.modeling_hdcid import HDCIDLayer

    model = HDCIDForPreTraining(HDCIDConfig.tiny())
    present = {type(m).__name__ for m in model.modules()}
    assert set(HDCIDForPreTraining._no_split_modules) <= present
    assert HDCIDModel._no_split_modules == HDCIDForPreTraining._no_split_modules
    assert "HDCIDLayer" in HDCIDForPreTraining._no_split_modules
    for layer in model.hdcid.layers:  # each whole block holds the encoders and the quantizer of one layer
        assert isinstance(layer, HDCIDLayer) and {"general", "specific", "codebook"} <= set(dict(layer.named_children()))


def test_auto_device_map_keeps_every_layer_whole():
    from accelerate.utils import compute_module_sizes, infer_auto_device_map

    model = HDCIDModel(HDCIDConfig.tiny())
    sizes = compute_module_sizes(model)
    budget = int(1.5 * sizes["layers.0"])  # a layer fits a device, two do not
    memory = {0: budget, 1: budget, 2: budget, "cpu": 10**9}
    placed = infer_auto_device_map(model, max_memory=memory, no_split_module_classes=model._no_split_modules)
    assert dict(placed) == {"text_encoder": 0, "layers.0": 1, "layers.1": 2}
    split = infer_auto_device_map(model, max_memory=memory)  # without the attribute a layer is cut apart
    assert any(key.startswith("layers.1.") for key in split)
