"""Cross-modal retrieval (issue 18, retrieval part): the metric against hand-computed ranks, the
pooled-code similarity against a brute-force loop, and a run on the synthetic benchmark."""

import evaluate
import numpy as np
import pytest
import torch

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.downstream.retrieval import RETRIEVAL_DIRECTIONS, evaluate_retrieval, pooled_features, similarity_matrix
from hf_hdcid.metrics import metric_path
from hf_hdcid.metrics.hdcid_retrieval.hdcid_retrieval import retrieval_scores

from conftest import minilm_synthetic_shards


def test_retrieval_scores_by_hand():
    # 3 queries, 4 gallery clips; classes: queries [0, 1, 0], gallery [0, 1, 0, 1]
    sim = [[0.1, 0.9, 0.8, 0.0],   # ranks: g1(1) g2(0) g0(0) g3(1): first relevant at 2; AP = (1/2 + 2/3) / 2
           [0.5, 0.4, 0.3, 0.2],   # ranks: g0(0) g1(1) g2(0) g3(1): first at 2; AP = (1/2 + 2/4) / 2
           [0.9, 0.1, 0.2, 0.3]]   # ranks: g0(0) g3(1) g2(0) g1(1): first at 1; AP = (1 + 2/3) / 2
    got = retrieval_scores(sim, [0, 1, 0], [0, 1, 0, 1])
    ap = [(1 / 2 + 2 / 3) / 2, (1 / 2 + 2 / 4) / 2, (1 + 2 / 3) / 2]
    assert got == pytest.approx({"recall@1": 1 / 3, "recall@5": 1.0, "recall@10": 1.0, "median_rank": 2.0,
                                 "mAP": float(np.mean(ap))})
    module = evaluate.load(metric_path("hdcid_retrieval"))  # the shipped evaluate module gives the same
    assert module.compute(predictions=sim, references=[0, 1, 0], gallery_labels=[0, 1, 0, 1]) == pytest.approx(got)


def test_retrieval_ranks_ties_by_gallery_order_and_refuses_bad_input():
    assert retrieval_scores([[0.5, 0.5]], [1], [0, 1])["median_rank"] == 2.0  # tie: gallery order
    with pytest.raises(ValueError, match=r"expected similarities \[1 queries, 2 gallery clips\], got shape \[1, 3\]"):
        retrieval_scores([[0.1, 0.2, 0.3]], [0], [0, 1])
    with pytest.raises(ValueError, match="1 queries have no gallery clip of their class"):
        retrieval_scores([[0.1, 0.2]], [2], [0, 1])
    with pytest.raises(ValueError, match="finite"):
        retrieval_scores([[float("nan"), 0.2]], [0], [0, 1])


def test_pooled_similarity_equals_a_brute_force_loop():
    torch.manual_seed(0)
    a, b = torch.randn(5, 4, 3), torch.randn(6, 4, 3)
    sim = similarity_matrix(pooled_features(a), pooled_features(b))
    for i in range(5):
        for j in range(6):
            x, y = a[i].mean(0), b[j].mean(0)
            assert float(sim[i, j]) == pytest.approx(float(x @ y / (x.norm() * y.norm())), abs=1e-6)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    data = minilm_synthetic_shards(root / "shards", {"test": 24})
    config = HDCIDConfig.tiny(text_feature_dim=384)
    torch.manual_seed(0)
    folder = root / "model"
    HDCIDForPreTraining(config).save_pretrained(folder)
    return folder, data


def test_retrieval_runs_on_the_synthetic_benchmark_and_switches_the_query_modality(world, tmp_path):
    folder, data = world
    a2v = evaluate_retrieval(folder, "a2v", data, split="test", out_dir=tmp_path)
    v2a = evaluate_retrieval(folder, "v2a", data, split="test")
    a2t = evaluate_retrieval(folder, "a2t", data, split="test", toc_num_channels=4, layers="1")
    assert (a2v["query_modality"], a2v["gallery_modality"]) == ("audio", "video")
    assert (v2a["query_modality"], v2a["gallery_modality"]) == ("video", "audio")
    assert a2t["gallery_modality"] == "text" and a2t["toc"]["enabled"] and a2t["toc"]["channels_per_layer"] == [4]
    for record in (a2v, v2a, a2t):
        assert record["data"]["clips"] == {"test": 24} and record["data"]["split"] == "test"
        assert record["protocol"] == "zero-shot" and record["main_metric"] == "mAP"
        assert record["score"] == {"mean": record["metrics"]["mAP"]["mean"], "std": 0.0,
                                   "values": [record["metrics"]["mAP"]["mean"]]}
        m = {k: v["mean"] for k, v in record["metrics"].items()}
        assert 0 <= m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1 and 1 <= m["median_rank"] <= 24
        assert 0 < m["mAP"] <= 1
    # V->A ranks audio clips for video queries: the scores of A->V's similarity matrix transposed
    from hf_hdcid.data.shards import load_shards
    from hf_hdcid.downstream.codes import extract_codes
    from hf_hdcid.downstream.runner import load_encoder

    encoder = load_encoder(folder)
    ds, collate = load_shards(data, split="test")
    codes = {m: extract_codes(encoder, ds, collate, m, [0, 1], [None, None], "clip") for m in ("audio", "video")}
    sim = similarity_matrix(pooled_features(codes["audio"].codes), pooled_features(codes["video"].codes))
    labels = codes["audio"].labels.tolist()
    means = {d: {k: v["mean"] for k, v in r["metrics"].items()} for d, r in (("a2v", a2v), ("v2a", v2a))}
    assert means["a2v"] == pytest.approx(retrieval_scores(sim.double().numpy(), labels, labels))
    assert means["v2a"] == pytest.approx(retrieval_scores(sim.T.double().numpy(), labels, labels))
    assert (tmp_path / "h-dcid_retrieval_a2v_zero-shot.json").is_file()
    with pytest.raises(ValueError, match="direction: expected one of"):
        evaluate_retrieval(folder, "x2y", data)
    assert set(RETRIEVAL_DIRECTIONS) == {"a2v", "v2a", "a2t", "t2a", "v2t", "t2v"}


# ============================================================================================ the task
def test_directions_are_per_task_checked_before_any_work(world, tmp_path, capsys):
    from hf_hdcid.cli import main
    from hf_hdcid.downstream import evaluate_downstream
    from hf_hdcid.downstream.tasks import default_directions, plan_runs

    folder, data = world
    assert default_directions("ave") == ("v2a", "a2v") and default_directions("retrieval") == ("a2v", "v2a")
    # no direction given: each task's defaults; given ones: intersected with each task's ("va" = "v2a")
    assert plan_runs(["synthetic_ave", "retrieval"]) == [("synthetic_ave", "v2a"), ("synthetic_ave", "a2v"),
                                                         ("retrieval", "a2v"), ("retrieval", "v2a")]
    assert plan_runs(["synthetic_ave", "retrieval"], ["a2t", "va"]) == [("synthetic_ave", "v2a"), ("retrieval", "a2t"),
                                                                        ("retrieval", "v2a")]
    with pytest.raises(ValueError, match=r"direction: \['t2v'\] fit none of the tasks \['ave'\]"):
        plan_runs(["ave"], ["v2a", "t2v"])
    out = tmp_path / "never"
    common = ["--data", str(tmp_path / "no_data"), "--out", str(out)]  # nothing is read before the check
    assert main(["evaluate", str(folder), "--task", "ave", "--direction", "a2t", *common]) == 2
    err = capsys.readouterr().err
    assert err == "hf-hdcid evaluate: error: direction: task 'ave' has the directions ['v2a', 'a2v'], got ['a2t']\n"
    assert main(["evaluate", str(folder), "--task", "retrieval", "--test-data", str(data), *common]) == 2
    assert "test_data: tasks ['retrieval'] read only data" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match="task: 'retrieval' .* trains no probe"):
        evaluate_downstream(folder, "retrieval", "a2v", data)


def test_a_grid_runs_the_valid_pairs_and_reports_retrieval_with_all_its_metrics(world, tmp_path):
    from huggingface_hub import EvalResult
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

    from hf_hdcid.downstream.grid import run_grid
    from hf_hdcid.downstream.report import eval_results

    folder, data = world
    grid = run_grid([folder], ["synthetic_ave", "retrieval"], data, directions=["a2v", "a2t"], toc="off", epochs=1,
                    batch_size=8, out_dir=tmp_path, progress=False)
    records = grid["records"]
    assert [(r["task"], r["direction"]) for r in records] == [("synthetic_ave", "a2v"), ("retrieval", "a2v"),
                                                              ("retrieval", "a2t")]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "h-dcid_retrieval_a2t_zero-shot.json", "h-dcid_retrieval_a2v_zero-shot.json",
        "h-dcid_synthetic_ave_a2v_heldout.json"]
    a2v = records[1]
    direct = evaluate_retrieval(folder, "a2v", data)  # the grid's record is the single run's
    assert a2v["metrics"] == direct["metrics"] and a2v["data"] == direct["data"]
    m = {k: v["mean"] for k, v in a2v["metrics"].items()}
    table = grid["table"]
    assert "| model | synthetic_ave A→V (accuracy) | average |" in table  # the probe table, retrieval left out
    assert "| model | task | direction | R@1 | R@5 | R@10 | median rank | mAP |" in table
    assert (f"| H-DCID | retrieval | A→V | {100 * m['recall@1']:.1f} | {100 * m['recall@5']:.1f} | "
            f"{100 * m['recall@10']:.1f} | {m['median_rank']:.1f} | {100 * m['mAP']:.1f} |") in table
    assert "| H-DCID | retrieval | A→T |" in table
    entries = [e for e in eval_results(records) if e["dataset_config"].startswith("retrieval")]
    assert len(entries) == 10 and entries[0]["metric_type"] == "mAP"  # 5 metrics per run, the main one first
    assert {e["task_name"] for e in entries} == {"Cross-modal retrieval A→V, all channels",
                                                 "Cross-modal retrieval A→T, all channels"}
    assert {e["dataset_config"] for e in entries} == {"retrieval-a2v-all", "retrieval-a2t-all"}
    assert {e["dataset_split"] for e in entries} == {"test"}  # the split read
    assert {e["metric_name"] for e in entries} == {"Recall@1", "Recall@5", "Recall@10", "median rank", "mAP"}
    parsed = [EvalResult(**e) for e in entries]
    assert model_index_to_eval_results(eval_results_to_model_index("m", parsed))[1] == parsed


def test_cli_retrieval_to_card_matches_the_python_api(world, tmp_path):
    import json
    import os
    import shutil
    import subprocess
    import sys

    import yaml
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    folder, data = world
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "hf_hdcid.cli", "evaluate", str(model), "--task", "retrieval",
                           "--directions", "a2v", "v2a", "--toc", "both", "--toc-num-channels", "4", "--data", str(data),
                           "--out", str(out), "--to-card", str(model)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| H-DCID+TOC | retrieval | V→A |" in proc.stdout and "added 4 result(s)" in proc.stdout
    card = ModelCard.load(model / "README.md")
    parsed = model_index_to_eval_results(yaml.safe_load(card.content.split("---")[1])["model-index"])[1]
    assert len(parsed) == 20  # 2 directions x TOC off / on x 5 metrics
    values = {(e.task_name, e.metric_type): e.metric_value for e in parsed}
    for direction, arrow in (("a2v", "A→V"), ("v2a", "V→A")):
        for toc in (False, True):
            record = json.loads((out / f"h-dcid{'_toc' if toc else ''}_retrieval_{direction}_zero-shot.json").read_text())
            api = evaluate_retrieval(folder, direction, data, toc_num_channels=4 if toc else None)
            assert {k: v["mean"] for k, v in record["metrics"].items()} == pytest.approx(
                {k: v["mean"] for k, v in api["metrics"].items()}, rel=1e-12)
            assert record["toc"]["channels_per_layer"] == ([4, 4] if toc else [16, 16])
            name = f"Cross-modal retrieval {arrow}, {'TOC 4 channels' if toc else 'all channels'}"
            for metric, stats in record["metrics"].items():
                assert values[(name, metric)] == round(stats["mean"], 4)
    assert "Cross-modal retrieval A→V, TOC 4 channels" in card.text  # the card's results table
