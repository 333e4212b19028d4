"""Downstream benchmarks: metrics (hand-computed), probes, protocols' splits, the run record, the grid."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.downstream import CodeCache, CodeSet, evaluate_downstream, get_task, train_probe
from hf_hdcid.downstream.probes import ClipProbe, ExpLogLoss, SegmentProbe
from hf_hdcid.downstream.report import eval_results, load_records, results_table
from hf_hdcid.downstream.runner import resolve_layers, resolve_rows, score
from hf_hdcid.metrics import metric_path
from hf_hdcid.metrics.hdcid_clip_accuracy.hdcid_clip_accuracy import clip_accuracy
from hf_hdcid.metrics.hdcid_segment_prf.hdcid_segment_prf import segment_prf

REPO = Path(__file__).resolve().parent.parent


# ============================================================================================ metrics
def test_clip_accuracy_by_hand_and_through_evaluate_load():
    import evaluate

    assert clip_accuracy([0, 2, 1, 1], [0, 1, 1, 3]) == {"accuracy": 0.5}
    metric = evaluate.load(metric_path("hdcid_clip_accuracy"))
    metric.add_batch(predictions=[0, 2], references=[0, 1])
    metric.add_batch(predictions=[1, 1], references=[1, 3])
    assert metric.compute() == {"accuracy": 0.5}
    with pytest.raises(ValueError, match="expected 3 values"):
        clip_accuracy([0, 1], [0, 1, 2])


def test_segment_prf_heldout_excludes_background_and_counts_globally():
    # columns: event0, event1, background
    pred = [[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]]
    ref = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]
    # event columns: TP = 2 (row0 e0, row1 e1); predicted = 4; positives = 3
    out = segment_prf(pred, ref)
    assert out["precision"] == pytest.approx(2 / 4) and out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_segment_prf_paper_averages_per_batch_including_background():
    pred = [[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]]
    ref = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]
    # batch 0 = rows 0,1: TP 2, predicted 3, positives 2 -> P 2/3, R 1
    # batch 1 = rows 2,3: TP 1 (background), predicted 2, positives 2 -> P 1/2, R 1/2; equal weights
    out = segment_prf(pred, ref, protocol="paper", batch_index=[0, 0, 1, 1])
    p, r = (2 / 3 + 1 / 2) / 2, (1 + 1 / 2) / 2
    assert out == pytest.approx({"precision": p, "recall": r, "f1": 2 * p * r / (p + r)})
    # a batch with no positive prediction scores precision 0 (the original's convention)
    assert segment_prf([[0, 0, 0]], [[1, 0, 0]], protocol="paper", batch_index=[0])["precision"] == 0.0
    with pytest.raises(ValueError, match="batch_index: expected the batch of every row"):
        segment_prf(pred, ref, protocol="paper")
    with pytest.raises(ValueError, match="protocol: expected one of"):
        segment_prf(pred, ref, protocol="best")


def test_segment_metric_module_matches_the_function_in_both_configs():
    import evaluate

    rng = np.random.default_rng(0)
    pred, ref = rng.integers(0, 2, (50, 5)), rng.integers(0, 2, (50, 5))
    batches = np.repeat(np.arange(5), 10)
    heldout = evaluate.load(metric_path("hdcid_segment_prf"))
    assert heldout.compute(predictions=pred.tolist(), references=ref.tolist()) == pytest.approx(segment_prf(pred, ref))
    paper = evaluate.load(metric_path("hdcid_segment_prf"), "paper")
    got = paper.compute(predictions=pred.tolist(), references=ref.tolist(), batch_index=batches.tolist())
    assert got == pytest.approx(segment_prf(pred, ref, protocol="paper", batch_index=batches))


# ============================================================================================ probes
def test_probes_are_the_original_decoders():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 10)
    clip = ClipProbe(10, 7)
    ref = clip.classify(clip.project(x).max(dim=1).values)
    assert clip(x).shape == (4, 7) and torch.equal(clip(x), ref)
    seg = SegmentProbe(10, 5)
    assert torch.equal(seg(x), seg.classify(seg.project(x))) and seg(x).shape == (4, 6, 5)
    loss = ExpLogLoss(5)
    logits, y = torch.randn(8, 5), torch.randint(0, 2, (8, 5)).float()
    by_hand = -(y * torch.log_softmax(logits, -1) * torch.exp(-torch.full((5,), 0.1))).sum(-1).mean()
    assert loss(logits, y).item() == pytest.approx(by_hand.item(), rel=1e-6)


def _oracle_codes(n, num_classes, t=6, dim=12, seed=0, noise=0.3, modality_shift=0.0) -> CodeSet:
    """Codes whose first num_classes channels one-hot the class on every segment, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    codes = noise * torch.randn(n, t, dim, generator=g) + modality_shift
    codes[torch.arange(n), :, labels] += 2.0
    return CodeSet(codes, labels)


def test_probe_transfers_when_both_modalities_share_the_codes():
    task = get_task("synthetic_ave")
    train, val = _oracle_codes(200, 5, seed=1), _oracle_codes(50, 5, seed=2)
    test = _oracle_codes(100, 5, seed=3, modality_shift=0.1)  # the "other modality": same codes, shifted
    best = train_probe(task, "heldout", train, val, test, epochs=15, batch_size=20, lr=1e-2, seed=0)
    assert score(task, "heldout", *best["test_outputs"])["accuracy"] > 0.95
    assert len(best["curve"]) == 15 and best["selection_score"] == max(best["curve"])
    # paper protocol: the selection set is the test set, the best test epoch is reported
    paper = train_probe(task, "paper", train, test, test, epochs=15, batch_size=20, lr=1e-2, seed=0)
    assert score(task, "paper", *paper["test_outputs"])["accuracy"] == max(paper["curve"])


def test_probe_is_at_chance_when_the_test_modality_has_unrelated_codes():
    task = get_task("synthetic_ave")
    train, val = _oracle_codes(200, 5, seed=1), _oracle_codes(50, 5, seed=2)
    test = _oracle_codes(300, 5, seed=3)
    test.codes = test.codes[:, :, torch.randperm(12, generator=torch.Generator().manual_seed(0))]  # scrambled
    best = train_probe(task, "heldout", train, val, test, epochs=15, batch_size=20, lr=1e-2, seed=0)
    assert score(task, "heldout", *best["test_outputs"])["accuracy"] < 0.45


# ============================================================================================ protocols
class _Rows:
    def __init__(self, splits):
        self._splits = splits

    def with_format(self, _):
        return {"split": self._splits}

    def __len__(self):
        return len(self._splits)


def test_protocol_splits():
    ave = get_task("synthetic_ave")
    ds = _Rows(["pretrain"] * 4 + ["train"] * 20 + ["test"] * 10)
    paper = resolve_rows(ave, "paper", ds, ds)
    assert paper["val"] is None and list(paper["train"]) == list(paper["test"]) == list(range(4, 24))
    held = resolve_rows(ave, "heldout", ds, ds, split_seed=0)
    assert len(held["val"]) == 4 and len(held["train"]) == 16 and list(held["test"]) == list(range(24, 34))
    assert not set(held["train"]) & set(held["val"])  # disjoint
    assert resolve_rows(ave, "heldout", ds, ds, split_seed=0)["val"].tolist() == held["val"].tolist()  # seeded
    with_val = _Rows(["train"] * 10 + ["val"] * 3 + ["test"] * 5)
    rows = resolve_rows(ave, "heldout", with_val, with_val)
    assert rows["val"].tolist() == [10, 11, 12] and len(rows["train"]) == 10
    # AVVP-like data with one split: carved 60/20/20, all disjoint
    single = _Rows(["train"] * 50)
    avvp = resolve_rows(get_task("avvp"), "heldout", single, single)
    sizes = [len(avvp[k]) for k in ("train", "val", "test")]
    assert sizes == [30, 10, 10] and len(set(np.concatenate([avvp[k] for k in avvp]))) == 50
    # two-dataset tasks: paper uses everything, heldout carves validation from the training side
    other = _Rows(["train"] * 7)
    two = resolve_rows(get_task("ucf_vggsound"), "heldout", single, other)
    assert len(two["train"]) == 40 and len(two["val"]) == 10 and len(two["test"]) == 7


def test_layer_choices():
    cfg = HDCIDConfig.tiny()
    assert resolve_layers(cfg, "both") == [0, 1] and resolve_layers(cfg, "2") == [1] and resolve_layers(cfg, 1) == [0]
    with pytest.raises(ValueError, match=r"layers: expected layer numbers in 1\.\.1"):
        resolve_layers(HDCIDConfig.tiny(num_layers=1), "2")


# ============================================================================================ end to end
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from hf_hdcid.data.synthetic import build_synthetic_shards

    cfg = HDCIDConfig.tiny(modalities=["audio", "video"])
    data = build_synthetic_shards(tmp_path_factory.mktemp("ds") / "syn", cfg, {"train": 40, "test": 20}, seed=0)
    torch.manual_seed(0)
    model = HDCIDForPreTraining(cfg)
    model.compute_toc(num_channels=6)
    folder = tmp_path_factory.mktemp("models") / "av"
    model.save_pretrained(folder)
    return data, folder


def test_a_run_writes_its_record_and_scores_through_evaluate(synthetic, tmp_path):
    data, folder = synthetic
    cache = CodeCache()
    record = evaluate_downstream(folder, "synthetic_avvp", "v2a", data, protocol="heldout", toc=True, seeds=[0, 1],
                                 epochs=3, batch_size=8, out_dir=tmp_path, cache=cache)
    assert (record["task"], record["direction"], record["protocol"], record["main_metric"]) == \
        ("synthetic_avvp", "v2a", "heldout", "f1")
    assert record["toc"]["enabled"] and record["toc"]["channels_per_layer"] == [6, 6]
    assert record["data"]["clips"] == {"train": 32, "val": 8, "test": 20}
    assert [s["seed"] for s in record["per_seed"]] == [0, 1] and len(record["score"]["values"]) == 2
    assert record["score"]["mean"] == pytest.approx(np.mean([s["test"]["f1"] for s in record["per_seed"]]))
    saved = json.loads(Path(record["path"]).read_text())
    assert saved["metrics"] == record["metrics"] and Path(record["path"]).name == \
        "h-dcid_toc_synthetic_avvp_v2a_heldout.json"
    assert cache.misses == 3  # train (video), val (video), test (audio): extracted once for both seeds

    encoder = __import__("hf_hdcid").HDCIDModel.from_pretrained(folder)
    again = evaluate_downstream(encoder, "synthetic_ave", "a2v", data, protocol="paper", epochs=2, batch_size=8,
                                cache=cache)
    assert again["data"]["clips"] == {"train": 40, "val": None, "test": 40}  # paper: the same train clips
    from hf_hdcid.data.shards import load_shards

    labels = load_shards(data)[0].with_format(None)["label"]
    assert again["chance_accuracy"] == pytest.approx(1 / (max(labels) + 1))


def test_score_is_the_evaluate_metric_of_the_task_and_protocol():
    segments = get_task("synthetic_avvp")
    rng = np.random.default_rng(1)
    pred, ref = rng.integers(0, 2, (60, 29)), rng.integers(0, 2, (60, 29))
    batches = np.repeat(np.arange(3), 20)
    for protocol in ("paper", "heldout"):
        expected = segment_prf(pred, ref, protocol=protocol, batch_index=batches if protocol == "paper" else None)
        assert score(segments, protocol, pred, ref, batches) == pytest.approx(expected)
    assert score(segments, "paper", pred, ref, batches) != pytest.approx(score(segments, "heldout", pred, ref, batches))
    clips = get_task("synthetic_ave")
    assert score(clips, "heldout", np.array([0, 2, 1, 1]), np.array([0, 1, 1, 3]), np.zeros(4)) == {"accuracy": 0.5}


def test_bad_inputs_fail_before_any_probe_trains(synthetic, tmp_path):
    from hf_hdcid.data.synthetic import build_synthetic_shards

    data, folder = synthetic
    with pytest.raises(ValueError, match="task: expected one of"):
        evaluate_downstream(folder, "kinetics", "v2a", data)
    with pytest.raises(ValueError, match="direction: expected one of"):
        evaluate_downstream(folder, "synthetic_ave", "v2t", data)
    with pytest.raises(ValueError, match="test_data: task 'ucf_vggsound' trains on one shard folder"):
        evaluate_downstream(folder, "ucf_vggsound", "v2a", data)
    no_toc = tmp_path / "no_toc"
    HDCIDForPreTraining(HDCIDConfig.tiny(modalities=["audio", "video"])).save_pretrained(no_toc)
    with pytest.raises(ValueError, match="toc: the model has no TOC channels"):
        evaluate_downstream(no_toc, "synthetic_ave", "v2a", data, toc=True)
    at = tmp_path / "at"
    HDCIDForPreTraining(HDCIDConfig.tiny(modalities=["audio", "text"])).save_pretrained(at)
    with pytest.raises(ValueError, match="model: direction 'v2a' needs 'video', which the model does not encode"):
        evaluate_downstream(at, "synthetic_ave", "v2a", data)
    unlabelled = build_synthetic_shards(tmp_path / "unlabelled", HDCIDConfig.tiny(modalities=["audio", "video"]),
                                        {"pretrain": 12}, seed=0)
    with pytest.raises(ValueError, match=r"12 of 12 clips have no 'video_labels' labels \(-1\)"):
        evaluate_downstream(folder, "avvp", "v2a", unlabelled, protocol="paper")
    with pytest.raises(ValueError, match="the heldout protocol needs train/test splits"):
        evaluate_downstream(folder, "ave", "v2a", unlabelled, protocol="heldout")


def test_table_layout_and_eval_results(synthetic, tmp_path):
    from hf_hdcid.downstream.grid import run_grid

    data, folder = synthetic
    result = run_grid([folder], ["synthetic_ave"], data, toc="both", seeds=[0, 1], epochs=2, batch_size=8,
                      out_dir=tmp_path, progress=False)
    table = result["table"]
    assert "| model | synthetic_ave V→A (accuracy) | synthetic_ave A→V (accuracy) | average |" in table
    assert "| H-DCID |" in table and "| H-DCID+TOC |" in table and "±" in table
    assert Path(result["figure_path"]).read_bytes().startswith(b"\x89PNG")
    records = load_records([tmp_path])
    assert len(records) == 4 and results_table(records) == table  # rebuilt from the JSON files
    results = eval_results(records)
    assert {r["metric_type"] for r in results} == {"accuracy"} and len(results) == 4
    from huggingface_hub import EvalResult

    EvalResult(**results[0])  # valid model-index fields


def test_script_is_the_cli_grid_in_a_subprocess(synthetic, tmp_path):
    data, folder = synthetic
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate_downstream.py"), "--models", str(folder),
                           "--data", str(data), "--tasks", "synthetic_avvp", "--directions", "a2v", "--toc", "off",
                           "--model-names", "H-DCID", "--epochs", "2", "--batch-size", "8", "--out",
                           str(tmp_path / "grid")], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "synthetic_avvp A→V (f1)" in proc.stdout
    assert (tmp_path / "grid" / "h-dcid_synthetic_avvp_a2v_heldout.json").is_file()
    assert (tmp_path / "grid" / "results.md").is_file()
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate_downstream.py"), "--models", str(folder),
                          "--data", str(tmp_path / "nowhere"), "--tasks", "synthetic_ave"],
                         capture_output=True, text=True, timeout=240)
    assert bad.returncode == 2 and bad.stderr.startswith("hf-hdcid evaluate: error: ")


def test_cli_evaluate_with_several_tasks_and_directions_runs_the_grid(synthetic, tmp_path, capsys):
    from hf_hdcid.cli import main

    data, folder = synthetic
    out = tmp_path / "grid"
    assert main(["evaluate", str(folder), "--task", "synthetic_ave", "--task", "synthetic_avvp", "--directions", "v2a",
                 "a2v", "--data", str(data), "--epochs", "1", "--batch-size", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    names = sorted(p.name for p in out.glob("*.json"))
    assert names == sorted(f"h-dcid_{t}_{d}_heldout.json" for t in ("synthetic_ave", "synthetic_avvp")
                           for d in ("v2a", "a2v"))
    for name in names:  # each record as one run writes it
        record = json.loads((out / name).read_text())
        assert record["toc"]["enabled"] is False and record["epochs"] == 1 and record["model"] == str(folder)
    single = tmp_path / "single"
    assert main(["evaluate", str(folder), "--task", "synthetic_avvp", "--direction", "a2v", "--data", str(data),
                 "--epochs", "1", "--batch-size", "8", "--out", str(single)]) == 0
    one = json.loads((single / "h-dcid_synthetic_avvp_a2v_heldout.json").read_text())
    grid = json.loads((out / "h-dcid_synthetic_avvp_a2v_heldout.json").read_text())
    drop = ("time_s",)
    assert {k: v for k, v in one.items() if k not in drop} == {k: v for k, v in grid.items() if k not in drop}
    table = (out / "results.md").read_text()
    assert table in printed and "| model | synthetic_ave V→A (accuracy) | synthetic_ave A→V (accuracy) |" in table
    assert "synthetic_avvp A→V (f1)" in table and f"wrote {out / 'results.md'}" in printed


def test_cli_evaluate_single_values_parse_in_any_order_as_before(synthetic, tmp_path, capsys):
    from hf_hdcid.cli import main

    data, folder = synthetic
    common = ["--data", str(data), "--epochs", "1", "--batch-size", "8"]
    assert main(["evaluate", "--toc", str(folder), "--task", "synthetic_ave", "--direction", "v2a", *common,
                 "--out", str(tmp_path / "a")]) == 0
    assert main(["evaluate", "--task", "synthetic_ave", "--direction", "v2a", str(folder), "--toc", *common,
                 "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("H-DCID synthetic_ave v2a (heldout protocol, TOC [6, 6] channels") == 2
    assert "average" not in printed  # one run each: no grid table
    for out in ("a", "b"):
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == ["h-dcid_toc_synthetic_ave_v2a_heldout.json"]


def test_toc_channels_is_a_deprecated_alias_of_toc_num_channels(synthetic, tmp_path, capsys):
    from hf_hdcid.cli import main

    data, folder = synthetic
    with pytest.warns(FutureWarning, match="use toc_num_channels"):
        old = evaluate_downstream(folder, "synthetic_ave", "v2a", data, toc_channels=3, epochs=1, batch_size=8)
    new = evaluate_downstream(folder, "synthetic_ave", "v2a", data, toc_num_channels=3, epochs=1, batch_size=8)
    assert old["toc"] == new["toc"] and new["toc"]["channels_per_layer"] == [3, 3]
    assert old["metrics"] == new["metrics"]
    with pytest.raises(ValueError, match="both given"):
        evaluate_downstream(folder, "synthetic_ave", "v2a", data, toc_channels=3, toc_num_channels=3)
    assert main(["evaluate", str(folder), "--task", "synthetic_ave", "--direction", "v2a", "--data", str(data),
                 "--toc-channels", "3", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "--toc-channels is deprecated" in captured.err and "use --toc-num-channels" in captured.err
    assert "TOC [3, 3] channels" in captured.out


def _single_modality_shards(path, modality, n, num_classes, split, seed):
    """Shards shaped like one side of the original UCF101 <-> VGGSound layout (convert.py's output)."""
    import copy

    from hf_hdcid.data.shards import write_shards

    cfg = copy.deepcopy(HDCIDConfig.tiny(modalities=["audio", "video"]))
    cfg.modalities = [modality]
    g = torch.Generator().manual_seed(seed)
    shape = (cfg.num_frames, cfg.audio_feature_dim) if modality == "audio" else \
        (cfg.num_frames, cfg.video_spatial_size, cfg.video_spatial_size, cfg.video_feature_dim)
    records = []
    for i in range(n):
        label = i % num_classes
        segments = torch.zeros(cfg.num_frames, num_classes + 1, dtype=torch.int8)
        segments[:, label] = 1
        records.append({"clip_id": f"{modality}{i}", "split": split, "label": label,
                        modality: torch.rand(shape, generator=g), f"{modality}_labels": segments})
    return write_shards(records, path, cfg, with_text_features=False, label_width=num_classes + 1,
                        num_classes=num_classes)


@pytest.mark.parametrize("task", ["ucf_vggsound", "ave_avvp"])
def test_two_dataset_tasks_train_on_one_folder_and_test_on_the_other(synthetic, tmp_path, task):
    _, folder = synthetic
    video = _single_modality_shards(tmp_path / "ucf_video", "video", 30, 4, "train", 0)
    audio = _single_modality_shards(tmp_path / "vgg_audio", "audio", 12, 4, "train", 1)
    held = evaluate_downstream(folder, task, "v2a", video, audio, protocol="heldout", epochs=2, batch_size=8)
    assert held["data"]["clips"] == {"train": 24, "val": 6, "test": 12}
    assert held["main_metric"] == ("accuracy" if task == "ucf_vggsound" else "f1")
    paper = evaluate_downstream(folder, task, "a2v", audio, video, protocol="paper", epochs=2, batch_size=8)
    assert paper["data"]["clips"] == {"train": 12, "val": None, "test": 30}
    assert paper["main_metric"] == ("accuracy" if task == "ucf_vggsound" else "f1")
    with pytest.raises(ValueError, match="the shards have no 'audio' features"):
        evaluate_downstream(folder, task, "v2a", video, video, epochs=1)


def test_cli_evaluate_and_evaluate_table(synthetic, tmp_path, capsys):
    from hf_hdcid.cli import main

    data, folder = synthetic
    out = tmp_path / "runs"
    assert main(["evaluate", str(folder), "--task", "synthetic_ave", "--direction", "va", "--data", str(data),
                 "--toc", "--layers", "1", "--seeds", "0", "1", "--epochs", "2", "--batch-size", "8",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # the original's "va" is recorded as v2a: one name per measurement (one file, one model-index entry)
    assert "H-DCID synthetic_ave v2a (heldout protocol, TOC [6] channels, layers [1]" in printed
    assert "accuracy:" in printed and "(seeds [0, 1])" in printed
    record = json.loads((out / "h-dcid_toc_layer1_synthetic_ave_v2a_heldout.json").read_text())
    assert record["layers"] == [1] and record["seeds"] == [0, 1] and record["toc"]["channels_per_layer"] == [6]
    assert main(["evaluate-table", str(out), "--out", str(tmp_path / "table")]) == 0
    assert "| H-DCID+TOC (layer 1) |" in (tmp_path / "table" / "results.md").read_text()
    assert main(["evaluate", str(folder), "--task", "synthetic_ave", "--direction", "v2a", "--data", str(data),
                 "--layers", "3"]) == 2
    assert capsys.readouterr().err.startswith("hf-hdcid evaluate: error: layers: expected layer numbers in 1..2")
    assert main(["evaluate-table", str(tmp_path / "empty_dir_that_is_missing")]) == 2
    with pytest.raises(ValueError, match="metric: expected one of"):
        metric_path("accuracy")
