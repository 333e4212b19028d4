"""Diagnostics of a pretrained model on a synthetic world (issue 14): how much class information the
layer-k semantic features and codes of each modality carry within and across modalities (linear
probes on mean-pooled features, :func:`robustness.linear_probe_accuracy`), code usage and sharing,
and the spread of the semantic features (norm of their std over positions).

Usage: ``python benchmarks/robustness_diagnostics.py MODEL_DIR SHARD_DIR`` (``MODEL_DIR`` may be
``untrained``: a seed-0 untrained DCID), e.g. on the folders ``benchmarks/robustness.py`` writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from robustness import linear_probe_accuracy  # noqa: E402


def main(model_dir: str, data: str) -> None:
    from transformers import AutoModel

    from hf_hdcid import HDCIDConfig, HDCIDModel
    from hf_hdcid.data.shards import load_shards

    data = Path(data)
    if model_dir == "untrained":
        shard_config = HDCIDConfig.from_dict(json.loads((data / "synthetic.json").read_text())["config"])
        torch.manual_seed(0)
        encoder = HDCIDModel(HDCIDConfig.tiny(text_feature_dim=shard_config.text_feature_dim, num_layers=1)).eval()
    else:
        encoder = AutoModel.from_pretrained(model_dir).eval()
    sets, labels = {}, {}
    for split in ("train", "test"):
        ds, collate = load_shards(data, encoder.config, split=split)
        batch = collate(ds[:])
        with torch.no_grad():
            sets[split] = {m: encoder.encode(m, batch[m]) for m in ("audio", "video")}
        labels[split] = batch["label"].long()
    size = encoder.config.codebook_size
    for k in range(encoder.config.num_layers):
        pooled = {}  # (split, modality, kind) -> [N, D] semantic mean / [N, L] code histogram
        for split, encoded in sets.items():
            for m, e in encoded.items():
                pooled[(split, m, "z")] = e.semantic[k].mean(1)
                pooled[(split, m, "codes")] = torch.nn.functional.one_hot(e.indices[k], size).float().mean(1)
        for kind in ("z", "codes"):
            for src, other in (("audio", "video"), ("video", "audio")):
                within, cross = linear_probe_accuracy(
                    pooled[("train", src, kind)], labels["train"],
                    [(pooled[("test", src, kind)], labels["test"]), (pooled[("test", other, kind)], labels["test"])])
                print(f"layer {k + 1} {kind:5s} train {src}: within {100 * within:.1f}  cross->{other} {100 * cross:.1f}")
        ia, iv = (sets["test"][m].indices[k].flatten() for m in ("audio", "video"))
        ca, cv = torch.bincount(ia, minlength=size), torch.bincount(iv, minlength=size)
        print(f"layer {k + 1}: codes used audio {int((ca > 0).sum())} video {int((cv > 0).sum())} shared "
              f"{int(((ca > 0) & (cv > 0)).sum())}; agreement {float((ia == iv).float().mean()):.3f}")
        print("  audio usage", ca.tolist())
        print("  video usage", cv.tolist())
        za, zv = (sets["test"][m].semantic[k] for m in ("audio", "video"))
        print(f"  |mean z_a - mean z_v| {float((za.mean((0, 1)) - zv.mean((0, 1))).norm()):.3f}  spread a "
              f"{float(za.std((0, 1)).norm()):.3f} v {float(zv.std((0, 1)).norm()):.3f}  mean norm a "
              f"{float(za.norm(dim=-1).mean()):.2f} v {float(zv.norm(dim=-1).mean()):.2f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2])
