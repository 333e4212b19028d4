"""Converters of the original feature layouts: safe unpickling, padding, labels, splits, shard contents."""

import csv
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hf_hdcid import HDCIDConfig
from hf_hdcid.data.convert import convert_features, load_pickled_array, pad_or_truncate
from hf_hdcid.data.shards import load_shards

CONFIG = HDCIDConfig.tiny()  # T=6, audio 8, video 5x5x12, modalities audio, video, text
AV = HDCIDConfig.tiny(modalities=["audio", "video"])
T, A, S, V = CONFIG.num_frames, CONFIG.audio_feature_dim, CONFIG.video_spatial_size, CONFIG.video_feature_dim


# ============================================================================================ fixtures
def write_zip(path, obj, member="feature.pkl", protocol=pickle.HIGHEST_PROTOCOL):
    """A zip holding one pickled object, as the original feature store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, pickle.dumps(obj, protocol=protocol))
    return path


def audio(seed, frames=T):
    """float32 audio features [frames, A] (distinct rows)."""
    return np.random.default_rng(seed).standard_normal((frames, A)).astype(np.float32)


def video(seed, frames=T):
    """Video maps [frames, S, S, V] in quarters, exact in float16."""
    return (np.random.default_rng(seed).integers(0, 400, (frames, S, S, V)) / 4).astype(np.float32)


def write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def column(dataset, name):
    """A column as a plain list (ints for tensors)."""
    return [int(v) if isinstance(v, torch.Tensor) else v for v in dataset[name]]


def by_id(dataset):
    return {row["clip_id"]: row for row in dataset}


# ============================================================================================ pickles
def test_load_pickled_array_returns_the_array_for_every_protocol(tmp_path):
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        for array in (audio(protocol), np.arange(12, dtype=np.int64).reshape(3, 4), np.zeros((2, 2), ">f8")):
            loaded = load_pickled_array(write_zip(tmp_path / f"p{protocol}.zip", array, protocol=protocol))
            assert type(loaded) is np.ndarray and np.array_equal(loaded, array)
            assert loaded.dtype.str[1:] == array.dtype.str[1:]  # byte order: numpy's own choice per protocol


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Custom:
    pass


def test_a_pickled_os_system_call_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = write_zip(tmp_path / "evil.zip", RunsACommand(marker))
    with pytest.raises(ValueError, match=r"evil\.zip.*refusing to unpickle global (posix|nt|os)\.system"):
        load_pickled_array(path)
    assert not marker.exists()


def test_a_pickled_custom_class_is_refused_naming_the_zip_and_global(tmp_path):
    path = write_zip(tmp_path / "custom.zip", Custom())
    with pytest.raises(ValueError, match=r"custom\.zip.*global test_convert\.Custom"):
        load_pickled_array(path)


@pytest.mark.parametrize("obj, message", [([1.0, 2.0], "expected a numpy ndarray, got list"),
                                          (np.array(["a", "b"]), "expected a float or integer array")])
def test_a_non_numeric_array_payload_is_refused(tmp_path, obj, message):
    with pytest.raises(ValueError, match=rf"bad\.zip.*{message}"):
        load_pickled_array(write_zip(tmp_path / "bad.zip", obj))


def test_a_zip_with_two_members_is_refused(tmp_path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.pkl", pickle.dumps(audio(0)))
        archive.writestr("b.pkl", pickle.dumps(audio(1)))
    with pytest.raises(ValueError, match=r"two\.zip: expected exactly one pickled member \(\*\.pkl\), got 2 "
                                         r"\(members: \['a\.pkl', 'b\.pkl'\]\)"):
        load_pickled_array(path)


def test_pad_repeats_the_last_row_and_truncate_keeps_the_first_rows():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert np.array_equal(pad_or_truncate(x, 5), [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    assert np.array_equal(pad_or_truncate(x, 2), [[0, 1], [2, 3]])
    assert np.array_equal(pad_or_truncate(x, 3), x)
    with pytest.raises(ValueError, match="at least one row"):
        pad_or_truncate(np.zeros((0, 2)), 3)


# ============================================================================================ VGGSound-AVEL
@pytest.fixture(scope="module")
def vggsound(tmp_path_factory):
    """4 clips: audio of T-2 (padded), T+3 (truncated), T and 1 rows; 3 categories; prompts."""
    root = tmp_path_factory.mktemp("vggsound")
    clips = [("dog barking", "vid_a", "train", T - 2), ("playing piano", "vid_b", "test", T + 3),
             ("rain", "vid_c", "train", T), ("dog barking", "vid_d", "val", 1)]
    features = {}
    for i, (_, vid, _, frames) in enumerate(clips):
        features[vid] = (audio(i, frames), video(100 + i))
        write_zip(root / "audio" / f"{vid}.zip", features[vid][0], protocol=2)
        write_zip(root / "video" / f"{vid}.zip", features[vid][1])
    paths = dict(csv_path=write_csv(root / "meta.csv", ["category", "video_id", "split"],
                                    [(c, v, s) for c, v, s, _ in clips]),
                 audio_dir=root / "audio", video_dir=root / "video",
                 categories_path=write_lines(root / "categories.txt", ["rain", "dog barking", "playing piano"]),
                 prompts_csv=write_csv(root / "prompts.csv", ["label", "prompt"],
                                       [("rain", "rain falls on a roof"), ("dog barking", "a dog barks loudly"),
                                        ("playing piano", "someone plays the piano")]))
    return root, paths, features


def test_vggsound_features_labels_and_prompts(vggsound):
    root, paths, features = vggsound
    out = convert_features("vggsound", root / "shards", CONFIG, progress=False, **paths)
    data, _ = load_shards(out, CONFIG)
    rows = by_id(data)
    assert sorted(rows) == ["vid_a", "vid_b", "vid_c", "vid_d"]
    assert "text" not in data.column_names and "audio_labels" not in data.column_names
    expected = {"vid_a": (1, "train", "a dog barks loudly"), "vid_b": (2, "test", "someone plays the piano"),
                "vid_c": (0, "train", "rain falls on a roof"), "vid_d": (1, "val", "a dog barks loudly")}
    for vid, (label, split, prompt) in expected.items():
        row = rows[vid]
        assert (int(row["label"]), row["split"], row["prompt"]) == (label, split, prompt)
        assert torch.equal(row["video"], torch.from_numpy(features[vid][1]).half())
    a = {vid: features[vid][0] for vid in features}
    assert torch.equal(rows["vid_a"]["audio"], torch.from_numpy(np.concatenate([a["vid_a"], a["vid_a"][[-1, -1]]])))
    assert torch.equal(rows["vid_b"]["audio"], torch.from_numpy(a["vid_b"][:T]))
    assert torch.equal(rows["vid_c"]["audio"], torch.from_numpy(a["vid_c"]))
    assert torch.equal(rows["vid_d"]["audio"], torch.from_numpy(np.repeat(a["vid_d"], T, axis=0)))


def test_vggsound_split_filter_gives_the_train_subset_without_prompts(vggsound):
    root, paths, features = vggsound
    paths = {**paths, "prompts_csv": None}
    out = convert_features("vggsound", root / "train24k", CONFIG, progress=False, splits={"train"}, **paths)
    data, _ = load_shards(out, AV)
    assert sorted(column(data, "clip_id")) == ["vid_a", "vid_c"] and set(column(data, "split")) == {"train"}
    assert "prompt" not in data.column_names and "text" not in data.column_names


def test_vggsound_unknown_category_names_the_csv_line(vggsound, tmp_path):
    root, paths, _ = vggsound
    csv_path = write_csv(tmp_path / "meta.csv", ["category", "video_id", "split"], [("rain", "vid_c", "train"),
                                                                                    ("thunder", "vid_a", "train")])
    with pytest.raises(ValueError, match=r"meta\.csv, line 3: column 'category': unknown category 'thunder'"):
        convert_features("vggsound", tmp_path / "out", AV, progress=False, **{**paths, "csv_path": csv_path})
    assert not (tmp_path / "out").exists()


# ============================================================================================ AVE
def one_hot_labels(classes_per_segment, width):
    """[T, width] one-hot; None = background (last column)."""
    label = np.zeros((len(classes_per_segment), width), dtype=np.float64)
    for t, c in enumerate(classes_per_segment):
        label[t, width - 1 if c is None else c] = 1
    return label


@pytest.fixture(scope="module")
def ave(tmp_path_factory):
    """5 AVE rows (label width 5: 4 classes + background); train order [3, 0, 4]."""
    root = tmp_path_factory.mktemp("ave")
    n, width = 5, 5
    vis = np.stack([video(200 + i) for i in range(n)])
    aud = np.stack([audio(300 + i) for i in range(n)])
    segs = [[None, 2, 2, 2, None, None], [1] * T, [None] * T, [None, 0, 0, 3, 3, 3], [2, 1, 1, 2, None, None]]
    labels = np.stack([one_hot_labels(s, width) for s in segs])
    for name, key, data in (("visual_feature.h5", "avadataset", vis), ("audio_feature.h5", "avadataset", aud),
                            ("labels.h5", "avadataset", labels), ("train_order.h5", "order", np.array([3, 0, 4])),
                            ("test_order.h5", "order", np.array([1, 2]))):
        with h5py.File(root / name, "w") as file:
            file.create_dataset(key, data=data)
    return root, vis, aud, labels


def test_ave_features_and_labels_of_the_split_in_order(ave, tmp_path):
    root, vis, aud, labels = ave
    data, _ = load_shards(convert_features("ave", tmp_path / "ave", CONFIG, progress=False, root=root,
                                           split="train"), AV)
    assert column(data, "clip_id") == ["ave-3", "ave-0", "ave-4"]
    # the original's rule: max over time of the per-segment foreground argmax (row 4: classes 2, 1, 1, 2 -> 2)
    assert column(data, "label") == [3, 2, 2]
    for row, index in zip(data, (3, 0, 4)):
        assert torch.equal(row["audio"], torch.from_numpy(aud[index]))
        assert torch.equal(row["video"], torch.from_numpy(vis[index]).half())
        assert torch.equal(row["audio_labels"], torch.from_numpy(labels[index]).to(torch.int8))
        assert torch.equal(row["video_labels"], row["audio_labels"])


def test_ave_clip_without_events_gets_class_zero_as_in_the_original(ave, tmp_path):
    root = ave[0]
    data, _ = load_shards(convert_features("ave", tmp_path / "ave", AV, progress=False, root=root, split="test"), AV)
    assert column(data, "label") == [1, 0] and set(column(data, "split")) == {"test"}


def test_ave_avvp_uses_the_given_labels_and_order(ave, tmp_path):
    root, vis, _, _ = ave
    labels = np.stack([one_hot_labels([0, 0, None, None, None, None], 3)] * 5)
    with h5py.File(tmp_path / "ave_avvp_labels.h5", "w") as file:
        file.create_dataset("avadataset", data=labels)
    with h5py.File(tmp_path / "ave_avvp_order.h5", "w") as file:
        file.create_dataset("order", data=np.array([2.0, 1.0]))
    out = convert_features("ave", tmp_path / "shards", AV, progress=False, root=root,
                           labels_path=tmp_path / "ave_avvp_labels.h5", order_path=tmp_path / "ave_avvp_order.h5")
    data, _ = load_shards(out, AV)
    assert column(data, "clip_id") == ["ave-2", "ave-1"] and column(data, "label") == [0, 0]
    assert data[:]["audio_labels"].shape == (2, T, 3)
    assert torch.equal(data[0]["video"], torch.from_numpy(vis[2]).half())


# ============================================================================================ AVVP
@pytest.fixture(scope="module")
def avvp(tmp_path_factory):
    """3 videos, 3 categories (+ background), audio of T-1 rows (padded) and T+2 rows (truncated)."""
    root = tmp_path_factory.mktemp("avvp")
    names = ["IgN7v8nWmx8_30_40", "abcdefghijk_0_10", "ZZZZZZZZZZZ_5_15"]
    features = {}
    for i, (name, frames) in enumerate(zip(names, (T - 1, T + 2, T))):
        features[name] = (audio(400 + i, frames), video(500 + i))
        write_zip(root / "audio" / f"{name[:11]}.zip", features[name][0])
        write_zip(root / "video" / f"{name[:11]}.zip", features[name][1])
    header = ["filename", "onset", "offset", "event_labels"]
    audio_csv = write_csv(root / "AVVP_eval_audio_checked_combined.csv", header, [
        (names[0], "0,2,3", "3,5,4", "Speech,Dog,Speech"),  # overlapping events
        (names[1], "0", str(T + 4), "Cat"),  # offset past the clip
        (names[2], "", "", ""),  # no events: background everywhere
    ], delimiter="\t")
    visual_csv = write_csv(root / "AVVP_eval_visual_checked_combined.csv", header, [
        (names[1], "1", "2", "Dog")], delimiter="\t")
    categories = write_lines(root / "AVVP_Categories.txt", ["Speech", "Dog", "Cat"])
    dirs = dict(audio_dir=root / "audio", video_dir=root / "video", categories_path=categories)
    return root, names, features, audio_csv, visual_csv, dirs


def segments(spec, width=4):
    """[T, width] int8 from {column: [segments]}; background (last) on all unmarked segments."""
    label = np.zeros((T, width), dtype=np.int8)
    for column, ts in spec.items():
        label[ts, column] = 1
    label[:, width - 1] = label[:, : width - 1].sum(1) == 0
    return torch.from_numpy(label)


def test_avvp_labels_follow_the_original_rules_for_the_csv_modality(avvp, tmp_path):
    root, names, features, audio_csv, _, dirs = avvp
    out = convert_features("avvp", tmp_path / "avvp", CONFIG, progress=False, csv_path=audio_csv, **dirs)
    data, _ = load_shards(out, AV, split="test")
    rows = by_id(data)
    assert list(rows) == names and column(data, "label") == [-1, -1, -1]
    assert torch.equal(rows[names[0]]["audio_labels"], segments({0: [0, 1, 2, 3], 1: [2, 3, 4]}))
    assert torch.equal(rows[names[1]]["audio_labels"], segments({2: list(range(T))}))
    assert torch.equal(rows[names[2]]["audio_labels"], segments({}))
    for row in data:  # the audio csv annotates audio only
        assert torch.equal(row["video_labels"], torch.full((T, 4), -1, dtype=torch.int8))
    a0, a1 = features[names[0]][0], features[names[1]][0]
    assert torch.equal(rows[names[0]]["audio"], torch.from_numpy(np.concatenate([a0, a0[-1:]])))
    assert torch.equal(rows[names[1]]["audio"], torch.from_numpy(a1[:T]))
    assert torch.equal(rows[names[2]]["video"], torch.from_numpy(features[names[2]][1]).half())


def test_avvp_both_label_files_fill_both_columns(avvp, tmp_path):
    root, names, _, audio_csv, visual_csv, dirs = avvp
    out = convert_features("avvp", tmp_path / "avvp", AV, progress=False,
                           csv_path={"audio": audio_csv, "video": visual_csv}, **dirs)
    rows = by_id(load_shards(out, AV).dataset)
    assert torch.equal(rows[names[1]]["video_labels"], segments({1: [1]}))
    assert torch.equal(rows[names[1]]["audio_labels"], segments({2: list(range(T))}))
    assert torch.equal(rows[names[0]]["video_labels"], torch.full((T, 4), -1, dtype=torch.int8))


def test_avvp_unknown_event_names_the_line(avvp, tmp_path):
    _, names, _, _, _, dirs = avvp
    bad = write_csv(tmp_path / "AVVP_eval_audio.csv", ["filename", "onset", "offset", "event_labels"],
                    [(names[0], "0", "1", "Speech"), (names[1], "0,1", "1,2", "Speech,Violin")], delimiter="\t")
    with pytest.raises(ValueError, match=r"AVVP_eval_audio\.csv, line 3: column 'event_labels': unknown category "
                                         r"'Violin'"):
        convert_features("avvp", tmp_path / "out", AV, progress=False, csv_path=bad, **dirs)


# ============================================================================================ UCF101 <-> VGGSound
def test_ucf_video_side_pads_video_and_marks_every_segment_with_the_class(tmp_path):
    clips = {"v_ApplyEyeMakeup_g01": ("ApplyEyeMakeup", video(600, T - 3)),
             "v_Biking_g02": ("Biking", video(601, T + 1))}
    for vid, (_, features) in clips.items():
        write_zip(tmp_path / "ucf" / f"{vid}.zip", features.astype(np.float64))
    csv_path = write_csv(tmp_path / "ucf2vggsound.csv", ["video_id", "category"],
                         [(vid, c) for vid, (c, _) in clips.items()])
    categories = write_lines(tmp_path / "UCF101sameVGGSound.txt", ["Biking", "ApplyEyeMakeup"])
    out = convert_features("ucf_vggsound", tmp_path / "shards", CONFIG, csv_path=csv_path,
                           feature_dir=tmp_path / "ucf", categories_path=categories, modality="video")
    data, _ = load_shards(out)
    assert "audio" not in data.column_names and "audio_labels" not in data.column_names
    rows = by_id(data)
    assert int(rows["v_ApplyEyeMakeup_g01"]["label"]) == 1 and int(rows["v_Biking_g02"]["label"]) == 0
    v0, v1 = clips["v_ApplyEyeMakeup_g01"][1], clips["v_Biking_g02"][1]
    assert torch.equal(rows["v_ApplyEyeMakeup_g01"]["video"], torch.from_numpy(np.concatenate([v0, v0[[-1] * 3]])).half())
    assert torch.equal(rows["v_Biking_g02"]["video"], torch.from_numpy(v1[:T]).half())
    expected = torch.zeros(T, 3, dtype=torch.int8)
    expected[:, 1] = 1  # class 1 on every segment, background column 0
    assert torch.equal(rows["v_ApplyEyeMakeup_g01"]["video_labels"], expected)


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="layout: expected one of"):
        convert_features("kinetics", tmp_path / "out", CONFIG)


def test_convert_features_cli(vggsound, tmp_path, capsys):
    import subprocess
    import sys

    root, paths, features = vggsound
    args = [f"--path={k}={v}" for k, v in paths.items() if k != "prompts_csv"]
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    cmd = [sys.executable, "-m", "hf_hdcid.cli", "convert-features", "vggsound", str(tmp_path / "cli"), "--preset",
           "tiny", "--modalities", "audio,video", "--splits", "train", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data, _ = load_shards(tmp_path / "cli", AV)
    assert sorted(data["clip_id"]) == ["vid_a", "vid_c"]
    from hf_hdcid.cli import main  # the error path in-process: the entry point ran above

    assert main(cmd[3:-1] + ["--path", "nonsense"]) == 2
    assert "--path: expected KEY=VALUE, got 'nonsense'" in capsys.readouterr().err


def test_vggsound81k_ids_strip_mp4_and_clips_are_unlabelled(vggsound, tmp_path):
    root, paths, features = vggsound
    csv_path = write_csv(tmp_path / "81k.csv", ["id"], [("vid_b.mp4",), ("vid_c.mp4",)])
    out = convert_features("vggsound81k", tmp_path / "s81", AV, progress=False, csv_path=csv_path,
                           audio_dir=paths["audio_dir"], video_dir=paths["video_dir"])
    data, _ = load_shards(out, AV)
    rows = by_id(data)
    assert sorted(rows) == ["vid_b", "vid_c"] and int(rows["vid_b"]["label"]) == -1
    assert torch.equal(rows["vid_b"]["audio"], torch.from_numpy(features["vid_b"][0][:T]))
    assert torch.equal(rows["vid_c"]["video"], torch.from_numpy(features["vid_c"][1]).half())


# ============================================================================================ zips
def test_the_pkl_member_is_read_and_other_members_are_ignored(tmp_path):
    array = audio(7)
    path = tmp_path / "clip.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "features of one clip")
        archive.writestr("clip/", "")  # a folder entry
        archive.writestr("clip/clip.pkl", pickle.dumps(array))
        archive.writestr("__MACOSX/clip/._clip.pkl", b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata
    assert np.array_equal(load_pickled_array(path), array)


def test_a_zip_without_a_pickle_member_is_refused_naming_its_members(tmp_path):
    path = tmp_path / "none.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "no features here")
        archive.writestr("clip.npy", b"\x93NUMPY")
    with pytest.raises(ValueError, match=r"none\.zip: expected exactly one pickled member \(\*\.pkl\), got 0 "
                                         r"\(members: \['readme\.txt', 'clip\.npy'\]\)"):
        load_pickled_array(path)


def test_a_file_that_is_not_a_zip_is_refused_naming_it(tmp_path):
    path = tmp_path / "clip.zip"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"clip\.zip: not a readable zip file"):
        load_pickled_array(path)


# ============================================================================================ AVE, real annotations
FIXTURES = Path(__file__).parent / "fixtures"
ANNOTATIONS = FIXTURES / "ave" / "Annotations_excerpt.txt"
AVE10 = HDCIDConfig.tiny(num_frames=10, modalities=["audio", "video"])  # AVE stores T = 10 segments
EMPTY_WINDOW_ROW = 26  # excerpt row 26 = line 27 of the real Annotations.txt: Church bell&VWi2ENBuTbw&good&0&0


def annotation_labels(path, width=None):
    """labels.h5 as the annotations describe it: [N, 10, width], the class one-hot on [start, end), else background."""
    lines = [line.split("&") for line in Path(path).read_text().splitlines()]
    names = list(dict.fromkeys(fields[0] for fields in lines))  # class ids by first appearance
    width = width or len(names) + 1
    labels = np.zeros((len(lines), 10, width))
    labels[..., -1] = 1
    for row, (category, _, _, start, end) in enumerate(lines):
        labels[row, int(start):int(end)] = 0
        labels[row, int(start):int(end), names.index(category)] = 1
    return labels, names, [fields[1] for fields in lines]


def write_ave_root(root, labels, order, config=AVE10, seed=0):
    """AVE h5 files for len(labels) rows: random features of config's shapes, labels, train_order.h5."""
    n, g = len(labels), np.random.default_rng(seed)
    s, v = config.video_spatial_size, config.video_feature_dim
    for name, key, data in (("visual_feature.h5", "avadataset", g.integers(0, 40, (n, 10, s, s, v)) / 4),
                            ("audio_feature.h5", "avadataset", g.standard_normal((n, 10, config.audio_feature_dim))),
                            ("labels.h5", "avadataset", labels), ("train_order.h5", "order", np.asarray(order))):
        with h5py.File(root / name, "w") as file:
            file.create_dataset(key, data=data)
    return root


@pytest.fixture(scope="module")
def ave_real(tmp_path_factory):
    """The AVE h5 layout for the 69 rows of the Annotations.txt excerpt; train order with rows 26, 41, 46."""
    labels, names, video_ids = annotation_labels(ANNOTATIONS)
    order = [EMPTY_WINDOW_ROW, 0, 41, 46, 5, 27, 40, 42, 45, 50, 60, 68, 1, 2, 3, 4]
    root = write_ave_root(tmp_path_factory.mktemp("ave_real"), labels, order)
    return root, labels, names, video_ids, order


def test_ave_clip_label_is_the_max_over_time_of_the_foreground_argmax():
    from hf_hdcid.data.layouts_labels import ave_clip_label

    width = 5
    assert ave_clip_label(one_hot_labels([None, 2, 2, None], width)) == 2
    assert ave_clip_label(one_hot_labels([None] * 4, width)) == 0  # all background: argmax 0 everywhere
    assert ave_clip_label(one_hot_labels([3, 1, 1, 1], width)) == 3  # the largest class present, not the commonest


def test_the_annotation_excerpt_has_the_28_ave_categories_in_the_real_order(ave_real):
    from hf_hdcid.data.layouts_labels import read_ave_annotations

    rows, names = read_ave_annotations(ANNOTATIONS)
    assert len(rows) == 69 and len(names) == 28
    assert names[:3] == ["Church bell", "Male speech, man speaking", "Bark"] and names[-1] == "Mandolin"
    empty = [r for r in rows if r.empty_window]
    assert [(r.line, r.category, r.video_id, r.class_id) for r in empty] == [(27, "Church bell", "VWi2ENBuTbw", 0)]


def test_ave_with_annotations_labels_row_26_zero_with_its_youtube_id(ave_real, tmp_path):
    root, labels, names, video_ids, order = ave_real
    out = convert_features("ave", tmp_path / "ave", AVE10, progress=False, root=root, annotations=ANNOTATIONS)
    data, _ = load_shards(out, AVE10)
    rows = by_id(data)
    assert int(rows["VWi2ENBuTbw"]["label"]) == 0  # Church bell, as the original's rule gives
    assert torch.equal(rows["VWi2ENBuTbw"]["audio_labels"][:, -1], torch.ones(10, dtype=torch.int8))  # no event
    ids = column(data, "clip_id")
    assert ids[:4] == ["VWi2ENBuTbw", "RUhOCu3LNXM", "-9R4WPSKE3Q@41", "-9R4WPSKE3Q@46"]  # shared id: row appended
    assert column(data, "label") == [names.index(Path(ANNOTATIONS).read_text().splitlines()[r].split("&")[0])
                                     for r in order]
    assert -1 not in column(data, "label")
    assert torch.equal(rows["RUhOCu3LNXM"]["video_labels"], torch.from_numpy(labels[0]).to(torch.int8))


def test_ave_without_annotations_gives_row_ids_and_the_original_rule(ave_real, tmp_path):
    root, _, _, _, order = ave_real
    data, _ = load_shards(convert_features("ave", tmp_path / "ave", AVE10, progress=False, root=root), AVE10)
    assert column(data, "clip_id")[:2] == ["ave-26", "ave-0"] and column(data, "label")[0] == 0


def test_ave_classification_runs_on_the_annotated_shards(ave_real, tmp_path):
    from hf_hdcid import HDCIDForPreTraining
    from hf_hdcid.downstream.runner import evaluate_downstream

    root = ave_real[0]
    out = convert_features("ave", tmp_path / "ave", AVE10, progress=False, root=root, annotations=ANNOTATIONS)
    torch.manual_seed(0)
    record = evaluate_downstream(HDCIDForPreTraining(AVE10), "ave", "v2a", out, protocol="paper", epochs=1,
                                 batch_size=8)
    assert record["data"]["clips"]["train"] == 16 and 0 <= record["score"]["mean"] <= 1


def test_ave_annotation_line_count_must_equal_the_h5_rows(tmp_path):
    labels = annotation_labels(ANNOTATIONS)[0]
    root = write_ave_root(tmp_path, labels[:-1], [0, 1])
    with pytest.raises(ValueError, match=r"Annotations_excerpt\.txt: expected one annotation line per row of "
                                         r".*visual_feature\.h5 \(68 rows\), got 69 lines"):
        convert_features("ave", tmp_path / "out", AVE10, progress=False, root=root, annotations=ANNOTATIONS)
    assert not (tmp_path / "out").exists()


def test_ave_annotated_category_must_match_the_label_file(tmp_path):
    labels = annotation_labels(ANNOTATIONS)[0]
    labels[30, :, :] = 0
    labels[30, :, 2] = 1  # row 30 (line 31, Church bell 0-10) labelled Bark in labels.h5
    root = write_ave_root(tmp_path, labels, [29, 30])
    with pytest.raises(ValueError, match=r"Annotations_excerpt\.txt, line 31: column 'Category': expected 'Bark' "
                                         r"\(class 2, the label of .*labels\.h5 row 30\), "
                                         r"got 'Church bell' \(class 0\)"):
        convert_features("ave", tmp_path / "out", AVE10, progress=False, root=root, annotations=ANNOTATIONS)


def test_ave_annotations_do_not_describe_an_ave_avvp_label_file(ave_real, tmp_path):
    root = ave_real[0]
    with h5py.File(tmp_path / "ave_avvp_labels.h5", "w") as file:
        file.create_dataset("avadataset", data=np.stack([one_hot_labels([0] * 10, 13)] * 69))
    with pytest.raises(ValueError, match=r"expected at most 12 categories \(the foreground columns of "
                                         r".*ave_avvp_labels\.h5\), got 28"):
        convert_features("ave", tmp_path / "out", AVE10, progress=False, root=root, annotations=ANNOTATIONS,
                         labels_path=tmp_path / "ave_avvp_labels.h5")


@pytest.mark.parametrize("line, message", [
    ("Bark&abc&good&0", r"line 2: expected 5 '&'-separated columns Category&VideoID&Quality&StartTime&EndTime, got 4"),
    ("Bark&abc&good&x&10", r"line 2: column 'StartTime': expected a whole number of seconds, got 'x'"),
    ("Bark&abc&good&5&3", r"line 2: column 'EndTime': expected at least StartTime \(5\), got 3"),
    ("Bark&&good&0&3", r"line 2: column 'VideoID': expected a non-empty value, got ''"),
])
def test_a_bad_annotation_line_is_named_with_its_column(tmp_path, line, message):
    from hf_hdcid.data.layouts_labels import read_ave_annotations

    path = write_lines(tmp_path / "Annotations.txt", ["Church bell&RUhOCu3LNXM&good&0&10", line])
    with pytest.raises(ValueError, match=rf"Annotations\.txt, {message}"):
        read_ave_annotations(path)


# ============================================================================================ AVVP, real per-event csvs
AVVP_AUDIO = FIXTURES / "avvp" / "AVVP_eval_audio_excerpt.csv"
AVVP_VISUAL = FIXTURES / "avvp" / "AVVP_eval_visual_excerpt.csv"
AVVP_CATEGORIES = FIXTURES / "avvp" / "AVVP_Categories.txt"
AVVP_HEADER = ["filename", "onset", "offset", "event_labels"]


def combined_form(per_event, out):
    """The authors' combined form of a per-event csv: one row per video (first appearance), comma-joined lists."""
    with open(per_event, newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    videos = {}
    for row in rows:
        videos.setdefault(row["filename"], []).append(row)
    return write_csv(out, AVVP_HEADER, [(name, *(",".join(r[c] for r in events) for c in AVVP_HEADER[1:]))
                                        for name, events in videos.items()], delimiter="\t")


def event_names(*paths):
    names = set()
    for path in paths:
        with open(path, newline="") as file:
            names |= {row["event_labels"] for row in csv.DictReader(file, delimiter="\t")}
    return names


def test_the_categories_fixture_is_the_sorted_25_names_of_the_real_csvs():
    from hf_hdcid.data.layouts_labels import read_categories

    names = list(read_categories(AVVP_CATEGORIES))
    assert len(names) == 25 and names == sorted(names)
    assert {"Baby_cry_infant_cry", "Blender", "Speech", "Frying_(food)"} <= set(names)
    assert event_names(AVVP_AUDIO, AVVP_VISUAL) <= set(names)


@pytest.mark.parametrize("per_event", [AVVP_AUDIO, AVVP_VISUAL], ids=["audio", "visual"])
def test_avvp_per_event_and_combined_forms_give_identical_labels(per_event, tmp_path):
    from hf_hdcid.data.layouts_labels import avvp_labels

    combined = combined_form(per_event, tmp_path / "combined.csv")
    per_event_labels = avvp_labels(per_event, AVVP_CATEGORIES)
    combined_labels = avvp_labels(combined, AVVP_CATEGORIES)
    assert list(per_event_labels) == list(combined_labels)  # the same videos in the same order
    videos, events = len(combined.read_text().splitlines()) - 1, len(per_event.read_text().splitlines()) - 1
    assert videos == len(per_event_labels) < events  # some videos have several events
    for name in per_event_labels:
        assert np.array_equal(per_event_labels[name], combined_labels[name]), name


def test_avvp_real_audio_events_by_hand():
    from hf_hdcid.data.layouts_labels import avvp_labels, read_categories

    classes = read_categories(AVVP_CATEGORIES)
    labels = avvp_labels(AVVP_AUDIO, AVVP_CATEGORIES)
    bg = len(classes)

    def expected(events):
        label = np.zeros((10, bg + 1), dtype=np.int8)
        for name, onset, offset in events:
            label[onset:offset, classes[name]] = 1
        label[:, bg] = label[:, :bg].sum(1) == 0
        return label

    assert list(labels)[:3] == ["4YdbENYcIyE_23_33", "KSRjje7GH44_60_70", "McVcuryKUp4_160_170"]
    assert np.array_equal(labels["KSRjje7GH44_60_70"], expected([("Blender", 8, 10), ("Speech", 0, 8)]))
    # rows 2185 and 2188 of the real file: the video's events are not on adjacent lines
    assert np.array_equal(labels["JR09cQfpjqE_30_40"], expected([("Violin_fiddle", 4, 10), ("Speech", 1, 5)]))
    # line 3770 "9 0 Cheering" (offset before onset) marks nothing, as in the original; "9 9 Speech" neither
    assert np.array_equal(labels["8DF2PxdT5tE_390_400"], expected([("Basketball_bounce", 2, 8), ("Speech", 0, 2),
                                                                   ("Speech", 7, 10)]))
    assert labels["CaC2xvdLC34_250_260"][:, classes["Speech"]].sum() == 0


def test_avvp_a_file_mixing_both_forms_adds_the_events_of_a_repeated_filename(tmp_path):
    from hf_hdcid.data.layouts_labels import avvp_labels

    mixed = write_csv(tmp_path / "mixed.csv", AVVP_HEADER, [("KSRjje7GH44_60_70", "8", "10", "Blender"),
                                                            ("abcdefghijk_0_10", "0,5", "2,6", "Dog,Cat"),
                                                            ("KSRjje7GH44_60_70", "0,9", "8,10", "Speech,Dog")],
                      delimiter="\t")
    per_event = write_csv(tmp_path / "per_event.csv", AVVP_HEADER, [
        ("KSRjje7GH44_60_70", "8", "10", "Blender"), ("abcdefghijk_0_10", "0", "2", "Dog"),
        ("abcdefghijk_0_10", "5", "6", "Cat"), ("KSRjje7GH44_60_70", "0", "8", "Speech"),
        ("KSRjje7GH44_60_70", "9", "10", "Dog")], delimiter="\t")
    a, b = avvp_labels(mixed, AVVP_CATEGORIES), avvp_labels(per_event, AVVP_CATEGORIES)
    assert list(a) == list(b) == ["KSRjje7GH44_60_70", "abcdefghijk_0_10"]
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_avvp_train_csv_is_refused_saying_why_it_is_not_used():
    from hf_hdcid.data.layouts_labels import avvp_labels

    with pytest.raises(ValueError, match=r"AVVP_train_excerpt\.csv, line 1: header \['filename', 'event_labels'\] "
                                         r"has no 'onset' / 'offset' columns.*weak clip-level label file.*trains on "
                                         r"one modality's eval labels"):
        avvp_labels(FIXTURES / "avvp" / "AVVP_train_excerpt.csv", AVVP_CATEGORIES)


@pytest.mark.parametrize("row, message", [
    (("KSRjje7GH44_60_70", "0,2", "3", "Speech"), r"columns 'onset' / 'offset' / 'event_labels': expected parallel "
                                                  r"lists of one length, got 2 / 1 / 1 values"),
    (("KSRjje7GH44_60_70", "1.5", "3", "Speech"), r"column 'onset': expected a non-negative whole second, got '1\.5'"),
    (("KSRjje7GH44_60_70", "0", "end", "Speech"), r"column 'offset': expected a whole number of seconds, got 'end'"),
    (("", "0", "3", "Speech"), r"column 'filename': expected a video name, got ''"),
])
def test_a_bad_avvp_row_is_named_with_its_line_and_column(tmp_path, row, message):
    from hf_hdcid.data.layouts_labels import avvp_labels

    path = write_csv(tmp_path / "AVVP_eval_audio.csv", AVVP_HEADER, [("4YdbENYcIyE_23_33", "0", "4", "Speech"), row],
                     delimiter="\t")
    with pytest.raises(ValueError, match=rf"AVVP_eval_audio\.csv, line 3: {message}"):
        avvp_labels(path, AVVP_CATEGORIES)


@pytest.fixture(scope="module")
def avvp_real(tmp_path_factory):
    """Feature zips (T = 10) for every video of the two real excerpts."""
    root = tmp_path_factory.mktemp("avvp_real")
    names = list(dict.fromkeys(list(event_rows(AVVP_AUDIO)) + list(event_rows(AVVP_VISUAL))))
    for i, name in enumerate(names):
        write_zip(root / "audio" / f"{name[:11]}.zip", audio(700 + i, 10 - i % 3))
        write_zip(root / "video" / f"{name[:11]}.zip", video(800 + i, 10))
    return root, names, dict(audio_dir=root / "audio", video_dir=root / "video", categories_path=AVVP_CATEGORIES)


def event_rows(path):
    with open(path, newline="") as file:
        return dict.fromkeys(row["filename"] for row in csv.DictReader(file, delimiter="\t"))


def test_avvp_real_excerpts_convert_with_both_label_columns(avvp_real, tmp_path):
    from hf_hdcid.data.layouts_labels import avvp_labels

    root, names, dirs = avvp_real
    out = convert_features("avvp", tmp_path / "avvp", AVE10, progress=False,
                           csv_path={"audio": AVVP_AUDIO, "video": AVVP_VISUAL}, **dirs)
    data, _ = load_shards(out, AVE10, split="test")
    rows = by_id(data)
    assert list(rows) == names
    audio_labels, visual_labels = avvp_labels(AVVP_AUDIO, AVVP_CATEGORIES), avvp_labels(AVVP_VISUAL, AVVP_CATEGORIES)
    for name in names:
        for column_name, labels in (("audio_labels", audio_labels), ("video_labels", visual_labels)):
            expected = labels[name] if name in labels else np.full((10, 26), -1, np.int8)
            assert torch.equal(rows[name][column_name], torch.from_numpy(expected)), (name, column_name)


def test_avvp_task_runs_on_the_real_excerpts_each_side_on_its_annotated_videos(avvp_real, tmp_path):
    """The public audio and visual files cover different videos: V->A trains on the visually annotated
    videos and tests on the audio-annotated ones (as the original), naming how many each side left out."""
    from hf_hdcid import HDCIDForPreTraining
    from hf_hdcid.downstream import evaluate_downstream

    root, names, dirs = avvp_real
    out = convert_features("avvp", tmp_path / "avvp", AVE10, progress=False,
                           csv_path={"audio": AVVP_AUDIO, "video": AVVP_VISUAL}, **dirs)
    audio_only = [n for n in names if n not in event_rows(AVVP_VISUAL)]
    visual_only = [n for n in names if n not in event_rows(AVVP_AUDIO)]
    assert audio_only or visual_only  # the excerpts, like the files, differ
    torch.manual_seed(0)
    model = tmp_path / "model"
    HDCIDForPreTraining(AVE10).save_pretrained(model)
    record = evaluate_downstream(model, "avvp", "v2a", out, protocol="paper", epochs=1, seeds=[0])
    assert record["data"]["unannotated"] == {"train": len(audio_only), "val": len(visual_only),
                                             "test": len(visual_only)}
    assert 0.0 <= record["score"]["mean"] <= 1.0


# ============================================================================================ missing feature files
def test_missing_feature_files_are_one_error_counting_and_naming_them(avvp_real, tmp_path):
    root, names, dirs = avvp_real
    rows = [(n, "0", "10", "Speech") for n in names[:3]] + [(n, "0", "10", "Speech") for n in
                                                           ("KSRjje7GH4X_60_70", "aaaaaaaaaaa_0_10", "bbbbbbbbbbb_0_10",
                                                            "ccccccccccc_0_10")]
    listing = write_csv(tmp_path / "AVVP_eval_audio.csv", AVVP_HEADER, rows, delimiter="\t")
    audio_dir = dirs["audio_dir"]
    with pytest.raises(ValueError) as error:
        convert_features("avvp", tmp_path / "out", AVE10, progress=False, csv_path=listing, **dirs)
    assert str(error.value) == (
        f"{listing}: 4 of 7 listed clips have no feature file (first: KSRjje7GH4X_60_70 -> "
        f"{audio_dir / 'KSRjje7GH4X.zip'}, aaaaaaaaaaa_0_10 -> {audio_dir / 'aaaaaaaaaaa.zip'}, bbbbbbbbbbb_0_10 -> "
        f"{audio_dir / 'bbbbbbbbbbb.zip'}, ...): pass --skip-missing (skip_missing=True) to convert the rest")
    assert sorted(os.listdir(tmp_path)) == ["AVVP_eval_audio.csv"]


def test_skip_missing_converts_the_rest_and_records_the_skipped_ids_in_the_manifest(avvp_real, tmp_path):
    import json

    import hf_hdcid

    root, names, dirs = avvp_real
    rows = [(names[0], "0", "10", "Speech"), ("zzzzzzzzzzz_0_10", "0", "1", "Dog"), (names[1], "0", "1", "Dog"),
            ("yyyyyyyyyyy_5_15", "0", "1", "Dog")]
    listing = write_csv(tmp_path / "AVVP_eval_audio.csv", AVVP_HEADER, rows, delimiter="\t")
    out = convert_features("avvp", tmp_path / "out", AVE10, progress=False, csv_path=listing, skip_missing=True,
                           **dirs)
    assert column(load_shards(out, AVE10).dataset, "clip_id") == names[:2]
    source = json.loads((out / "hdcid_shards.json").read_text())["source"]
    assert source == {"layout": "avvp", "converter_version": hf_hdcid.__version__,
                      "paths": {"csv_path": str(listing), **{k: str(v) for k, v in dirs.items()}},
                      "skipped_missing": ["zzzzzzzzzzz_0_10", "yyyyyyyyyyy_5_15"]}


def test_every_zip_layout_checks_its_listed_clips_first(vggsound, tmp_path):
    root, paths, _ = vggsound
    dirs = {k: paths[k] for k in ("audio_dir", "video_dir")}
    cases = {
        "vggsound": {**paths, "prompts_csv": None,
                     "csv_path": write_csv(tmp_path / "meta.csv", ["category", "video_id", "split"],
                                           [("rain", "vid_c", "train"), ("rain", "vid_zz", "train")])},
        "vggsound81k": {**dirs, "csv_path": write_csv(tmp_path / "81k.csv", ["id"], [("vid_zz.mp4",), ("vid_b.mp4",)])},
        "ucf_vggsound": {"csv_path": write_csv(tmp_path / "vggsound2ucf.csv", ["video_id", "category"],
                                               [("vid_a", "rain"), ("vid_zz", "rain")]),
                         "feature_dir": paths["audio_dir"], "categories_path": paths["categories_path"],
                         "modality": "audio"},
    }
    for layout, layout_paths in cases.items():
        with pytest.raises(ValueError, match=rf"1 of 2 listed clips have no feature file \(first: vid_zz -> "
                                             rf".*audio/vid_zz\.zip\): pass --skip-missing"):
            convert_features(layout, tmp_path / layout, AV, progress=False, **layout_paths)
        assert not (tmp_path / layout).exists()


def test_only_the_zips_of_the_stored_modalities_are_needed(vggsound, tmp_path):
    root, paths, features = vggsound
    config = HDCIDConfig.tiny(modalities=["audio", "text"])
    out = convert_features("vggsound", tmp_path / "at", config, progress=False,
                           **{**paths, "video_dir": tmp_path / "no_video_zips"})
    data, _ = load_shards(out)
    assert "video" not in data.column_names and sorted(column(data, "clip_id")) == ["vid_a", "vid_b", "vid_c", "vid_d"]


def test_a_zip_of_the_wrong_shape_is_named_with_the_clip_and_column(vggsound, tmp_path):
    root, paths, _ = vggsound
    (tmp_path / "video").mkdir()
    shutil.copy(paths["video_dir"] / "vid_a.zip", tmp_path / "video")  # the train split: vid_a, then vid_c
    write_zip(tmp_path / "video" / "vid_c.zip", video(1, T - 1))  # video is kept as stored: T - 1 segments
    with pytest.raises(ValueError, match=rf"video/vid_c\.zip: clip 'vid_c' \(.*meta\.csv\): column 'video': "
                                         rf"expected shape \[{T}, {S}, {S}, {V}\], got \[{T - 1}, {S}, {S}, {V}\]"):
        convert_features("vggsound", tmp_path / "out", AV, progress=False,
                         **{**paths, "video_dir": tmp_path / "video", "splits": {"train"}, "prompts_csv": None})
    assert sorted(os.listdir(tmp_path)) == ["video"]


def test_convert_features_cli_skip_missing_and_failures_leave_nothing(vggsound, tmp_path, capsys):
    from hf_hdcid.cli import main

    root, paths, _ = vggsound
    listing = write_csv(tmp_path / "meta.csv", ["category", "video_id", "split"],
                        [("rain", "vid_c", "train"), ("rain", "vid_zz", "train"), ("rain", "vid_a", "train")])
    args = ["convert-features", "vggsound", str(tmp_path / "out"), "--preset", "tiny", "--modalities", "audio,video",
            f"--path=csv_path={listing}", *(f"--path={k}={paths[k]}" for k in ("audio_dir", "video_dir",
                                                                                 "categories_path"))]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "1 of 3 listed clips have no feature file (first: vid_zz -> " in err
    assert sorted(os.listdir(tmp_path)) == ["meta.csv"]
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(paths["audio_dir"] / "vid_c.zip", broken)
    (broken / "vid_a.zip").write_bytes(b"truncated")  # fails on the second clip, after vid_c was converted
    assert main([*args[:-3], f"--path=audio_dir={broken}", *args[-2:], "--skip-missing"]) == 2
    assert "vid_a.zip: not a readable zip file" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["broken", "meta.csv"]
    assert main([*args, "--skip-missing"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'out'}: 2 clips" in out
    assert ("skipped 1 listed clips without a feature file: vid_zz (all in hdcid_shards.json, "
            "source.skipped_missing)") in out


# ============================================================================================ the whole public files
REAL_FILES = os.environ.get("HF_HDCID_REAL_FILES")  # a folder with the public files named in fixtures/README.md


@pytest.mark.skipif(not REAL_FILES, reason="set HF_HDCID_REAL_FILES to a folder with the public AVE / AVVP files")
def test_the_whole_public_label_files_read_as_published():
    from hf_hdcid.data.layouts_labels import ave_clip_ids, avvp_labels, read_ave_annotations, read_categories

    real = Path(REAL_FILES)
    rows, names = read_ave_annotations(real / "Annotations.txt")
    assert len(rows) == 4143 and len(names) == 28
    assert [(r.line, r.video_id) for r in rows if r.empty_window] == [(27, "VWi2ENBuTbw")]
    ids = ave_clip_ids(rows)
    assert len(set(ids)) == 4143 and ids[26] == "VWi2ENBuTbw" and sum("@" in i for i in ids) == 91
    with h5py.File(real / "train_order.h5", "r") as file:
        assert EMPTY_WINDOW_ROW in set(file["order"][()].tolist())
    categories = set(read_categories(AVVP_CATEGORIES))
    for name, videos in (("AVVP_eval_audio.csv", 1848), ("AVVP_eval_visual.csv", 1665)):
        assert event_names(real / name) == categories
        assert len(avvp_labels(real / name, AVVP_CATEGORIES)) == videos
    with pytest.raises(ValueError, match="no 'onset' / 'offset' columns"):
        avvp_labels(real / "AVVP_train.csv", AVVP_CATEGORIES)


def test_skip_missing_with_no_feature_file_at_all_is_still_an_error(vggsound, tmp_path):
    root, paths, _ = vggsound
    listing = write_csv(tmp_path / "81k.csv", ["id"], [("vid_yy.mp4",), ("vid_zz.mp4",)])
    with pytest.raises(ValueError, match=r"2 of 2 listed clips have no feature file .*: none is left to convert"):
        convert_features("vggsound81k", tmp_path / "out", AV, progress=False, skip_missing=True, csv_path=listing,
                         audio_dir=paths["audio_dir"], video_dir=paths["video_dir"])
    assert sorted(os.listdir(tmp_path)) == ["81k.csv"]


def test_an_annotation_header_line_is_skipped(tmp_path):
    from hf_hdcid.data.layouts_labels import read_ave_annotations

    lines = ANNOTATIONS.read_text().splitlines()
    path = write_lines(tmp_path / "Annotations.txt", ["Category&VideoID&Quality&StartTime&EndTime", *lines])
    rows, names = read_ave_annotations(path)
    assert len(rows) == 69 and rows[26].line == 28 and names == read_ave_annotations(ANNOTATIONS)[1]
