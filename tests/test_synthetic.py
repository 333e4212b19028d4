"""The synthetic audio-visual-text benchmark: determinism, shapes, event structure, labels."""

import pytest
import torch

from hf_hdcid import HDCIDConfig
from hf_hdcid.data.synthetic import EVENT_CLASSES, SyntheticAVT, SyntheticSpec


def test_clips_are_a_pure_function_of_seed_split_and_index():
    cfg = HDCIDConfig.tiny()
    a = SyntheticAVT(cfg, seed=3).generate("train", 0, 8)
    b = SyntheticAVT(cfg, seed=3).generate("train", 5, 3)
    assert torch.equal(a["video"][5:], b["video"]) and torch.equal(a["audio"][5:], b["audio"])
    assert a["clip_id"][5:] == b["clip_id"] and a["prompt"][5:] == b["prompt"]
    c = SyntheticAVT(cfg, seed=4).generate("train", 0, 8)
    assert not torch.equal(a["audio"], c["audio"])
    d = SyntheticAVT(cfg, seed=3).generate("test", 0, 8)
    assert not torch.equal(a["audio"], d["audio"])


@pytest.mark.parametrize("preset", ["tiny", "hdcid"])
def test_shapes_and_dtypes_follow_the_config(preset):
    cfg = getattr(HDCIDConfig, preset)()
    out = SyntheticAVT(cfg, seed=0).generate("pretrain", 0, 2)
    t, s = cfg.num_frames, cfg.video_spatial_size
    assert out["video"].shape == (2, t, s, s, cfg.video_feature_dim) and out["video"].dtype == torch.float16
    assert out["audio"].shape == (2, t, cfg.audio_feature_dim) and out["audio"].dtype == torch.float32
    assert out["audio_labels"].shape == (2, t, 29) and out["audio_labels"].dtype == torch.int8
    assert out["label"].dtype == torch.int64 and torch.isfinite(out["video"].float()).all()
    assert (out["video"] >= 0).all()  # like VGG pool5 maps


def test_labels_encode_a_shared_primary_window_and_a_single_modality_secondary():
    cfg = HDCIDConfig.tiny()
    world = SyntheticAVT(cfg, seed=1, spec=SyntheticSpec(secondary_prob=1.0))
    out = world.generate("train", 0, 20)
    for i in range(20):
        label = int(out["label"][i])
        a, v = out["audio_labels"][i], out["video_labels"][i]
        assert torch.equal(a[:, label], v[:, label])  # primary: same window in both modalities
        window = a[:, label].nonzero().flatten()
        assert len(window) >= 2 and torch.equal(window, torch.arange(window[0], window[-1] + 1))
        extra_a = a[:, :-1].clone()
        extra_a[:, label] = 0
        extra_v = v[:, :-1].clone()
        extra_v[:, label] = 0
        assert (extra_a.sum() > 0) != (extra_v.sum() > 0)  # the secondary event is in exactly one modality
        for lab in (a, v):
            assert torch.equal(lab[:, -1], (lab[:, :-1].sum(1) == 0).to(torch.int8))
        assert EVENT_CLASSES[label] in out["prompt"][i]


def test_features_carry_the_events_and_only_them_without_noise():
    cfg = HDCIDConfig.tiny()
    world = SyntheticAVT(cfg, seed=2, spec=SyntheticSpec(noise=0.0, nuisance=0.0, secondary_prob=0.0))
    out = world.generate("train", 0, 6)
    for i in range(6):
        label = int(out["label"][i])
        event = out["audio_labels"][i][:, label].bool()
        audio = out["audio"][i]
        torch.testing.assert_close(audio[event], world.audio_map(world.prototypes[label]).expand(int(event.sum()), -1))
        if (~event).any():
            torch.testing.assert_close(audio[~event], world.audio_map(world.background).expand(int((~event).sum()), -1))
        video = out["video"][i].float()
        background = world.video_map(world.background).relu()
        # outside the event window every grid cell is background
        assert torch.allclose(video[~event], background.expand_as(video[~event]).half().float())
        # during the event some cells differ from the background
        assert not torch.allclose(video[event], background.expand_as(video[event]).half().float())


def test_bad_specs_and_requests_raise():
    cfg = HDCIDConfig.tiny()
    with pytest.raises(ValueError, match=r"num_classes: expected an int in \[2, 28\], got 40"):
        SyntheticAVT(cfg, spec=SyntheticSpec(num_classes=40))
    with pytest.raises(ValueError, match="secondary_prob"):
        SyntheticAVT(cfg, spec=SyntheticSpec(secondary_prob=2.0))
    with pytest.raises(ValueError, match="split: expected one of"):
        SyntheticAVT(cfg).generate("validation", 0, 1)
    with pytest.raises(ValueError, match="start/count"):
        SyntheticAVT(cfg).generate("train", 0, 0)


def test_records_yield_one_clip_at_a_time_with_its_split():
    cfg = HDCIDConfig.tiny()
    records = list(SyntheticAVT(cfg, seed=0).records("test", 5, batch_size=2))
    assert len(records) == 5 and records[3]["split"] == "test"
    assert records[3]["clip_id"] == "synthetic-0-test-0000003"
    assert records[3]["video"].shape == (cfg.num_frames, 5, 5, cfg.video_feature_dim)


def test_build_synthetic_shards_writes_every_split_with_text_features(tmp_path):
    from hf_hdcid.data.shards import load_shards
    from hf_hdcid.data.synthetic import build_synthetic_shards
    from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model

    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=6, progress=False)
    cfg = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    out = build_synthetic_shards(tmp_path / "syn", cfg, {"pretrain": 5, "train": 3, "test": 2}, seed=1,
                                 text_extractor=extractor, batch_size=2)
    pre, collate = load_shards(out, cfg, split="pretrain")
    train, _ = load_shards(out, cfg, split="train")
    assert (len(pre), len(train), len(load_shards(out, cfg, split="test").dataset)) == (5, 3, 2)
    assert int(pre[0]["label"]) == -1 and (pre[0]["audio_labels"] == -1).all()
    world = SyntheticAVT(cfg, seed=1).generate("train", 0, 3)
    batch = collate([train[i] for i in range(3)])
    assert batch["label"].tolist() == world["label"].tolist()
    assert torch.equal(batch["audio"], world["audio"]) and torch.equal(batch["video"], world["video"].float())
    torch.testing.assert_close(batch["text"], extractor(world["prompt"]).half().float())
    assert (out / "synthetic.json").exists()
    with pytest.raises(ValueError, match="config.text_feature_dim: expected the text model's width 384, got 20"):
        build_synthetic_shards(tmp_path / "bad", HDCIDConfig.tiny(), {"train": 1}, text_extractor=extractor)
    assert not (tmp_path / "bad").exists()


def test_make_synthetic_cli(tmp_path, capsys):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    cmd = [sys.executable, "-m", "hf_hdcid.cli", "make-synthetic", str(tmp_path / "s"), "--clips", "4", "--seed", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 pretrain, 2 train, 2 test clips; preset tiny, text features 384-d" in proc.stdout
    from hf_hdcid.cli import main  # the error path in-process: the entry point ran above

    assert main(cmd[3:]) == 2
    err = capsys.readouterr().err
    assert "hf-hdcid make-synthetic: error:" in err and "exists" in err and "Traceback" not in err


def test_random_feature_batch_is_seeded_and_event_driven():
    from hf_hdcid.data.synthetic import random_feature_batch

    cfg = HDCIDConfig.tiny()
    a = random_feature_batch(cfg, 4, torch.Generator().manual_seed(5))
    b = random_feature_batch(cfg, 4, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[m], b[m]) for m in a)
    t, s = cfg.num_frames, cfg.video_spatial_size
    assert a["audio"].shape == (4, t, 8) and a["video"].shape == (4, t, s, s, 12) and a["text"].shape == (4, t, 20)
    assert (a["video"] >= 0).all()
    # one latent event per position: the 4*T audio vectors take at most 4 values up to the 0.1 noise
    flat = a["audio"].reshape(-1, 8)
    dist = torch.cdist(flat, flat)
    close = (dist < 1.0).float()
    assert int(torch.linalg.matrix_rank(close)) <= 4
