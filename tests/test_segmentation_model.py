"""AVS-S4 segmentation (issue 18): HDCIDForAudioVisualSegmentation and evaluate_segmentation on tiny
random PVT-v2 / ResNet backbones built from configs (no download) and an in-memory synthetic set
shaped as the segmentation collate contract (frames / masks / mask_valid / audio / text)."""

import json

import numpy as np
import pytest
import torch

from hf_hdcid.downstream.segmentation import evaluate_segmentation, score_segmentation, train_segmenter
from hf_hdcid.modeling import HDCIDConfig, HDCIDModel
from hf_hdcid.modeling.segmentation_hdcid import (TPAVI, HDCIDForAudioVisualSegmentation, HDCIDSegmentationConfig,
                                                  annotated_frame_bce)

STAGES = ["stage1", "stage2", "stage3", "stage4"]
PVT = dict(model_type="pvt_v2", depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 1, 1],
           mlp_ratios=[2, 2, 2, 2], sr_ratios=[2, 1, 1, 1], out_features=STAGES)
RESNET = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
              layer_type="basic", out_features=STAGES)
F, SIZE = 5, 24


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return HDCIDModel(HDCIDConfig.tiny(num_frames=10)).eval()  # T = 10 as the paper size: 2 steps per frame


def segmenter(encoder, backbone_config=PVT, seed=0, **kwargs):
    torch.manual_seed(seed)
    return HDCIDForAudioVisualSegmentation.from_encoder(encoder, backbone_config=backbone_config,
                                                        decoder_channels=8, **kwargs)


# ----------------------------------------------------------------------------------------- synthetic set
def synthetic_rows(encoder_config, n, split, seed, size=SIZE):
    """Two squares per clip (red and blue, moving); the label decides which one sounds: the mask is
    that square, the audio / text query its class prototype (+ noise). Train clips: frame 0 annotated."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(123)
    audio_proto = protos.normal(size=(2, encoder_config.audio_feature_dim)) * 2
    text_proto = protos.normal(size=(2, encoder_config.text_feature_dim)) * 2
    t, s = encoder_config.num_frames, size // 3
    frames = np.zeros((n, F, size, size, 3), np.uint8)
    masks = np.zeros((n, F, size, size), np.uint8)
    labels = rng.integers(0, 2, n)
    for i in range(n):
        frames[i] += rng.integers(0, 60, size=(1, 1, 1, 3), dtype=np.uint8)
        x0, y0 = rng.integers(0, size // 2 - s), rng.integers(0, size - s - 2)  # one square per half
        x1, y1 = rng.integers(size // 2, size - s - 2), rng.integers(0, size - s)
        left = bool(rng.integers(0, 2))
        for f in range(F):
            for obj, (x, y) in enumerate([(x0, y0 + f // 2), (x1 + f // 2, y1)]):
                if not left:
                    x = size - s - x
                frames[i, f, y:y + s, x:x + s] = (220, 30, 30) if obj == 0 else (30, 30, 220)
                if obj == labels[i]:
                    masks[i, f, y:y + s, x:x + s] = 1
    valid = np.zeros((n, F), bool)
    valid[:, 0] = True
    if split != "train":
        valid[:] = True
    audio = audio_proto[labels][:, None, :] + 0.3 * rng.normal(size=(n, t, encoder_config.audio_feature_dim))
    text = np.repeat(text_proto[labels][:, None, :], t, axis=1)
    return {"frames": frames, "masks": masks, "mask_valid": valid, "audio": audio.astype(np.float32),
            "text": text.astype(np.float16), "label": labels, "split": [split] * n,
            "clip_id": [f"{split}{seed}_{i}" for i in range(n)]}


def collate(batch):
    """The segmentation collate contract: frames float [B, F, 3, H, W] in [0, 1], masks float, mask_valid bool."""
    return {"frames": batch["frames"].permute(0, 1, 4, 2, 3).float() / 255, "masks": batch["masks"].float(),
            "mask_valid": batch["mask_valid"].bool(), "audio": batch["audio"].float(), "text": batch["text"].float(),
            "label": batch["label"].long(), "clip_id": list(batch["clip_id"])}


class ClipTable:
    """A tiny in-memory dataset: ``table[rows]`` -> a dict of column slices, ``table["split"]`` a column."""

    def __init__(self, columns):
        self.columns = columns
        self.column_names = list(columns)

    def __len__(self):
        return len(self.columns["split"])

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.columns[key]
        return {k: v[key] if isinstance(v, np.ndarray) else [v[i] for i in key] for k, v in self.columns.items()}

    def without(self, name):
        return ClipTable({k: v for k, v in self.columns.items() if k != name})


def collate_table(batch):
    return collate({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()})


def synthetic_columns(config, sizes=((32, "train", 0), (8, "val", 1), (8, "test", 2))):
    parts = [synthetic_rows(config, n, split, seed) for n, split, seed in sizes]
    return {k: np.concatenate([p[k] for p in parts]) if isinstance(parts[0][k], np.ndarray)
            else sum((p[k] for p in parts), []) for k in parts[0]}


@pytest.fixture(scope="module")
def data(encoder):
    return ClipTable(synthetic_columns(encoder.config)), collate_table


def batch_of(data, rows):
    dataset, coll = data
    return coll(dataset[list(rows)])


# ----------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("backbone_config", [PVT, RESNET], ids=["pvt_v2", "resnet"])
def test_logits_at_the_input_resolution_for_both_backbones(encoder, backbone_config):
    model = segmenter(encoder, backbone_config).eval()
    for size in (32, 30):  # 30: not a multiple of the 32 stride
        out = model(torch.rand(2, F, 3, size, size), torch.randn(2, 10, 8), "audio")
        assert out.logits.shape == (2, F, size, size)
        assert out.query.shape == (2, F, 2 * 16)  # 2 layers x D = 16, pooled from T = 10 to F = 5
        assert out.loss is None
    assert model.config.backbone_config["model_type"] == backbone_config["model_type"]


def test_config_errors_name_the_field(encoder):
    enc = encoder.config.to_dict()
    cases = [(dict(query_source="video"), "query_source"), (dict(tpavi_stages=[4]), "tpavi_stages"),
             (dict(backbone_config={**PVT, "out_features": STAGES[1:]}), "backbone_config.out_features"),
             (dict(query_toc=True), "query_toc"), (dict(query_layers=[3]), "query_layers"),
             (dict(num_frames=0), "num_frames"), (dict(backbone_config={"depths": [1]}), "backbone_config")]
    for kwargs, field in cases:
        with pytest.raises(ValueError, match=f"^{field}"):
            HDCIDSegmentationConfig(encoder_config=enc, **{"backbone_config": PVT, **kwargs})


def test_bad_inputs_are_refused_with_clear_errors(encoder):
    model = segmenter(encoder).eval()
    frames, audio = torch.rand(2, F, 3, 16, 16), torch.randn(2, 10, 8)
    with pytest.raises(ValueError, match=r"^frames: expected \[B, 5, 3, H, W\]"):
        model(torch.rand(2, 4, 3, 16, 16), audio)
    with pytest.raises(ValueError, match=r"^frames: expected values in \[0, 1\]"):
        model(frames * 255, audio)
    with pytest.raises(ValueError, match=r"^audio: expected shape \[B, 10, 8\]"):
        model(frames, torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="^query_modality"):
        model(frames, audio, "video")
    with pytest.raises(ValueError, match="^masks"):
        model(frames, audio, masks=torch.zeros(2, F, 8, 8))
    with pytest.raises(ValueError, match="^mask_valid: no frame"):
        model(frames, audio, masks=torch.zeros(2, F, 16, 16), mask_valid=torch.zeros(2, F, dtype=torch.bool))
    features = segmenter(encoder, query_source="features")
    with pytest.raises(ValueError, match="^query_modality: expected 'audio'"):
        features(frames, torch.randn(2, 10, 20), "text")


def test_tpavi_equals_the_explicit_affinity_of_avsbench():
    torch.manual_seed(0)
    block = TPAVI(channels=6, query_dim=4).eval()
    x, query = torch.randn(2, 6, 3, 4, 5), torch.randn(2, 3, 4)  # [B, C, F, h, w], [B, F, Cq]
    b, c, f, h, w = x.shape
    # AVSBench: the aligned query tiled over space, phi as a 1x1x1 conv, f = theta^T phi over all N x N, / N
    tiled = block.align(query).permute(0, 2, 1)[..., None, None].expand(b, c, f, h, w)
    phi = torch.einsum("bcfhw,oc->bofhw", tiled, block.phi.weight) + block.phi.bias.view(1, -1, 1, 1, 1)
    theta, g = block.theta(x).flatten(2).transpose(1, 2), block.g(x).flatten(2).transpose(1, 2)
    affinity = theta @ phi.flatten(2) / (f * h * w)  # [B, N, N]
    explicit = (affinity @ g).transpose(1, 2).reshape(b, -1, f, h, w)
    torch.testing.assert_close(block.affinity_output(x, query), explicit, rtol=1e-5, atol=1e-6)


def test_loss_is_bce_over_the_annotated_frames_only():
    logits, masks = torch.randn(2, F, 4, 4), (torch.rand(2, F, 4, 4) > 0.5).float()
    valid = torch.zeros(2, F, dtype=torch.bool)
    valid[:, 0] = True  # AVSBench S4 train: the first frame only
    expected = torch.nn.BCELoss()(torch.sigmoid(logits[:, 0]), masks[:, 0])
    torch.testing.assert_close(annotated_frame_bce(logits, masks, valid), expected)


def test_save_pretrained_round_trip_gives_identical_logits(encoder, tmp_path):
    model = segmenter(encoder).eval()
    frames, audio = torch.rand(2, F, 3, 16, 16), torch.randn(2, 10, 8)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "hdcid_avs"
    loaded = HDCIDForAudioVisualSegmentation.from_pretrained(tmp_path).eval()
    assert torch.equal(model(frames, audio).logits, loaded(frames, audio).logits)
    text = torch.randn(2, 10, 20)
    assert torch.equal(model(frames, text, "text").logits, loaded(frames, text, "text").logits)
    assert not any(p.requires_grad for p in loaded.encoder.parameters()) and not loaded.train().encoder.training


def test_segmenter_init_at_a_seed_does_not_depend_on_the_encoder_architecture():
    """The segmenter's random layers (and random backbone) at one seed are the same for a DCID (1 layer)
    and an H-DCID (2 layers) encoder, so comparing the two is not confounded by segmenter-init noise;
    another seed draws other weights."""
    torch.manual_seed(1)
    dcid = HDCIDModel(HDCIDConfig.tiny(num_frames=10, num_layers=1)).eval()
    hdcid = HDCIDModel(HDCIDConfig.tiny(num_frames=10, num_layers=2)).eval()
    assert sum(p.numel() for p in dcid.parameters()) != sum(p.numel() for p in hdcid.parameters())

    def own_weights(model):
        return {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}

    a, b, c = own_weights(segmenter(dcid, seed=3)), own_weights(segmenter(hdcid, seed=3)), own_weights(segmenter(hdcid, seed=4))
    assert a.keys() == b.keys() and len(a) > 100
    # the query projections differ in shape (16-d DCID codes, 2 x 16-d H-DCID codes); nothing else differs
    query = [k for k in a if ".align." in k]
    assert len(query) == 8 and all(a[k].shape[-1] == 16 and b[k].shape[-1] == 32 for k in query if k.endswith("weight"))
    assert all(torch.equal(a[k], b[k]) for k in a if k not in query), \
        [k for k in a if k not in query and not torch.equal(a[k], b[k])][:5]
    assert not all(torch.equal(b[k], c[k]) for k in b)
    # the RNG is left where it would be for either encoder: what follows the construction is the same too
    segmenter(dcid, seed=5)
    after_dcid = torch.rand(4)
    segmenter(hdcid, seed=5)
    assert torch.equal(after_dcid, torch.rand(4))


# ----------------------------------------------------------------------------------------- training
def test_training_leaves_the_encoder_untouched_and_raises_miou(encoder):
    model = segmenter(encoder, head_channels=(16, 8))
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    columns = synthetic_columns(encoder.config)
    columns["mask_valid"][:] = True  # every frame annotated: 5x the signal of AVSBench's train clips
    dataset, coll = ClipTable(columns), collate_table
    splits = np.asarray(dataset["split"])
    train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    untrained = score_segmentation(model, dataset, coll, test, "audio", 8)
    model.train()
    assert not model.encoder.training  # frozen: eval mode even under .train()
    best = train_segmenter(model, dataset, coll, train, np.flatnonzero(splits == "val"), train_modality="audio",
                           select_modality="audio", epochs=5, batch_size=4, lr=3e-3)
    trained = score_segmentation(model, dataset, coll, test, "audio", 8)
    assert best["train_loss"][-1] < 0.6 * best["train_loss"][0]
    assert best["best_epoch"] == int(np.argmax(best["curve"]))
    # untrained: 0.0 (no pixel above 0.5); trained: 0.13 mIoU, F-score 0.15 -> 0.49 (seeded, one thread)
    assert trained["mIoU"] > untrained["mIoU"] + 0.05, (untrained, trained, best)
    assert trained["F-score"] > untrained["F-score"] + 0.15, (untrained, trained, best)
    assert all(not p.requires_grad and p.grad is None for p in model.encoder.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())


def test_a2t_trains_on_audio_codes_and_tests_on_text_codes(encoder, data, monkeypatch, tmp_path):
    calls = []
    original = HDCIDModel.encode

    def spy(self, modality, features, apply_toc=False):
        calls.append(modality)
        return original(self, modality, features, apply_toc)

    monkeypatch.setattr(HDCIDModel, "encode", spy)
    record = evaluate_segmentation(encoder, "synthetic_avs", "a2t", data, protocol="heldout", epochs=1, batch_size=8,
                                   backbone_config=PVT, out_dir=tmp_path, max_train_clips=16, device="cpu")
    # 16 train clips / 8 = 2 training batches, then the val clips (heldout: audio), then the test clips in text
    assert calls == ["audio"] * 2 + ["audio"] * 1 + ["text"] * 1
    assert record["train_modality"] == "audio" and record["test_modality"] == "text"
    assert record["selection"] == {"split": "val", "modality": "audio", "metric": "mIoU"}
    assert record["main_metric"] == "mIoU" and set(record["metrics"]) == {"mIoU", "F-score"}
    assert 0 <= record["score"]["mean"] <= 1 and record["data"]["clips"] == {"train": 16, "val": 8, "test": 8}
    assert json.loads(open(record["path"]).read())["direction"] == "a2t"
    calls.clear()
    paper = evaluate_segmentation(encoder, "synthetic_avs", "a2t", data, protocol="paper", epochs=1, batch_size=8,
                                  backbone_config=PVT, max_train_clips=8, device="cpu")
    assert calls == ["audio", "text", "text"]  # paper: the val split is scored with the test modality's query
    assert paper["selection"]["modality"] == "text"
    assert paper["test_scoring"]["clips_per_group"] == 4 and record["test_scoring"]["clips_per_group"] == 1


def test_toc_query_codes_and_a_backbone_loaded_from_a_folder(encoder, data, tmp_path):
    from transformers import AutoBackbone, PvtV2Config

    torch.manual_seed(1)
    pretrained = AutoBackbone.from_config(PvtV2Config(**{k: v for k, v in PVT.items() if k != "model_type"}))
    pretrained.save_pretrained(tmp_path / "backbone")
    model = HDCIDForAudioVisualSegmentation.from_encoder(encoder, backbone=str(tmp_path / "backbone"),
                                                         decoder_channels=8)
    assert model.config.backbone == str(tmp_path / "backbone")
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in pretrained.state_dict().items())
    record = evaluate_segmentation(encoder, "synthetic_avs", "t2a", data, toc_num_channels=4, layers="1", epochs=1,
                                   batch_size=8, backbone_config=PVT, max_train_clips=8, device="cpu")
    assert record["toc"]["enabled"] and record["toc"]["channels_per_layer"] == [4] and record["layers"] == [1]
    assert record["train_modality"] == "text" and record["test_modality"] == "audio"
    assert encoder.config.toc_channels is None  # TOC computed on a copy
    toc_encoder = HDCIDModel(encoder.config)
    toc_encoder.load_state_dict(encoder.state_dict())
    toc_encoder.compute_toc(num_channels=4)
    toc_model = segmenter(toc_encoder, query_toc=True, query_layers=[1])
    out = toc_model(torch.rand(1, F, 3, 16, 16), torch.randn(1, 10, 20), "text")
    assert out.query.shape == (1, F, 4)


def test_a2a_reference_queries_with_raw_audio_and_checks_settings_first(encoder, data, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the a2a reference must not encode")

    monkeypatch.setattr(HDCIDModel, "encode", refuse)
    record = evaluate_segmentation(encoder, "synthetic_avs", "a2a", data, epochs=1, batch_size=16,
                                   backbone_config=PVT, max_train_clips=16, device="cpu")
    assert record["query_source"] == "features" and record["test_modality"] == "audio"
    bad = [(dict(direction="a2v"), "^direction"), (dict(protocol="test"), "^protocol"), (dict(epochs=0), "^epochs"),
           (dict(direction="a2a", toc=True), "^toc"), (dict(task="avs_s5"), "^task"), (dict(lr=2.0), "^lr"),
           (dict(toc_num_channels=999), "^toc_num_channels"), (dict(layers="3"), "^layers"),
           (dict(data=(data[0].without("mask_valid"), collate_table)), r"^data: .* \['mask_valid'\]")]
    for kwargs, message in bad:
        args = {"task": "synthetic_avs", "direction": "a2t", "data": data, "epochs": 1, **kwargs}
        with pytest.raises(ValueError, match=message):
            evaluate_segmentation(encoder, args.pop("task"), args.pop("direction"), args.pop("data"),
                                  backbone_config=PVT, device="cpu", **args)


def test_cli_evaluate_segmentation_grid_writes_records_table_and_card(tmp_path, capsys):
    """`hf-hdcid evaluate --task synthetic_avs` (in process): the synthetic segmentation shards of the
    converter side, one record per direction equal to the Python API's, the segmentation table, and one
    image-segmentation model-index entry per direction with mIoU and F-score."""
    from hf_hdcid import HDCIDForPreTraining, cli
    from hf_hdcid.data.synthetic_segmentation import build_synthetic_segmentation_shards
    from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model

    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames,
                                     progress=False)
    config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    shards = build_synthetic_segmentation_shards(tmp_path / "seg", config, {"train": 8, "val": 4, "test": 4},
                                                 text_extractor=extractor)
    torch.manual_seed(0)
    HDCIDForPreTraining(config).save_pretrained(tmp_path / "model")
    args = ["evaluate", str(tmp_path / "model"), "--task", "synthetic_avs", "--directions", "a2t", "a2a",
            "--epochs", "1", "--data", str(shards), "--out", str(tmp_path / "out"), "--to-card", str(tmp_path / "model")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "| H-DCID | synthetic_avs | A→T (heldout) |" in out and "| H-DCID | synthetic_avs | A→A (heldout) |" in out
    runs = {json.loads(p.read_text())["direction"]: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")}
    assert sorted(runs) == ["a2a", "a2t"]
    again = evaluate_segmentation(str(tmp_path / "model"), "synthetic_avs", "a2t", str(shards), epochs=1)
    assert runs["a2t"]["metrics"]["mIoU"]["values"] == pytest.approx(again["metrics"]["mIoU"]["values"])
    assert runs["a2t"]["train_modality"] == "audio" and runs["a2t"]["test_modality"] == "text"
    entries = json.loads((tmp_path / "model" / "eval_results.json").read_text())
    seg = [e for e in entries if e["task_type"] == "image-segmentation"]
    assert sorted({e["dataset_config"] for e in seg}) == ["synthetic_avs-a2a-all-heldout", "synthetic_avs-a2t-all-heldout"]
    assert sorted(e["metric_type"] for e in seg) == ["F-score", "F-score", "mIoU", "mIoU"]
    assert "synthetic AVS segmentation A→T" in (tmp_path / "model" / "README.md").read_text()
    # a backbone for tasks that have none is refused before any work
    assert cli.main(["evaluate", str(tmp_path / "model"), "--task", "synthetic_ave", "--backbone", "x",
                     "--data", str(shards)]) == 2
    assert "backbone: only the segmentation tasks use a visual backbone" in capsys.readouterr().err


def test_saved_segmenter_loads_with_automodel_remote_code_without_the_package(encoder, tmp_path):
    """save_pretrained writes auto_map (AutoConfig, AutoModel) and the modeling files: a process without
    hf_hdcid loads the folder with trust_remote_code and gives the same logits."""
    import os
    import subprocess
    import sys
    import textwrap

    from test_hub import WITHOUT_PACKAGE

    torch.manual_seed(0)
    model = HDCIDForAudioVisualSegmentation.from_encoder(encoder, backbone_config=PVT, decoder_channels=16,
                                                         head_channels=[8, 4]).eval()
    model.save_pretrained(tmp_path / "seg")
    frames = torch.rand(1, 5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    query = torch.randn(1, encoder.config.num_frames, encoder.config.audio_feature_dim,
                        generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(frames, query).logits
    torch.save({"frames": frames, "query": query, "logits": logits}, tmp_path / "ref.pt")
    (tmp_path / "remote.py").write_text(WITHOUT_PACKAGE + textwrap.dedent("""
        from transformers import AutoModel
        model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
        ref = torch.load(sys.argv[2], weights_only=True)
        with torch.no_grad():
            out = model(ref["frames"], ref["query"]).logits
        print(json.dumps({"class": type(model).__module__ + "." + type(model).__name__,
                          "frozen": not any(p.requires_grad for p in model.encoder.parameters()),
                          "max_diff": float((out - ref["logits"]).abs().max())}))
    """))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, str(tmp_path / "remote.py"), str(tmp_path / "seg"), str(tmp_path / "ref.pt")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["class"].startswith("transformers_modules.") and result["class"].endswith(
        "HDCIDForAudioVisualSegmentation")
    assert result["frozen"]
    assert result["max_diff"] <= 1e-5  # same weights; another process's conv kernels may round differently
