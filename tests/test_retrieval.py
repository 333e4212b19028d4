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
    assert a2t["gallery_modality"] == "text" and a2t["toc"] == {"enabled": True, "channels_per_layer": [4]}
    for record in (a2v, v2a, a2t):
        assert record["data"]["clips"] == 24
        m = record["metrics"]
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
    assert a2v["metrics"] == pytest.approx(retrieval_scores(sim.double().numpy(), labels, labels))
    assert v2a["metrics"] == pytest.approx(retrieval_scores(sim.T.double().numpy(), labels, labels))
    assert (tmp_path / "h-dcid_all_retrieval_a2v.json").is_file()
    with pytest.raises(ValueError, match="direction: expected one of"):
        evaluate_retrieval(folder, "x2y", data)
    assert set(RETRIEVAL_DIRECTIONS) == {"a2v", "v2a", "a2t", "t2a", "v2t", "t2v"}
