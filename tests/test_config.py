"""HDCIDConfig: paper defaults, presets, validation that names the field, serialisation."""

import pytest

from hf_hdcid import HDCIDConfig


def test_defaults_are_the_paper_values():
    c = HDCIDConfig()
    assert (c.num_layers, c.hidden_size, c.codebook_size, c.num_frames) == (2, 256, 400, 10)
    assert (c.video_spatial_size, c.video_feature_dim, c.audio_feature_dim, c.text_feature_dim) == (7, 512, 128, 768)
    assert (c.text_lstm_hidden_size, c.text_lstm_num_layers, c.text_token_dim) == (128, 2, 256)
    assert (c.num_transformer_layers, c.num_attention_heads, c.intermediate_size) == (2, 4, 1024)
    assert (c.commitment_cost, c.ema_decay, c.ema_epsilon) == (0.25, 0.99, 1e-5)
    assert (c.dead_code_threshold, c.active_code_threshold) == (300, 100)
    assert (c.warm_start_epoch, c.upper_layer_loss_weight) == (3, 0.3)
    assert c.modalities == ["audio", "video", "text"]
    assert c.toc_channels is None


def test_presets():
    assert HDCIDConfig.dcid().num_layers == 1
    assert HDCIDConfig.hdcid().num_layers == 2
    tiny = HDCIDConfig.tiny(num_layers=1)
    assert tiny.num_layers == 1 and tiny.hidden_size == 16
    orig = HDCIDConfig.original_hdcid()
    assert (orig.video_spatial_pooling, orig.dead_code_reset, orig.use_cmcm) == ("sum", "stale_ema", False)
    assert orig.detach_reconstruction_targets is False and orig.update_upper_codebooks_before_warm_start is True
    assert orig.codebook_init_bound == 1 / 400
    dcid = HDCIDConfig.original_dcid()
    assert dcid.num_layers == 1 and dcid.use_cmcm is True


def test_derived_dimensions_follow_the_original_layout():
    c = HDCIDConfig()
    # layer 2 takes layer 1's specific features: pooled video 512, audio 256, text 256
    assert [c.layer_input_dim(1, m) for m in ("audio", "video", "text")] == [256, 512, 256]
    assert [c.layer_input_dim(0, m) for m in ("audio", "video", "text")] == [128, 512, 256]
    assert HDCIDConfig(modalities=["audio", "video"]).cross_weights() == 0.5
    assert c.cross_weights() == 0.25


@pytest.mark.parametrize("field, value", [
    ("num_layers", 0), ("hidden_size", -4), ("codebook_size", 2.5), ("modalities", ["audio"]),
    ("modalities", ["audio", "smell"]), ("modalities", ["audio", "audio"]), ("dropout", 1.0),
    ("ema_decay", 1.0), ("ema_epsilon", 0.0), ("video_spatial_pooling", "max"),
    ("dead_code_reset", "sometimes"), ("cpc_softmax_over", "rows"), ("club_estimator", "x"),
    ("club_input", "raw"), ("video_conv_channels", [8]), ("video_spatial_size", 4),
    ("num_frames", 2), ("commitment_cost", -0.1), ("use_cmcm", "yes"), ("codebook_init_bound", 0),
    ("active_code_threshold", 1000), ("ema_self_weight", 1.5), ("warm_start_epoch", -1),
])
def test_invalid_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"HDCIDConfig\.{field}\b.*expected"):
        HDCIDConfig(**{field: value})


def test_heads_must_divide_hidden_size():
    with pytest.raises(ValueError, match="hidden_size.*num_attention_heads=3"):
        HDCIDConfig(hidden_size=16, num_attention_heads=3)


def test_toc_channels_validation():
    c = HDCIDConfig.tiny(toc_channels=[[0, 3, 2], [5]])
    assert c.toc_channels == [[0, 3, 2], [5]]
    with pytest.raises(ValueError, match="toc_channels.*2 per-layer"):
        HDCIDConfig.tiny(toc_channels=[[0, 1]])
    with pytest.raises(ValueError, match=r"toc_channels\[1\].*distinct ints in \[0, 16\)"):
        HDCIDConfig.tiny(toc_channels=[[0], [16]])
    with pytest.raises(ValueError, match=r"toc_channels\[0\]"):
        HDCIDConfig.tiny(toc_channels=[[1, 1], [2]])


def test_dict_round_trip_keeps_every_field(tmp_path):
    c = HDCIDConfig.tiny(modalities=["audio", "text"], toc_channels=[[1, 2], [3]],
                         toc_settings={"num_channels": 2, "lambda": 0.7})
    c.save_pretrained(tmp_path)
    back = HDCIDConfig.from_pretrained(tmp_path)
    for key, value in c.to_dict().items():
        if key not in ("transformers_version",):
            assert getattr(back, key) == value, key
