"""TOC (eqs. 9-11): closed forms vs brute force, selection order, the model method, the CLI."""

import json
import os
import subprocess
import sys

import pytest
import torch

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining, HDCIDModel
from hf_hdcid.toc import inter_code_similarity, inter_code_variance, select_channels, toc_scores

from conftest import make_batch


def brute_similarity(e, unbiased):
    n, d = e.shape
    s = torch.zeros(d, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if i != j:
                s += e[i].double() * e[j].double()
    return s / (n * (n - 1) if unbiased else n * n)


def brute_variance(e, unbiased):
    n = e.shape[0]
    mean = sum(e[i].double() for i in range(n)) / n
    return sum((e[i].double() - mean) ** 2 for i in range(n)) / (n - 1 if unbiased else n)


@pytest.mark.parametrize("shape", [(2, 3), (7, 5), (40, 16)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("unbiased", [False, True])
def test_closed_forms_equal_brute_force(shape, dtype, unbiased):
    e = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape))).to(dtype)
    torch.testing.assert_close(inter_code_similarity(e, unbiased=unbiased), brute_similarity(e, unbiased))
    torch.testing.assert_close(inter_code_variance(e, unbiased=unbiased), brute_variance(e, unbiased))
    lam = 0.7
    expected = lam * brute_similarity(e, unbiased) - (1 - lam) * brute_variance(e, unbiased)
    torch.testing.assert_close(toc_scores(e, lam, unbiased=unbiased), expected)


def test_normalize_uses_unit_norm_codes():
    e = torch.randn(9, 4, dtype=torch.float64)
    unit = e / e.norm(dim=1, keepdim=True)
    torch.testing.assert_close(inter_code_similarity(e, normalize=True), brute_similarity(unit, False))


def test_ranking_is_the_same_for_paper_and_original_normalisation():
    e = torch.randn(50, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(select_channels(e, 10, unbiased_variance=True), select_channels(e, 10, unbiased_variance=False))


def test_all_channels_is_a_permutation_and_order_of_codes_does_not_matter():
    e = torch.randn(30, 12, generator=torch.Generator().manual_seed(1))
    full = select_channels(e, 12)
    assert sorted(full.tolist()) == list(range(12)) and full.dtype == torch.long
    shuffled = e[torch.randperm(30, generator=torch.Generator().manual_seed(2))]
    assert torch.equal(select_channels(shuffled, 7, top_bottom=(3, 1)), select_channels(e, 7, top_bottom=(3, 1)))


def test_hand_built_codebook_gives_the_expected_channels():
    # By hand (paper normalisation, lam 0.7): ch0 all codes equal: S = 12/16, V = 0 -> J = 0.525;
    # ch1 spread +-3, +-2 around 0: S = -26/16, V = 6.5 -> J = -3.0875 (best);
    # ch2 spread +-0.1, +-0.2: S = -0.1/16, V = 0.025 -> J = -0.011875;
    # ch3 shared offset 2 with a small spread: S = 47.5/16, V = 0.125 -> J = 2.040625 (worst).
    e = torch.tensor([[1.0, 3.0, 0.1, 2.0],
                      [1.0, -3.0, -0.1, 2.5],
                      [1.0, 2.0, 0.2, 1.5],
                      [1.0, -2.0, -0.2, 2.0]])
    torch.testing.assert_close(toc_scores(e, 0.7), torch.tensor([0.525, -3.0875, -0.011875, 2.040625],
                                                                 dtype=torch.float64))
    assert select_channels(e, 2).tolist() == [1, 2]
    # original launcher style (a, b) = (1, 1): best half best-first, then worst half worst-first
    assert select_channels(e, 2, top_bottom=(1, 1)).tolist() == [1, 3]
    assert select_channels(e, 4, top_bottom=(1, 1)).tolist() == [1, 2, 3, 0]
    # lam = 0: variance only (ch1 largest); lam = 1: similarity only (ch3 the most similar)
    assert select_channels(e, 1, lam=0.0).tolist() == [1]
    assert select_channels(e, 4, lam=1.0).tolist() == [1, 2, 0, 3]


def test_original_split_sizes_are_reproduced():
    e = torch.randn(400, 256, generator=torch.Generator().manual_seed(3))
    for q, a, b in [(128, 3, 1), (224, 1, 1), (196, 1, 1), (224, 3, 1), (128, 1, 0)]:
        idx = select_channels(e, q, top_bottom=(a, b))
        u = q // (a + b)
        scores = -toc_scores(e, 0.7, unbiased=True)  # the original's "score": larger is better
        top = torch.topk(scores, u * a).indices
        expected = torch.cat([top, torch.topk(scores, u * b, largest=False).indices]) if b else top
        assert idx.tolist() == expected.tolist()


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(num_channels=0), r"num_channels: expected an int in \[1, 8\], got 0"),
    (dict(num_channels=9), r"num_channels.*got 9"),
    (dict(num_channels=4, lam=1.5), r"lam: expected a number in \[0, 1\], got 1.5"),
    (dict(num_channels=4, top_bottom=(0, 0)), "top_bottom"),
])
def test_bad_requests_raise(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        select_channels(torch.randn(5, 8), **kwargs)


def test_bad_codebooks_raise():
    with pytest.raises(ValueError, match=r"codebook: expected a floating-point tensor of shape \[L, D\], got \[5\]"):
        select_channels(torch.randn(5), 1)
    with pytest.raises(ValueError, match="at least 2 codes"):
        inter_code_similarity(torch.randn(1, 4))


def test_model_compute_toc_stores_channels_and_survives_save_load(tmp_path):
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny()
    model = HDCIDForPreTraining(cfg)
    channels = model.compute_toc(num_channels=5, lam=0.6, top_bottom=(3, 2))
    assert len(channels) == 2 and all(len(c) == 5 for c in channels)
    assert channels[1] == select_channels(model.hdcid.layers[1].codebook.embed, 5, lam=0.6, top_bottom=(3, 2)).tolist()
    assert model.config.toc_settings == {"num_channels": 5, "lam": 0.6, "normalize": False, "top_bottom": [3, 2],
                                         "unbiased_variance": True}
    model.save_pretrained(tmp_path)
    base = HDCIDModel.from_pretrained(tmp_path).eval()
    assert base.config.toc_channels == channels
    out = base.encode("audio", make_batch(cfg)["audio"], apply_toc=True)
    assert out.unified.shape[-1] == 10
    torch.testing.assert_close(out.unified[..., 5:], out.quantized[1][..., channels[1]])
    with pytest.raises(ValueError, match="num_channels"):
        base.compute_toc(num_channels=17)
    assert base.config.toc_channels == channels  # a refused request changes nothing
    base.config.toc_channels = [[0, 0], [1]]  # edited by hand: caught at use
    with pytest.raises(ValueError, match=r"toc_channels\[0\]"):
        base.encode("audio", make_batch(cfg)["audio"], apply_toc=True)


def test_toc_cli_writes_model_png_and_json(tmp_path):
    torch.manual_seed(0)
    model = HDCIDForPreTraining(HDCIDConfig.tiny())
    model.save_pretrained(tmp_path / "m")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "hf_hdcid.cli", "toc", str(tmp_path / "m"), "--channels", "6"],
                          capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "m-toc6"
    assert "layer 1: 6 channels, mean |cos| off-diagonal" in proc.stdout
    png = (out / "toc_cosine.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (900, 840)  # figsize (9, 4.2 * layers) at 100 dpi
    summary = json.loads((out / "toc_summary.json").read_text())
    assert [row["num_channels"] for row in summary["layers"]] == [6, 6]
    reloaded = HDCIDForPreTraining.from_pretrained(out)
    assert reloaded.config.toc_channels == summary["channels"]
    expected = [select_channels(b, 6).tolist() for b in model.hdcid.codebooks()]
    assert summary["channels"] == expected
    assert json.loads((tmp_path / "m" / "config.json").read_text())["toc_channels"] is None  # input untouched


def test_save_figure_creates_folders_and_closes_the_figure(tmp_path):
    from hf_hdcid.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "a" / "b" / "fig.png", dpi=50)
    assert path == tmp_path / "a" / "b" / "fig.png" and path.read_bytes().startswith(b"\x89PNG")
    assert not plt.fignum_exists(fig.number)
