"""Segmentation shards (frames / masks / mask_valid), the AVSBench-S4 converter and the synthetic
segmentation benchmark (hf_hdcid.data.segmentation, convert_avs, synthetic_segmentation)."""

import json
import pickle
import re
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from hf_hdcid import HDCIDConfig
from hf_hdcid.data.convert import convert_features
from hf_hdcid.data.convert_avs import AVSBENCH_S4_CATEGORIES, category_prompt, convert_avss4, read_frame
from hf_hdcid.data.schema import FeatureSchema, read_manifest
from hf_hdcid.data.segmentation import (SegmentationSpec, decode_frames, decode_masks, load_segmentation_shards,
                                        seconds_to_steps)
from hf_hdcid.data.shards import load_shards, make_dataloader, write_shards
from hf_hdcid.data.synthetic import PROMPT_TEMPLATES, SyntheticAVT, SyntheticSpec
from hf_hdcid.data.synthetic_segmentation import SyntheticSegmentation, build_synthetic_segmentation_shards

QUERY = FeatureSchema(("audio", "text"), num_frames=4, audio_feature_dim=8, video_feature_dim=3,
                      video_spatial_size=2, text_feature_dim=6)  # no video: the frames replace it
SPEC = SegmentationSpec(5, 6, 7)


def seg_records(n=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        masks = (rng.uniform(size=(5, 6, 7)) > 0.5).astype(np.uint8)
        valid = np.array([1, 0, 0, 0, 0] if i == 0 else [1, 1, 1, 1, 1], dtype=np.int8)
        out.append({"clip_id": f"c{i}", "split": "train" if i == 0 else "test", "label": i,
                    "audio": rng.normal(size=(4, 8)).astype(np.float32), "text": rng.normal(size=(4, 6)),
                    "prompt": f"prompt {i}", "frames": rng.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8),
                    "masks": masks * valid[:, None, None].astype(np.uint8), "mask_valid": valid})
    out[1]["frames"][:] = 0  # an all-zero cell (datasets' torch formatter once returned it empty)
    return out


@pytest.fixture(scope="module")
def minilm():
    from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model

    return TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames, progress=False)


# ============================================================================================ shards
def test_segmentation_shards_round_trip_collate_and_manifest(tmp_path):
    records = seg_records()
    out = write_shards(records, tmp_path / "seg", QUERY, with_prompt=True, segmentation=SPEC)
    manifest = read_manifest(out)
    assert manifest["segmentation"] == {"num_frames": 5, "frame_size": [6, 7]}
    assert manifest["columns"]["frames"] == "Value('binary')"
    assert FeatureSchema.from_manifest(manifest).modalities == ("audio", "text")
    data, collate = load_shards(out)
    expected_frames = torch.from_numpy(np.stack([r["frames"] for r in records])).permute(0, 1, 4, 2, 3) / 255.0
    batches = [collate(data[[0, 1, 2]]),  # dict of columns
               collate([data[i] for i in range(3)]),  # row dicts (a DataLoader over the dataset)
               next(iter(make_dataloader(data, collate, batch_size=3)))]  # Arrow tables (ArrowBatchView)
    for batch in batches:
        assert batch["frames"].dtype == torch.float32 and batch["frames"].shape == (3, 5, 3, 6, 7)
        assert torch.equal(batch["frames"], expected_frames.float())
        assert batch["masks"].dtype == torch.float32 and batch["masks"].shape == (3, 5, 6, 7)
        assert torch.equal(batch["masks"], torch.from_numpy(np.stack([r["masks"] for r in records])).float())
        assert batch["mask_valid"].dtype == torch.bool
        assert batch["mask_valid"].tolist() == [[True, False, False, False, False]] + [[True] * 5] * 2
        assert batch["label"].tolist() == [0, 1, 2] and batch["clip_id"] == ["c0", "c1", "c2"]
        assert batch["audio"].shape == (3, 4, 8) and batch["text"].shape == (3, 4, 6)
    assert np.array_equal(decode_frames(data[2]["frames"], SPEC), records[2]["frames"])
    assert np.array_equal(decode_masks(data[2]["masks"], SPEC), records[2]["masks"])
    # a schema without video is accepted on load, and a model config (with video) by its query modalities
    test, _ = load_shards(out, QUERY, split="test")
    assert len(test) == 2
    config = HDCIDConfig.tiny(num_frames=4, audio_feature_dim=8, text_feature_dim=6)
    assert "video" in config.modalities
    with pytest.raises(ValueError, match="column 'video'"):
        load_shards(out, config)
    data, collate = load_segmentation_shards(out, config, split="test")
    assert collate(data[:2])["frames"].shape == (2, 5, 3, 6, 7)
    bad = HDCIDConfig.tiny(num_frames=4, audio_feature_dim=16, text_feature_dim=6)
    with pytest.raises(ValueError, match="column 'audio'"):
        load_segmentation_shards(out, bad)
    # stored compactly: pixels as bytes (3 per pixel), masks as bits
    assert SPEC.stored_bytes() == {"frames": 5 * 6 * 7 * 3, "masks": 27, "mask_valid": 5}
    assert SegmentationSpec(5, 224, 224).bytes_per_clip() == 784_005
    # an ordinary shard folder records no segmentation entry and loads as before
    plain = write_shards([{k: v for k, v in records[0].items() if k not in ("frames", "masks", "mask_valid")}],
                         tmp_path / "plain", QUERY, with_prompt=True)
    assert read_manifest(plain)["segmentation"] is None
    with pytest.raises(ValueError, match="field 'segmentation'"):
        load_segmentation_shards(plain)


@pytest.mark.parametrize("column, value, message", [
    ("frames", np.zeros((5, 6, 7, 3), np.float32), "column 'frames': expected dtype uint8 (RGB 0..255), got float32"),
    ("frames", np.zeros((5, 7, 6, 3), np.uint8), "column 'frames': expected shape [5, 6, 7, 3], got [5, 7, 6, 3]"),
    ("masks", np.full((5, 6, 7), 2, np.uint8), "column 'masks': expected only 0/1 values, got [2]"),
    ("masks", None, "column 'masks': missing: expected an array of shape [5, 6, 7]"),
    ("mask_valid", np.zeros(5, np.int8), "column 'mask_valid': expected at least one annotated frame"),
])
def test_segmentation_records_are_checked_on_write(tmp_path, column, value, message):
    records = seg_records(2)
    records[1][column] = value
    with pytest.raises(ValueError, match=re.escape(f"record 1 (clip_id 'c1'): {message}")):
        write_shards(records, tmp_path / "seg", QUERY, with_prompt=True, segmentation=SPEC)
    assert list(tmp_path.iterdir()) == []  # staged: nothing half-written


def test_seconds_to_steps_repeats_each_second():
    seconds = np.arange(5)[:, None] * np.ones((1, 2))  # [5, 2], row k = k
    assert seconds_to_steps(seconds, 10)[:, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert seconds_to_steps(seconds, 5)[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert seconds_to_steps(seconds, 6)[:, 0].tolist() == [0, 1, 2, 2, 3, 4]  # nearest second to each step centre


# ============================================================================================ synthetic
WORLD = SyntheticSpec(num_classes=6)


def test_synthetic_segmentation_clips_are_deterministic_and_masks_are_the_sounding_object():
    config = HDCIDConfig.tiny()
    gen = SyntheticSegmentation(config, seed=3, spec=WORLD, frame_size=24)
    again = SyntheticSegmentation(config, seed=3, spec=WORLD, frame_size=24)
    later = again.clip("val", 7)
    first = gen.clip("val", 7)  # pure function of (seed, split, index): generation order does not matter
    for key in ("frames", "masks", "mask_valid", "object_masks", "distractor_masks"):
        assert np.array_equal(first[key], later[key])
    assert torch.equal(first["audio"], later["audio"]) and first["label"] == later["label"]
    assert not np.array_equal(gen.clip("val", 8)["frames"], first["frames"])
    assert not np.array_equal(SyntheticSegmentation(config, seed=4, spec=WORLD, frame_size=24).clip("val", 7)["frames"],
                              first["frames"])
    distractors = 0
    for split, index in [("train", i) for i in range(12)] + [("test", i) for i in range(12)]:
        clip = gen.clip(split, index)
        assert clip["frames"].shape == (5, 24, 24, 3) and clip["frames"].dtype == np.uint8
        assert clip["prompt"] in [t.format(gen.world.class_names[clip["label"]]) for t in PROMPT_TEMPLATES]
        valid = [1, 0, 0, 0, 0] if split == "train" else [1] * 5
        assert clip["mask_valid"].tolist() == valid
        annotated = np.array(valid, dtype=bool)
        assert np.array_equal(clip["masks"][annotated], clip["object_masks"][annotated].astype(np.uint8))
        assert not clip["masks"][~annotated].any()  # unannotated train frames are stored as zeros
        assert clip["object_masks"].sum((1, 2)).min() > 0
        # the mask's pixels are exactly those drawn in the class's colour (or its darker shade)
        look = gen.appearances[clip["label"]]
        shades = {tuple(np.clip(np.round(c * 255), 0, 255).astype(int))
                  for c in (look["colour"], look["colour"] * 0.45)}
        inside = {tuple(p) for p in clip["frames"][clip["object_masks"]].reshape(-1, 3).tolist()}
        assert inside <= shades
        if clip["distractor_label"] is not None:
            distractors += 1
            assert clip["distractor_label"] != clip["label"]
            visible = clip["distractor_masks"] & ~clip["object_masks"]
            assert visible.any() and not (clip["masks"].astype(bool) & visible).any()  # silent object: not in the mask
        else:
            assert not clip["distractor_masks"].any()
    assert 6 <= distractors <= 18  # about half the clips


def test_synthetic_segmentation_audio_is_the_avt_worlds_class_audio():
    config = HDCIDConfig.tiny()
    seg = SyntheticSegmentation(config, seed=0, spec=WORLD)
    avt = SyntheticAVT(config, seed=0, spec=WORLD)
    assert torch.equal(seg.world.prototypes, avt.prototypes)  # same seed -> same class prototypes
    seg_audio, seg_labels = zip(*[(c["audio"].mean(0), c["label"]) for c in (seg.clip("train", i) for i in range(120))])
    batch = avt.generate("train", 0, 240)
    # AVT clips: the primary event's segments only (audio_labels marks them)
    avt_audio = [batch["audio"][i][batch["audio_labels"][i, :, batch["label"][i]].bool()].mean(0) for i in range(240)]

    def class_means(vectors, labels):
        vectors, labels = torch.stack(list(vectors)), torch.as_tensor(labels)
        return torch.stack([vectors[labels == c].mean(0) for c in range(WORLD.num_classes)])

    a = class_means(seg_audio, seg_labels)
    b = class_means(avt_audio, batch["label"])
    a, b = a - a.mean(0), b - b.mean(0)
    corr = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T  # [C, C]
    assert (corr.argmax(1) == torch.arange(WORLD.num_classes)).all()
    assert corr.diagonal().min() > 0.8 and corr.diagonal().min() > corr.fill_diagonal_(-1).max(1).values.max()


def test_build_synthetic_segmentation_shards_with_text(tmp_path, minilm):
    config = HDCIDConfig.tiny(text_feature_dim=minilm.hidden_size)
    clips = {"train": 6, "val": 3, "test": 3}
    out = build_synthetic_segmentation_shards(tmp_path / "seg", config, clips, seed=1, text_extractor=minilm,
                                              frame_size=16, spec=WORLD)
    manifest = read_manifest(out)
    assert manifest["splits"] == clips and manifest["segmentation"] == {"num_frames": 5, "frame_size": [16, 16]}
    assert manifest["config"]["modalities"] == ["audio", "text"]
    description = json.loads((out / "synthetic.json").read_text())
    assert description["world"]["classes"] == list(SyntheticAVT(config, 1, WORLD).class_names)
    assert description["segmentation"]["frame_size"] == 16
    data, collate = load_segmentation_shards(out, config, split="val")
    batch = collate(data[:3])
    gen = SyntheticSegmentation(config, seed=1, spec=WORLD, frame_size=16)
    clip = gen.clip("val", 2)
    assert batch["clip_id"][2] == clip["clip_id"] and batch["label"][2] == clip["label"]
    assert torch.equal(batch["frames"][2], torch.from_numpy(clip["frames"]).permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(batch["masks"][2], torch.from_numpy(clip["masks"]).float())
    assert torch.equal(batch["audio"][2], clip["audio"])
    assert torch.allclose(batch["text"][2], minilm([clip["prompt"]])[0].half().float())
    with pytest.raises(ValueError, match="clips: expected positive counts for splits of"):
        build_synthetic_segmentation_shards(tmp_path / "bad", config, {"pretrain": 4})


# ============================================================================================ AVSBench-S4
CSV_HEADER = "name,start,category,split\n"  # AVSBench reads columns 0 (name), 2 (category) and 'split'
FAKE_CLIPS = [("-0A9suni5YA_1", 0, "dog_barking", "train"), ("-1mZzw8ZKsU_2", 3, "playing_violin", "train"),
              ("-2Gb9x2aF5Y_0", 0, "dog_barking", "val"), ("-3pLnbPMiMw_4", 1, "helicopter", "test")]
SIZE = 16


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


@pytest.fixture
def avs_layout(tmp_path):
    """A tiny AVSBench-S4 Single-source folder (frames, masks, meta csv) and VGGish features."""
    root, audio_dir = tmp_path / "Single-source", tmp_path / "vggish"
    rng = np.random.default_rng(0)
    (root).mkdir()
    (root / "s4_meta_data.csv").write_text(CSV_HEADER + "".join(f"{n},{s},{c},{sp}\n" for n, s, c, sp in FAKE_CLIPS))
    truth = {}
    for name, _, category, split in FAKE_CLIPS:
        frames = rng.integers(0, 256, size=(5, SIZE, SIZE, 3), dtype=np.uint8)
        masks = (rng.uniform(size=(5, SIZE, SIZE)) > 0.6).astype(np.uint8)
        for k in range(5):
            _png(root / "s4_data" / "visual_frames" / split / category / name / f"{name}_{k + 1}.png", frames[k])
            if split != "train" or k == 0:  # AVSBench S4: train has the first frame's mask only
                _png(root / "s4_data" / "gt_masks" / split / category / name / f"{name}_{k + 1}.png", masks[k] * 255)
        audio = rng.normal(size=(5, 128)).astype(np.float32)
        if name == FAKE_CLIPS[1][0]:  # CMG's form: a zip holding one pickled [t, 128] array (4 s: padded to 5)
            audio = audio[:4]
            path = audio_dir / split / "zip" / category / f"{name}.zip"
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr(f"{name}.pkl", pickle.dumps(audio))
        else:
            path = audio_dir / split / category / f"{name}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, audio)
        truth[name] = {"frames": frames, "masks": masks, "audio": audio, "category": category, "split": split}
    return root, audio_dir, truth


def test_avss4_converter_layout_values_and_masks(avs_layout, tmp_path, minilm):
    root, audio_dir, truth = avs_layout
    config = HDCIDConfig.tiny(audio_feature_dim=128, text_feature_dim=minilm.hidden_size)  # T = 6
    out = convert_features("avss4", tmp_path / "shards", config, progress=False, root=root, audio_dir=audio_dir,
                           text_extractor=minilm, frame_size=SIZE)
    manifest = read_manifest(out)
    assert manifest["splits"] == {"train": 2, "val": 1, "test": 1}
    assert manifest["segmentation"] == {"num_frames": 5, "frame_size": [SIZE, SIZE]}
    assert manifest["source"]["layout"] == "avss4" and manifest["source"]["skipped_missing"] == []
    data, collate = load_segmentation_shards(out, config)
    batch = collate(data[:4])
    for i, name in enumerate(batch["clip_id"]):
        clip = truth[name]
        assert batch["label"][i] == AVSBENCH_S4_CATEGORIES.index(clip["category"])
        assert torch.equal(batch["frames"][i], torch.from_numpy(clip["frames"]).permute(0, 3, 1, 2).float() / 255)
        annotated = 1 if clip["split"] == "train" else 5
        assert batch["mask_valid"][i].tolist() == [True] * annotated + [False] * (5 - annotated)
        assert torch.equal(batch["masks"][i, :annotated], torch.from_numpy(clip["masks"][:annotated]).float())
        assert not batch["masks"][i, annotated:].any()
        seconds = np.concatenate([clip["audio"], clip["audio"][-1:]])[:5]  # CMG: pad with the last second
        assert torch.equal(batch["audio"][i], torch.from_numpy(seconds[[0, 1, 2, 2, 3, 4]]))  # 5 s -> T = 6 steps
        prompt = category_prompt(clip["category"])
        assert batch["prompt"][i] == prompt
        assert torch.allclose(batch["text"][i], minilm([prompt])[0].half().float())
    assert category_prompt("horse_clip-clop") == "the sound of horse clip-clop in this video"
    from hf_hdcid.data.hub_shards import render_dataset_card

    card = str(render_dataset_card(out))  # push-data's card describes the new columns
    assert "avss4" in card and f"| `frames` | [5, {SIZE}, {SIZE}, 3] | `uint8 bytes` |" in card


def test_avss4_converter_bad_input(avs_layout, tmp_path):
    root, audio_dir, truth = avs_layout
    config = HDCIDConfig.tiny(audio_feature_dim=128, modalities=("audio", "video"))  # audio query only
    kw = dict(audio_dir=audio_dir, frame_size=SIZE, progress=False)
    name, _, category, split = FAKE_CLIPS[2]
    # missing mask of a val clip (frames 1..5 are annotated there) and a missing frame of a train clip
    (root / "s4_data" / "gt_masks" / split / category / name / f"{name}_3.png").unlink()
    first = FAKE_CLIPS[0][0]
    frame = root / "s4_data" / "visual_frames" / "train" / "dog_barking" / first / f"{first}_5.png"
    frame.unlink()
    with pytest.raises(ValueError, match=r"2 of 4 listed clips lack a frame, mask or audio feature file \(first: "
                                         r"-0A9suni5YA_1 -> .*_5\.png, -2Gb9x2aF5Y_0 -> .*gt_masks.*_3\.png\)"
                                         r".*--skip-missing"):
        convert_avss4(root, tmp_path / "out", config, **kw)
    assert not (tmp_path / "out").exists()
    out = convert_avss4(root, tmp_path / "out", config, skip_missing=True, **kw)
    assert read_manifest(out)["source"]["skipped_missing"] == ["-0A9suni5YA_1", "-2Gb9x2aF5Y_0"]
    assert read_manifest(out)["config"]["modalities"] == ["audio"]
    # wrong audio shape, and AVSBench's log-mel mistaken for features
    name, _, category, split = FAKE_CLIPS[3]
    np.save(audio_dir / split / category / f"{name}.npy", np.zeros((5, 64), np.float32))
    with pytest.raises(ValueError, match=r"-3pLnbPMiMw_4\.npy: column 'audio': expected VGGish features \[5, 128\] "
                                         r"\(one row per second\), got shape \[5, 64\]"):
        convert_avss4(root, tmp_path / "bad_audio", config, skip_missing=True, **kw)
    np.save(audio_dir / split / category / f"{name}.npy", np.zeros((5, 1, 96, 64), np.float32))
    with pytest.raises(ValueError, match=r"got shape \[5, 1, 96, 64\]: that is AVSBench's log-mel input"):
        convert_avss4(root, tmp_path / "bad_audio", config, skip_missing=True, **kw)
    assert not (tmp_path / "bad_audio").exists()
    # a meta csv without the category column, and an unknown category
    (root / "s4_meta_data.csv").write_text("name,start,label,split\n" + f"{name},0,{category},{split}\n")
    with pytest.raises(ValueError, match=r"s4_meta_data\.csv, line 1: missing column\(s\) \['category'\]"):
        convert_avss4(root, tmp_path / "out2", config, **kw)
    (root / "s4_meta_data.csv").write_text(CSV_HEADER + f"{name},0,kazoo,{split}\n")
    with pytest.raises(ValueError, match=r"line 2: column 'category': unknown category 'kazoo'"):
        convert_avss4(root, tmp_path / "out2", config, **kw)
    with pytest.raises(ValueError, match="audio_dir: expected the folder of per-clip VGGish features"):
        convert_avss4(root, tmp_path / "out2", config, frame_size=SIZE)


def test_read_frame_resizes_bilinearly_like_avsbench(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    _png(tmp_path / "f.png", image)
    assert np.array_equal(read_frame(tmp_path / "f.png", 8), image)
    # half size, half-pixel centres, no antialias (cv2.INTER_LINEAR): the mean of each 2 x 2 block
    blocks = image.reshape(4, 2, 4, 2, 3).astype(np.float64).mean((1, 3))
    assert np.abs(read_frame(tmp_path / "f.png", 4).astype(np.float64) - blocks).max() <= 0.5 + 1e-6


def test_cli_convert_avss4_and_make_synthetic_segmentation(avs_layout, tmp_path, capsys):
    from hf_hdcid.cli import main
    from hf_hdcid.data.text import default_offline_text_model

    root, audio_dir, _ = avs_layout
    minilm_path = default_offline_text_model()
    vocabulary = tmp_path / "cnt.pkl"  # the original's word filter: vocab id -> compact index
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(minilm_path).convert_tokens_to_ids(["sound", "of", "dog", "violin"])
    vocabulary.write_bytes(pickle.dumps({i: n for n, i in enumerate(ids)}))
    assert main(["convert-features", "avss4", str(root), str(tmp_path / "cli"), "--preset", "hdcid", "--modalities",
                 "audio,video,text", "--text-model", minilm_path, "--frame-size", str(SIZE), "--num-frames", "10",
                 "--text-vocabulary", str(vocabulary), "--path", f"audio_dir={audio_dir}"]) == 0
    manifest = read_manifest(tmp_path / "cli")
    assert manifest["num_rows"] == 4 and manifest["config"]["modalities"] == ["audio", "text"]
    assert manifest["config"]["num_frames"] == 10 and manifest["config"]["text_feature_dim"] == 384
    data, collate = load_segmentation_shards(tmp_path / "cli")
    batch = collate(data[:4])
    words = (batch["text"].abs().sum(-1) > 0).sum(1).tolist()  # filtered: "sound of dog" / "sound of violin" ...
    assert [w for w, c in zip(words, FAKE_CLIPS)] == [3 if c[2] in ("dog_barking", "playing_violin") else 2
                                                       for c in FAKE_CLIPS]
    assert main(["convert-features", "avss4", str(tmp_path / "out")]) == 2
    assert "expected SRC OUT" in capsys.readouterr().err
    assert main(["make-synthetic", str(tmp_path / "syn"), "--segmentation", "--clips", "4", "--downstream-clips", "2",
                 "--frame-size", "12", "--num-classes", "5", "--text-model", minilm_path]) == 0
    manifest = read_manifest(tmp_path / "syn")
    assert manifest["splits"] == {"train": 4, "val": 2, "test": 2}
    assert manifest["segmentation"] == {"num_frames": 5, "frame_size": [12, 12]}
