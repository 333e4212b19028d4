"""Diagnostics of a pretrained model on a synthetic world (issue 14): how much class information the
layer-k semantic features and codes of each modality carry within and across modalities (linear
probes on mean-pooled features, epoch chosen on held-out train clips), code usage and sharing, and
the spread of the semantic features.

Usage: ``python benchmarks/robustness_diagnostics.py MODEL_DIR SHARD_DIR`` (``MODEL_DIR`` may be
``untrained``), e.g. on the folders ``benchmarks/robustness.py`` writes.
"""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModel
from hf_hdcid import HDCIDConfig
from hf_hdcid.data.shards import load_shards

def probe(xtr, ytr, xte_list, epochs=300, seed=0):
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(xtr), generator=g); nv = len(xtr)//5
    val, fit = perm[:nv], perm[nv:]
    n = int(ytr.max())+1
    torch.manual_seed(seed)
    lin = torch.nn.Linear(xtr.shape[1], n); opt = torch.optim.Adam(lin.parameters(), 1e-2)
    best, out = -1, None
    for _ in range(epochs):
        opt.zero_grad(); torch.nn.functional.cross_entropy(lin((xtr[fit]-mean)/std), ytr[fit]).backward(); opt.step()
        with torch.no_grad():
            v = float((lin((xtr[val]-mean)/std).argmax(-1)==ytr[val]).float().mean())
            if v > best:
                best = v; out = [float((lin((x-mean)/std).argmax(-1)==y).float().mean()) for x, y in xte_list]
    return out

def main(model_dir, data):
    data = Path(data)
    enc = AutoModel.from_pretrained(model_dir).eval() if model_dir != "untrained" else None
    cfg = HDCIDConfig.from_dict(json.loads((data/"synthetic.json").read_text())["config"])
    if enc is None:
        from hf_hdcid import HDCIDModel
        torch.manual_seed(0); enc = HDCIDModel(HDCIDConfig.tiny(text_feature_dim=cfg.text_feature_dim, num_layers=1)).eval()
    sets = {}
    for split in ("train", "test"):
        ds, col = load_shards(data, enc.config, split=split)
        b = col(ds[:])
        with torch.no_grad():
            sets[split] = {m: enc.encode(m, b[m]) for m in ("audio", "video")}
        sets[split]["label"] = b["label"].long()
    L = enc.config.codebook_size
    for k in range(enc.config.num_layers):
        feats = {}
        for split in ("train", "test"):
            for m in ("audio", "video"):
                e = sets[split][m]
                z = e.semantic[k].mean(1)
                h = torch.nn.functional.one_hot(e.indices[k], L).float().mean(1)
                feats[(split, m, "z")] = z; feats[(split, m, "codes")] = h
        for kind in ("z", "codes"):
            ytr, yte = sets["train"]["label"], sets["test"]["label"]
            for src in ("audio", "video"):
                other = "video" if src == "audio" else "audio"
                acc = probe(feats[("train", src, kind)], ytr, [(feats[("test", src, kind)], yte), (feats[("test", other, kind)], yte)])
                print(f"layer {k+1} {kind:5s} train {src}: within {100*acc[0]:.1f}  cross->{other} {100*acc[1]:.1f}")
        ia, iv = sets["test"]["audio"].indices[k].flatten(), sets["test"]["video"].indices[k].flatten()
        ca, cv = torch.bincount(ia, minlength=L), torch.bincount(iv, minlength=L)
        shared = ((ca > 0) & (cv > 0)).sum().item()
        print(f"layer {k+1}: codes used audio {(ca>0).sum().item()} video {(cv>0).sum().item()} shared {shared}; agreement {(ia==iv).float().mean():.3f}")
        print("  audio usage", ca.tolist()); print("  video usage", cv.tolist())
        za, zv = sets["test"]["audio"].semantic[k], sets["test"]["video"].semantic[k]
        print(f"  |mean z_a - mean z_v| {(za.mean((0,1))-zv.mean((0,1))).norm():.3f}  spread a {za.std((0,1)).norm():.3f} v {zv.std((0,1)).norm():.3f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2])
