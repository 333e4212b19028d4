"""HDCIDConfig.input_normalization: per-channel standardisation before the encoders (issue 14)."""

import pytest
import torch

from hf_hdcid import HDCIDConfig, HDCIDModel


def stats(width, mean, std):
    return {"mean": [float(mean)] * width, "std": [float(std)] * width}


def test_encoders_see_standardised_features_and_the_config_round_trips(tmp_path):
    norm = {"audio": stats(8, 1.0, 2.0), "video": {"mean": [0.1 * c for c in range(12)], "std": [0.5] * 12}}
    model = HDCIDModel(HDCIDConfig.tiny(input_normalization=norm)).eval()
    plain = HDCIDModel(HDCIDConfig.tiny()).eval()
    plain.load_state_dict(model.state_dict())
    audio, video = torch.randn(2, 6, 8), torch.rand(2, 6, 5, 5, 12)
    with torch.no_grad():
        torch.testing.assert_close(model.encode("audio", audio).semantic[0],
                                   plain.encode("audio", (audio - 1.0) / 2.0).semantic[0])
        shifted = (video - torch.arange(12) * 0.1) / 0.5  # per channel, the last axis
        torch.testing.assert_close(model.encode("video", video).semantic[0], plain.encode("video", shifted).semantic[0])
        torch.testing.assert_close(model.encode("text", torch.randn(2, 6, 20)).semantic[0].shape, (2, 6, 16))
    model.save_pretrained(tmp_path / "m")
    again = HDCIDModel.from_pretrained(tmp_path / "m").eval()
    assert again.config.input_normalization == norm
    with torch.no_grad():
        torch.testing.assert_close(again.encode("audio", audio).indices[0], model.encode("audio", audio).indices[0])


@pytest.mark.parametrize("norm, message", [
    ({"text": stats(20, 0, 1)}, r"input_normalization: expected None or a dict with keys from \['audio', 'video'\]"),
    ({"audio": {"mean": [0.0] * 8}}, r"input_normalization\['audio'\]: expected a dict with keys 'mean' and 'std'"),
    ({"audio": {"mean": [0.0] * 7, "std": [1.0] * 8}},
     r"input_normalization\['audio'\]\['mean'\]: expected a list of 8 finite numbers, got 'list of length 7'"),
    ({"video": {"mean": [0.0] * 12, "std": [1.0] * 11 + [0.0]}}, r"input_normalization\['video'\]\['std'\]: expected values > 0"),
    ({"audio": {"mean": [float("nan")] * 8, "std": [1.0] * 8}}, r"input_normalization\['audio'\]\['mean'\]"),
])
def test_bad_statistics_name_the_field(norm, message):
    with pytest.raises(ValueError, match=message):
        HDCIDConfig.tiny(input_normalization=norm)


def test_default_is_no_normalization_in_every_preset():
    for preset in ("tiny", "hdcid", "dcid", "original_hdcid", "original_dcid"):
        assert getattr(HDCIDConfig, preset)().input_normalization is None


def test_the_model_card_summarises_the_statistics_instead_of_dumping_them(tmp_path):
    from hf_hdcid import HDCIDForPreTraining
    from hf_hdcid.hub import render_model_card

    norm = {"audio": stats(8, 0.5, 2.0), "video": stats(12, 0.0, 1.0)}
    HDCIDForPreTraining(HDCIDConfig.tiny(input_normalization=norm)).save_pretrained(tmp_path / "m")
    text = render_model_card(tmp_path / "m").text
    assert "per-channel mean / std of audio (8 channels), video (12 channels)" in text
    assert "0.5, 0.5" not in text


def test_replaced_statistics_are_used_at_the_next_call():
    model = HDCIDModel(HDCIDConfig.tiny(input_normalization={"audio": stats(8, 0.0, 1.0)})).eval()
    audio = torch.randn(2, 6, 8)
    with torch.no_grad():
        before = model.encode("audio", audio).semantic[0]
        model.config.input_normalization = {"audio": stats(8, 3.0, 1.0)}
        after = model.encode("audio", audio).semantic[0]
        model.config.input_normalization = None
        plain = model.encode("audio", audio - 3.0).semantic[0]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, plain)


def test_feature_statistics_match_torch_and_give_constant_channels_std_one():
    from hf_hdcid.training.loop import feature_statistics

    config = HDCIDConfig.tiny(modalities=["audio", "video"])
    g = torch.Generator().manual_seed(0)
    rows = [{"audio": torch.randn(6, 8, generator=g) * 3 + 1, "video": torch.rand(6, 5, 5, 12, generator=g)}
            for _ in range(11)]
    for r in rows:
        r["audio"][:, 2] = 4.0  # a constant channel

    def collate(batch):
        return {m: torch.stack([r[m] for r in batch]) for m in ("audio", "video")}

    got = feature_statistics(rows, collate, config, chunk=4)  # 4 + 4 + 3 rows
    audio = torch.stack([r["audio"] for r in rows]).double().reshape(-1, 8)
    video = torch.stack([r["video"] for r in rows]).double().reshape(-1, 12)
    expected_std = audio.std(0, unbiased=False)
    expected_std[2] = 1.0
    torch.testing.assert_close(torch.tensor(got["audio"]["mean"], dtype=torch.float64), audio.mean(0))
    torch.testing.assert_close(torch.tensor(got["audio"]["std"], dtype=torch.float64), expected_std)
    torch.testing.assert_close(torch.tensor(got["video"]["std"], dtype=torch.float64), video.std(0, unbiased=False))
    assert got["audio"]["mean"][2] == pytest.approx(4.0)
