"""Feature shards: schema, manifest, round trip, dtypes, splits, shuffled reads, atomic writes, validation
errors, sharding."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Array2D, Array4D, Value
from torch.utils.data import DataLoader

from hf_hdcid import HDCIDConfig
from hf_hdcid.data import schema as schema_module
from hf_hdcid.data.shards import (
    MANIFEST_NAME,
    ArrowBatchView,
    FeatureSchema,
    HDCIDCollator,
    collate,
    load_shards,
    make_dataloader,
    read_manifest,
    select_split,
    shard_features,
    shard_for_process,
    write_shards,
)

CONFIG = HDCIDConfig.tiny()  # T=6, audio 8, video 5x5x12, text 20
LABEL_WIDTH = 3


def make_record(i: int, split: str = "train", config: HDCIDConfig = CONFIG, **extra) -> dict:
    """One clip of float32 features (video non-negative, text not fp16-exact), label i % 4."""
    g = np.random.default_rng(i)
    t, s = config.num_frames, config.video_spatial_size
    record = {
        "clip_id": f"clip{i:03d}", "split": split, "label": i % 4,
        "audio": g.standard_normal((t, config.audio_feature_dim)).astype(np.float32),
        "video": g.random((t, s, s, config.video_feature_dim)).astype(np.float32) * 10,
        "text": g.standard_normal((t, config.text_feature_dim)).astype(np.float32),
    }
    record.update(extra)
    return record


def make_records(n: int = 10, **extra) -> list:
    """n clips, every third one in "test", the rest in "train" (interleaved on purpose)."""
    return [make_record(i, "test" if i % 3 == 2 else "train", **extra) for i in range(n)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A shard folder of 10 clips with segment labels on the even clips, and its records by id."""
    records = make_records(10)
    for i, r in enumerate(records):
        if i % 2 == 0:
            r["audio_labels"] = np.eye(LABEL_WIDTH, dtype=np.int64)[np.arange(CONFIG.num_frames) % LABEL_WIDTH]
            r["video_labels"] = np.zeros((CONFIG.num_frames, LABEL_WIDTH), dtype=bool)
    path = tmp_path_factory.mktemp("shards") / "tiny"
    write_shards(records, path, CONFIG, num_shards=2, label_width=LABEL_WIDTH)
    return path, {r["clip_id"]: r for r in records}


def test_schema_has_the_configured_columns_and_stored_dtypes():
    features = shard_features(CONFIG, label_width=LABEL_WIDTH)
    assert list(features) == ["clip_id", "split", "label", "audio", "video", "text", "audio_labels", "video_labels"]
    assert features["video"] == Array4D((6, 5, 5, 12), "float16")
    assert features["audio"] == Array2D((6, 8), "float32")
    assert features["text"] == Array2D((6, 20), "float16")
    assert features["label"] == Value("int64")
    assert features["audio_labels"] == Array2D((6, LABEL_WIDTH), "int8")


def test_schema_without_text_features_stores_the_prompt_and_only_configured_modalities():
    assert list(shard_features(CONFIG, with_text_features=False)) == [
        "clip_id", "split", "label", "audio", "video", "prompt"]
    av = HDCIDConfig.tiny(modalities=["video", "audio"])
    assert list(shard_features(av, label_width=2)) == [
        "clip_id", "split", "label", "audio", "video", "audio_labels", "video_labels"]
    with pytest.raises(ValueError, match="with_text_features=True or with_prompt=True"):
        shard_features(CONFIG, with_text_features=False, with_prompt=False)


def test_round_trip_video_and_text_are_fp16_rounded_audio_exact(written):
    path, by_id = written
    data, _ = load_shards(path, CONFIG)
    assert len(data) == 10
    for row in data:
        r = by_id[row["clip_id"]]
        assert torch.equal(row["video"], torch.from_numpy(r["video"]).half())
        assert torch.equal(row["text"], torch.from_numpy(r["text"]).half())
        assert torch.equal(row["audio"], torch.from_numpy(r["audio"]))
        assert int(row["label"]) == r["label"] and row["split"] == r["split"]


def test_segment_labels_round_trip_and_default_to_minus_one(written):
    path, by_id = written
    data, _ = load_shards(path, CONFIG)
    for row in data:
        r = by_id[row["clip_id"]]
        assert row["audio_labels"].dtype == torch.int8
        if "audio_labels" in r:
            assert torch.equal(row["audio_labels"], torch.from_numpy(r["audio_labels"]).to(torch.int8))
            assert torch.equal(row["video_labels"], torch.zeros(6, LABEL_WIDTH, dtype=torch.int8))
        else:
            assert torch.equal(row["audio_labels"], torch.full((6, LABEL_WIDTH), -1, dtype=torch.int8))


def test_torch_format_keeps_stored_dtypes(written):
    data, _ = load_shards(written[0], CONFIG)
    row, batch = data[0], data[:4]
    assert row["video"].dtype == torch.float16 and batch["video"].dtype == torch.float16
    assert row["text"].dtype == torch.float16
    assert row["audio"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64
    assert batch["video"].shape == (4, 6, 5, 5, 12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_collate_casts_features_to_the_model_dtype(written, dtype):
    path, by_id = written
    data, collate_fn = load_shards(path, CONFIG, dtype=dtype)
    for batch in (collate_fn(data[:4]), collate_fn([data[i] for i in range(4)])):
        assert {batch[m].dtype for m in ("audio", "video", "text")} == {dtype}
        assert batch["label"].dtype == torch.int64 and batch["audio_labels"].dtype == torch.int8
        assert batch["video"].shape == (4, 6, 5, 5, 12)
        expected = torch.stack([torch.from_numpy(by_id[c]["video"]).half() for c in batch["clip_id"]]).to(dtype)
        assert torch.equal(batch["video"], expected)
    assert set(collate_fn.model_inputs(batch)) == {"audio", "video", "text"}


def test_collate_keeps_only_the_configured_modalities(written):
    data, _ = load_shards(written[0], HDCIDConfig.tiny(modalities=["audio", "video"]))
    batch = HDCIDCollator(HDCIDConfig.tiny(modalities=["audio", "video"]))(data[:2])
    assert "text" not in batch and batch["video"].dtype == torch.float32
    assert collate(data[:2])["text"].dtype == torch.float32  # no config: every stored modality


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_finite_check_is_exact_when_row_sums_overflow(dtype):
    big = torch.finfo(dtype).max / 2  # every value finite, every row sum overflowing (fp16: summed in fp32)
    batch = {"clip_id": ["a", "b", "c"], "audio": torch.full((3, 6, 8), big, dtype=dtype)}
    assert torch.equal(HDCIDCollator(None, dtype)(batch)["audio"], batch["audio"])
    batch["audio"][1, 2, 3] = float("nan")
    batch["audio"][2, 0, 0], batch["audio"][2, 5, 7] = float("inf"), float("-inf")
    with pytest.raises(ValueError, match=r"shards: audio features of clip 'b' hold NaN/inf \(2 clips of this batch\)"):
        HDCIDCollator(None, dtype)(batch)


def test_dataloader_yields_collated_batches_covering_the_dataset(written):
    data, collate_fn = load_shards(written[0], CONFIG)
    batches = list(DataLoader(data, batch_size=4, shuffle=True, collate_fn=collate_fn))
    assert [b["video"].shape[0] for b in batches] == [4, 4, 2]
    assert sorted(c for b in batches for c in b["clip_id"]) == sorted(written[1])


def test_arrow_batch_view_gives_the_same_batches_as_datasets_random_access(written):
    data, collate_fn = load_shards(written[0], CONFIG)
    indices = [7, 0, 3, 9, -1]
    fast, slow = collate_fn(ArrowBatchView(data).__getitems__(indices)), collate_fn(data[[7, 0, 3, 9, 9]])
    assert fast["clip_id"] == slow["clip_id"]
    for name in ("audio", "video", "text", "label", "audio_labels", "video_labels"):
        assert fast[name].dtype == slow[name].dtype and torch.equal(fast[name], slow[name])
    shuffled = data.shuffle(seed=0, keep_in_memory=True)  # an indices mapping (no cache file in the folder)
    assert collate_fn(ArrowBatchView(shuffled).__getitems__([0, 1]))["clip_id"] == list(shuffled[:2]["clip_id"])
    with pytest.raises(IndexError, match="out of range"):
        ArrowBatchView(data).__getitems__([10])


@pytest.fixture(scope="module")
def four_shards(tmp_path_factory):
    """24 clips in 4 shard files, splits train / test / val interleaved, and the records by id."""
    records = [make_record(i, ("train", "test", "val")[i % 3]) for i in range(24)]
    path = write_shards(records, tmp_path_factory.mktemp("shards") / "four", CONFIG, num_shards=4)
    assert len(list(path.glob("data-*.arrow"))) == 4
    return path, {r["clip_id"]: r for r in records}


VIEWS = {  # datasets operations that leave an indices mapping (or a slice) under the rows
    "multi_shard_folder": lambda d: d,
    "shuffle": lambda d: d.shuffle(seed=3, keep_in_memory=True),
    "select": lambda d: d.select([17, 2, 23, 0, 11, 5, 8, 20], keep_in_memory=True),
    "select_split": lambda d: select_split(d, "test"),
    "select_split_of_shuffled": lambda d: select_split(d.shuffle(seed=4, keep_in_memory=True), "train"),
    "shuffle_of_select_split": lambda d: select_split(d, "val").shuffle(seed=5, keep_in_memory=True),
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_shuffled_batches_hold_exactly_the_rows_of_the_shuffled_indices(four_shards, view):
    path, by_id = four_shards
    data, collate_fn = load_shards(path, CONFIG)
    ds = VIEWS[view](data)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0)).tolist()
    batches = list(DataLoader(ArrowBatchView(ds), batch_size=3, sampler=order, collate_fn=collate_fn))
    ids = [c for b in batches for c in b["clip_id"]]
    assert ids == [ds[i]["clip_id"] for i in order]  # direct reads, one row each
    video = torch.cat([b["video"] for b in batches])  # [N, T, S, S, C] float32
    assert torch.equal(video, torch.stack([ds[i]["video"] for i in order]).float())
    assert torch.equal(video, torch.stack([torch.from_numpy(by_id[c]["video"]).half() for c in ids]).float())
    audio = torch.cat([b["audio"] for b in batches])  # [N, T, D_a]
    assert torch.equal(audio, torch.stack([torch.from_numpy(by_id[c]["audio"]) for c in ids]))
    assert [int(x) for b in batches for x in b["label"]] == [by_id[c]["label"] for c in ids]


def test_make_dataloader_shuffles_whole_collated_batches(written):
    data, collate_fn = load_shards(written[0], CONFIG, dtype=torch.float64)
    batches = list(make_dataloader(data, collate_fn, batch_size=4, shuffle=True,
                                   generator=torch.Generator().manual_seed(0)))
    assert [b["video"].shape for b in batches] == [(4, 6, 5, 5, 12)] * 2 + [(2, 6, 5, 5, 12)]
    assert {b["audio"].dtype for b in batches} == {torch.float64}
    assert sorted(c for b in batches for c in b["clip_id"]) == sorted(written[1])


def test_split_filter_returns_exactly_that_split_as_a_contiguous_slice(written):
    path, by_id = written
    test, _ = load_shards(path, CONFIG, split="test")
    assert sorted(test["clip_id"]) == sorted(c for c, r in by_id.items() if r["split"] == "test")
    assert set(test["split"]) == {"test"}
    assert test._indices is None  # write_shards grouped the interleaved splits: no indices mapping
    train, _ = load_shards(path, CONFIG, split="train")
    assert len(train) + len(test) == 10


def test_unknown_split_is_an_error_listing_the_splits_present(written):
    with pytest.raises(ValueError, match=r"split 'val' is empty or unknown: splits present \{'train': 7, 'test': 3\}"):
        load_shards(written[0], CONFIG, split="val")


def test_loading_never_writes_into_the_shard_folder(written):
    before = sorted(os.listdir(written[0]))
    data, _ = load_shards(written[0], CONFIG, split="test")
    list(DataLoader(data, batch_size=2, shuffle=True))
    assert sorted(os.listdir(written[0])) == before


def test_failing_record_midway_leaves_no_out_dir_and_no_temp_folder(tmp_path):
    def records():
        yield from make_records(5)
        yield make_record(5, video=np.zeros((6, 5, 5, 11), np.float32))
        yield from make_records(3)

    with pytest.raises(ValueError, match=r"record 5 \(clip_id 'clip005'\): column 'video': "
                                         r"expected shape \[6, 5, 5, 12\], got \[6, 5, 5, 11\]"):
        write_shards(records, tmp_path / "out", CONFIG)
    assert os.listdir(tmp_path) == []


def test_existing_out_dir_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "out"
    write_shards(make_records(4), out, CONFIG)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_shards(make_records(6), out, CONFIG)
    assert len(load_shards(out, CONFIG).dataset) == 4


def test_overwrite_replaces_the_folder_and_leaves_nothing_else(tmp_path):
    out = tmp_path / "out"
    write_shards(make_records(4), out, CONFIG)
    write_shards(make_records(6), out, CONFIG, overwrite=True)
    assert len(load_shards(out, CONFIG).dataset) == 6
    assert os.listdir(tmp_path) == ["out"]


def test_overwrite_never_replaces_a_folder_that_is_not_a_shard_folder(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a shard folder"):
        write_shards(make_records(2), tmp_path / "notes", CONFIG, overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["notes"]


def test_an_error_raised_by_the_record_source_propagates_unchanged(tmp_path):
    def records():
        yield make_record(0)
        raise KeyError("feature file missing")

    with pytest.raises(KeyError, match="feature file missing"):
        write_shards(records, tmp_path / "out", CONFIG)
    assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_the_old_folder(tmp_path):
    out = tmp_path / "out"
    write_shards(make_records(4), out, CONFIG)
    with pytest.raises(ValueError, match="NaN or inf"):
        write_shards(make_records(3) + [make_record(3, audio=np.full((6, 8), np.nan, np.float32))], out, CONFIG,
                     overwrite=True)
    assert len(load_shards(out, CONFIG).dataset) == 4
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("change, message", [
    (dict(audio=np.zeros((6, 9), np.float32)), r"column 'audio': expected shape \[6, 8\], got \[6, 9\]"),
    (dict(text=np.zeros((5, 20), np.float32)), r"column 'text': expected shape \[6, 20\], got \[5, 20\]"),
    (dict(video=np.full((6, 5, 5, 12), np.inf, np.float32)), r"column 'video': .* contain NaN or inf"),
    (dict(text=np.full((6, 20), np.nan, np.float16)), r"column 'text': .* contain NaN or inf"),
    (dict(video=np.full((6, 5, 5, 12), 1e6, np.float32)), r"column 'video': values exceed the float16 range"),
    (dict(video=None), r"column 'video': missing: expected an array of shape \[6, 5, 5, 12\]"),
    (dict(vidoe=np.zeros(3)), r"column 'vidoe': unexpected column"),
    (dict(label=-2), r"column 'label': expected an int in \[-1, 4\], got -2"),
    (dict(label=5), r"column 'label': expected an int in \[-1, 4\], got 5"),
    (dict(label=1.0), r"column 'label': expected an int"),
    (dict(clip_id=""), r"column 'clip_id': expected a non-empty string"),
    (dict(audio_labels=np.full((6, 3), 2)), r"column 'audio_labels': expected only 0/1 values .* got \[2\]"),
    (dict(video_labels=np.zeros((6, 4))), r"column 'video_labels': expected shape \[6, 3\], got \[6, 4\]"),
])
def test_every_invalid_record_is_named_with_column_expected_and_actual(tmp_path, change, message):
    bad = make_record(2, **change)
    if change.get("video", 0) is None:
        del bad["video"]
    records = make_records(2) + [bad]
    with pytest.raises(ValueError, match=r"record 2 \(clip_id '.*'\): " + message):
        write_shards(records, tmp_path / "out", CONFIG, label_width=3, num_classes=5)
    assert os.listdir(tmp_path) == []


def test_duplicate_clip_id_within_a_split_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"record 1 \(clip_id 'clip000'\).*second 'clip000' in split 'train'"):
        write_shards([make_record(0), make_record(0)], tmp_path / "out", CONFIG)


def test_empty_dataset_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        write_shards([], tmp_path / "out", CONFIG)
    assert os.listdir(tmp_path) == []


def test_prompt_is_required_when_text_features_are_not_stored(tmp_path):
    records = [{k: v for k, v in make_record(i).items() if k != "text"} | {"prompt": f"clip {i}"} for i in range(3)]
    data, _ = load_shards(write_shards(records, tmp_path / "a", CONFIG, with_text_features=False), CONFIG)
    assert list(data["prompt"]) == ["clip 0", "clip 1", "clip 2"]
    with pytest.raises(ValueError, match=r"record 0 \(clip_id 'clip000'\): column 'prompt': expected a non-empty"):
        write_shards([make_record(0)], tmp_path / "b", CONFIG, with_prompt=True)


def test_loading_with_another_config_names_the_path_and_column(written):
    with pytest.raises(ValueError, match=rf"{written[0]}: column 'video': expected Array4D\(shape=\[6, 7, 7, 12\]"):
        load_shards(written[0], HDCIDConfig.tiny(video_spatial_size=7))


def test_truncated_arrow_file_is_an_error_naming_it(written, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(written[0], copy)
    victim = copy / "data-00001-of-00002.arrow"
    os.truncate(victim, os.path.getsize(victim) // 2)
    with pytest.raises(ValueError, match=f"corrupt shard file {victim}: .*truncated"):
        load_shards(copy, CONFIG)
    os.remove(copy / MANIFEST_NAME)  # without the manifest the file is still found and named
    with pytest.raises(ValueError, match=f"corrupt shard file {victim}"):
        load_shards(copy, CONFIG)


def test_iterable_sharding_for_two_processes_is_disjoint_and_complete(written):
    data, collate_fn = load_shards(written[0], CONFIG)
    for num_shards in (4, 3):  # 4: whole shards per rank; 3: every other example
        stream = data.with_format("arrow").to_iterable_dataset(num_shards=num_shards)
        parts = [[c for b in DataLoader(shard_for_process(stream, rank, 2), batch_size=3, collate_fn=collate_fn)
                  for c in b["clip_id"]] for rank in (0, 1)]
        assert not set(parts[0]) & set(parts[1])
        assert sorted(parts[0] + parts[1]) == sorted(written[1])
        assert all(len(p) >= 4 for p in parts)


def test_map_style_sharding_and_rank_checks(written):
    data, _ = load_shards(written[0], CONFIG)
    parts = [list(shard_for_process(data, rank, 2)["clip_id"]) for rank in (0, 1)]
    assert sorted(parts[0] + parts[1]) == sorted(written[1])
    assert shard_for_process(data, 0, 1) is data
    with pytest.raises(ValueError, match=r"rank: expected an int in \[0, 2\), got 2"):
        shard_for_process(data, 2, 2)


# ============================================================================ FeatureSchema and the manifest
SCHEMA = FeatureSchema.from_config(CONFIG)
SIZES = {"num_frames": 6, "audio_feature_dim": 8, "video_feature_dim": 12, "video_spatial_size": 5,
         "text_feature_dim": 20}


def test_schema_from_config_has_its_sizes_and_modalities_in_canonical_order():
    schema = FeatureSchema.from_config(HDCIDConfig.tiny(modalities=["video", "audio"]))
    assert schema == FeatureSchema(("audio", "video"), **SIZES)
    assert schema.shape("audio") == (6, 8) and schema.shape("video") == (6, 5, 5, 12)
    assert SCHEMA.shape("text") == (6, 20)
    assert FeatureSchema.from_config(CONFIG, modalities=["video"]).modalities == ("video",)  # one is valid here
    with pytest.raises(ValueError, match=r"modality 'text': expected one of the schema's modalities"):
        schema.shape("text")


@pytest.mark.parametrize("field, value, message", [
    ("modalities", [], r"modalities: expected a non-empty subset of \('audio', 'video', 'text'\) without "
                       r"repeats, got \[\]"),
    ("modalities", ["audio", "speech"], r"modalities: expected a non-empty subset .* got \['audio', 'speech'\]"),
    ("modalities", ["video", "video"], r"modalities: expected .* without repeats, got \['video', 'video'\]"),
    ("modalities", "audio", r"modalities: expected a non-empty subset .* got 'audio'"),
    ("num_frames", 0, r"num_frames: expected a positive int, got 0"),
    ("video_feature_dim", 12.0, r"video_feature_dim: expected a positive int, got 12.0"),
    ("text_feature_dim", True, r"text_feature_dim: expected a positive int, got True"),
])
def test_invalid_schema_names_the_field_expected_and_actual(field, value, message):
    with pytest.raises(ValueError, match=r"FeatureSchema\." + message):
        FeatureSchema(**{"modalities": ("audio",), **SIZES, field: value})


def test_schema_round_trips_through_the_manifest_and_gives_the_model_its_sizes():
    stored = json.loads(json.dumps(SCHEMA.to_manifest()))
    assert stored == {"config": {"modalities": ["audio", "video", "text"], **SIZES}}
    assert FeatureSchema.from_manifest(stored, "hdcid_shards.json") == SCHEMA
    assert SCHEMA.config_overrides() == SIZES
    assert FeatureSchema.from_config(HDCIDConfig.tiny(**SCHEMA.config_overrides())) == SCHEMA


@pytest.mark.parametrize("manifest, message", [
    ({"num_rows": 3}, r"field 'config': expected an object with modalities and num_frames, .* got nothing"),
    ({"config": [6]}, r"field 'config': expected an object .* got list \[6\]"),
    ({"config": {"modalities": ["audio"]}}, r"field 'config.num_frames': missing \(fields present: \['modalities'\]\)"),
    ({"config": {"modalities": ["audio"], **SIZES, "num_frames": "6"}},
     r"field 'config.num_frames': expected a positive int, got '6'"),
    ({"config": {**SIZES, "modalities": ["audio", "smell"]}},
     r"field 'config.modalities': expected a non-empty subset .* got \['audio', 'smell'\]"),
])
def test_schema_of_a_bad_manifest_names_the_file_field_expected_and_actual(manifest, message):
    with pytest.raises(ValueError, match=r"^shards/hdcid_shards.json: " + message):
        FeatureSchema.from_manifest(manifest, "shards/hdcid_shards.json")


def test_a_single_modality_schema_writes_and_loads_one_feature_column(tmp_path):
    audio_only = FeatureSchema.from_config(CONFIG, modalities=["audio"])
    records = [{k: v for k, v in make_record(i).items() if k not in ("video", "text")} for i in range(3)]
    path = write_shards(records, tmp_path / "audio", audio_only)
    data, collate_fn = load_shards(path, audio_only)
    assert data.column_names == ["clip_id", "split", "label", "audio"]
    assert list(collate_fn.model_inputs(collate_fn(data[:3]))) == ["audio"]
    assert FeatureSchema.from_manifest(read_manifest(path)) == audio_only
    with pytest.raises(ValueError, match=rf"{path}: column 'video': expected Array4D\(shape=\[6, 5, 5, 12\].*"
                                         r"got no such column"):
        load_shards(path, CONFIG)  # a config is checked as its schema


def test_manifest_lists_the_dataset_files_and_keeps_the_source_verbatim(tmp_path, written):
    source = {"layout": "ave", "converter_version": 2, "paths": {"root": "/data/AVE", "split": "train"},
              "skipped_missing": ["clip9", "clip12"]}
    path = write_shards(make_records(6), tmp_path / "s", CONFIG, num_shards=3, source=source)
    manifest = read_manifest(path)
    assert manifest["source"] == source
    assert manifest["config"] == SCHEMA.to_manifest()["config"]
    data, _ = load_shards(path, CONFIG)
    files = [entry["filename"] for entry in manifest["files"]]
    assert files == sorted(Path(f["filename"]).name for f in data.cache_files) and len(files) == 3
    assert [entry["num_bytes"] for entry in manifest["files"]] == [os.path.getsize(path / f) for f in files]
    assert read_manifest(written[0])["source"] is None


@pytest.mark.parametrize("source, message", [
    (["ave"], r"source: expected None or a JSON-serialisable dict, got list"),
    ({"paths": {"root": Path("/data")}}, r"source\['paths'\]\['root'\]: expected a JSON value .* got PosixPath"),
    ({"skipped": [1.0, float("nan")]}, r"source\['skipped'\]\[1\]: expected a finite number"),
    ({1: "x"}, r"source: expected string keys \(JSON objects\), got key 1"),
])
def test_a_source_json_cannot_store_is_refused_before_anything_is_written(tmp_path, source, message):
    with pytest.raises(ValueError, match=message):
        write_shards(make_records(2), tmp_path / "out", CONFIG, source=source)
    assert os.listdir(tmp_path) == []


def test_the_shards_module_still_exports_every_public_name():
    from hf_hdcid.data import batches, loading, shards, writing

    for module in (schema_module, writing, loading, batches):
        for name in module.__all__:
            if name not in ("as_schema", "check_source", "write_manifest"):
                assert getattr(shards, name) is getattr(module, name), name
    assert shards.MANIFEST_NAME == "hdcid_shards.json" and shards.read_manifest is schema_module.read_manifest

