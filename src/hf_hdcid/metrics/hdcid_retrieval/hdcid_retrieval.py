"""Cross-modal retrieval: each query clip ranks the gallery (clips of the other modality) by
similarity; gallery clips of the query's class are relevant.

Rank ties are broken by gallery order (a stable sort of the negated similarities), so the result is
deterministic; give distinct similarities when ties matter.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = ("Retrieval: Recall@1/5/10 (a relevant clip among the first k), median rank of the first "
                "relevant clip, and mAP (mean over queries of the average precision over all relevant clips).")
_KWARGS = """
Args:
    predictions (list of list of float): per query, its similarity to every gallery clip [num_gallery].
    references (list of int): the class of each query.
    gallery_labels (list of int): the class of each gallery clip.
Returns:
    recall@1, recall@5, recall@10 (float): fraction of queries with a relevant clip among the first k.
    median_rank (float): median over queries of the 1-based rank of the first relevant clip.
    mAP (float): mean average precision, relevance = same class.
Example:
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 0], gallery_labels=[0, 1])
    {'recall@1': 0.5, 'recall@5': 1.0, 'recall@10': 1.0, 'median_rank': 1.5, 'mAP': 0.75}
"""
_CITATION = """@article{huang2024unlocking,
  title = {Unlocking the Potential of Multimodal Unified Discrete Representation through Training-Free Codebook Optimization and Hierarchical Alignment},
  author = {Huang, Hai and Xia, Yan and Ji, Shengpeng and Wang, Shulei and Wang, Hanting and Zhu, Jieming and Dong, Zhenhua and Zhao, Zhou},
  journal = {arXiv preprint arXiv:2403.05168}, year = {2024}}"""

RECALL_AT = (1, 5, 10)


def retrieval_scores(similarities, query_labels, gallery_labels) -> dict:
    """Recall@k, median rank and mAP of ``similarities`` [Q, G] (module docstring); ValueError for bad
    shapes, non-finite similarities, or a query whose class has no gallery clip."""
    sim = np.asarray(similarities, dtype=np.float64)
    queries, gallery = np.asarray(query_labels).reshape(-1), np.asarray(gallery_labels).reshape(-1)
    if sim.ndim != 2 or sim.shape != (queries.size, gallery.size):
        raise ValueError(f"predictions: expected similarities [{queries.size} queries, {gallery.size} gallery clips], "
                         f"got shape {list(sim.shape)}")
    if queries.size == 0 or gallery.size == 0:
        raise ValueError("predictions: expected at least one query and one gallery clip, got none")
    if not np.isfinite(sim).all():
        raise ValueError("predictions: expected finite similarities, got NaN or inf")
    order = np.argsort(-sim, axis=1, kind="stable")  # [Q, G] gallery indices, best first
    relevant = gallery[order] == queries[:, None]  # [Q, G] in rank order
    has = relevant.any(axis=1)
    if not has.all():
        missing = sorted(set(queries[~has].tolist()))
        raise ValueError(f"references: {int((~has).sum())} queries have no gallery clip of their class "
                         f"(classes {missing[:5]}): retrieval needs one")
    first = relevant.argmax(axis=1) + 1  # [Q] 1-based rank of the first relevant clip
    hits = np.cumsum(relevant, axis=1)  # [Q, G] relevant clips up to each rank
    ranks = np.arange(1, gallery.size + 1)
    precision_at_hits = np.where(relevant, hits / ranks, 0.0)
    average_precision = precision_at_hits.sum(axis=1) / relevant.sum(axis=1)
    out = {f"recall@{k}": float((first <= k).mean()) for k in RECALL_AT}
    out["median_rank"] = float(np.median(first))
    out["mAP"] = float(average_precision.mean())
    return out


class HdcidRetrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, gallery_labels=None):
        if gallery_labels is None:
            raise ValueError("gallery_labels: expected the class of every gallery clip, got None")
        return retrieval_scores(predictions, references, gallery_labels)
