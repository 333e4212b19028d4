"""CPC, CLUB and CMCM against small brute-force references written with explicit loops."""

import itertools
import math

import pytest
import torch

from hf_hdcid import HDCIDConfig
from hf_hdcid.modeling.objectives_hdcid import (
    CLUBEstimator,
    CrossModalCPC,
    club_full,
    club_sampled,
    code_probabilities,
    cross_modal_code_matching,
    gaussian_log_likelihood,
)

@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def brute_probabilities(z, e):
    b, t, _ = z.shape
    out = torch.zeros(b, e.shape[0])
    for i in range(b):
        for s in range(t):
            d = torch.tensor([math.sqrt(float(((z[i, s] - e[k]) ** 2).sum())) for k in range(e.shape[0])])
            out[i] += torch.exp(-d) / torch.exp(-d).sum() / t
    return out


def test_cmcm_equals_brute_force_of_the_original_formula():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(5, 3, generator=g)
    z = {m: torch.randn(4, 2, 3, generator=g) for m in ("audio", "video", "text")}
    p = {m: brute_probabilities(z[m], e) for m in z}
    torch.testing.assert_close(code_probabilities(z["audio"], e), p["audio"])
    expected = 0.0
    for x, y in [("audio", "video"), ("audio", "text"), ("video", "text")]:
        b = p[x].shape[0]
        s = torch.zeros(b, b)
        for i, j, k in itertools.product(range(b), range(b), range(5)):
            s[i, j] += p[x][i, k] * math.log(p[y][j, k] + 1e-10) + p[y][i, k] * math.log(p[x][j, k] + 1e-10)
        shifted = torch.exp(s + (-s).max())  # the original's global shift and epsilon
        expected += -sum(math.log(shifted[i, i] / (shifted[i].sum() + 1e-5)) for i in range(b)) / b
    value = cross_modal_code_matching(z, e)
    torch.testing.assert_close(value, torch.tensor(0.5 * expected), rtol=1e-4, atol=0)


def test_cmcm_is_finite_when_a_feature_sits_on_a_code():
    e = torch.randn(6, 4)
    z = e[torch.tensor([[0, 1], [2, 3]])].clone().requires_grad_(True)  # distances exactly 0 (or tiny negative)
    loss = cross_modal_code_matching({"audio": z, "video": z.flip(0)}, e)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_cmcm_gradient_flows_into_the_features():
    e = torch.randn(6, 4)
    z = {m: torch.randn(3, 2, 4, requires_grad=True) for m in ("audio", "video")}
    cross_modal_code_matching(z, e).backward()
    assert all(z[m].grad.abs().sum() > 0 for m in z)


@pytest.mark.parametrize("softmax_over", ["predictions", "targets"])
def test_cpc_equals_brute_force(softmax_over):
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny(cpc_softmax_over=softmax_over, cpc_prediction_steps=2)
    cpc = CrossModalCPC(cfg)
    b, t_len, d = 4, cfg.num_frames, cfg.hidden_size
    z = {m: torch.randn(b, t_len, d) for m in cfg.modalities}
    t = torch.tensor([2])
    nce, _ = cpc(z, t=t)
    # reference: the LSTM run on the prefix only, explicit score and softmax loops
    total = 0.0
    ctx = {m: cpc.context[m](z[m][:, : 2 + 1])[0][:, -1] for m in z}
    for n, m in itertools.product(cfg.modalities, repeat=2):
        w = 0.1 if n == m else 1.0
        for r in range(2):
            pred = cpc.predictors[m][r](ctx[m]).detach()  # [B, D]
            target = z[n][:, 2 + 1 + r]  # [B, D]
            s = [[float(target[i] @ pred[j]) for j in range(b)] for i in range(b)]
            for i in range(b):
                if softmax_over == "predictions":
                    denom = sum(math.exp(s[i][j]) for j in range(b))
                else:
                    denom = sum(math.exp(s[j][i]) for j in range(b))
                total += w * (s[i][i] - math.log(denom))
    torch.testing.assert_close(nce, torch.tensor(-total / (b * 2)), rtol=1e-10, atol=1e-10)


def test_cpc_all_context_steps_is_the_mean_over_every_valid_step():
    torch.manual_seed(1)
    cfg = HDCIDConfig.tiny(cpc_context_steps="all", cpc_prediction_steps=2)  # T=6, R=2: t in 1..3
    one = CrossModalCPC(HDCIDConfig.tiny(cpc_prediction_steps=2))
    cpc = CrossModalCPC(cfg)
    cpc.load_state_dict(one.state_dict())
    z = {m: torch.randn(4, cfg.num_frames, cfg.hidden_size) for m in cfg.modalities}
    nce, accuracy = cpc(z)
    per_step = [one(z, t=torch.tensor([t])) for t in (1, 2, 3)]
    torch.testing.assert_close(nce, torch.stack([p[0] for p in per_step]).mean())
    torch.testing.assert_close(accuracy, torch.stack([p[1] for p in per_step]).mean())
    with pytest.raises(ValueError, match="cpc_context_steps"):
        HDCIDConfig.tiny(cpc_context_steps="some")


def test_cpc_time_sampling_range():
    cfg = HDCIDConfig()  # T=10, R=1, min start 1 -> t in 1..8 as the original
    cpc = CrossModalCPC(HDCIDConfig.tiny(num_frames=10))
    draws = {int(cpc.sample_time(10, "cpu")) for _ in range(400)}
    assert draws == set(range(1, 9))
    assert cfg.cpc_min_start_steps == 1


def test_club_sampled_equals_brute_force():
    g = torch.Generator().manual_seed(3)
    b, t, dy = 4, 3, 2
    mu, logvar, y = (torch.randn(b, t, dy, generator=g) for _ in range(3))
    perm = torch.tensor([2, 0, 3, 1])
    expected = 0.0
    for i in range(b):
        for d in range(dy):
            var = math.exp(sum(float(logvar[i, s, d]) for s in range(t)) / t)
            pos = -sum(float(mu[i, s, d] - y[i, s, d]) ** 2 for s in range(t)) / t / var
            neg = -sum(float(mu[i, s, d] - y[perm[i], s, d]) ** 2 for s in range(t)) / t / var
            expected += (pos - neg) / 2 / b
    torch.testing.assert_close(club_sampled(mu, logvar, y, perm), torch.tensor(expected))


def test_club_full_equals_eq_12_brute_force():
    g = torch.Generator().manual_seed(4)
    b, t, dy = 3, 2, 2
    mu, logvar, y = (torch.randn(b, t, dy, generator=g) for _ in range(3))

    def log_q(i, j, s):  # log q(y_j,s | x_i,s) up to the shared constant
        return -0.5 * sum(float((mu[i, s, d] - y[j, s, d]) ** 2 / logvar[i, s, d].exp() + logvar[i, s, d])
                          for d in range(dy))

    expected = 0.0
    for i in range(b):
        pos = sum(log_q(i, i, s) for s in range(t)) / t
        neg = sum(log_q(i, j, s) for j in range(b) for s in range(t)) / (b * t)
        expected += (pos - neg) / b
    torch.testing.assert_close(club_full(mu, logvar, y), torch.tensor(expected))


def test_gaussian_log_likelihood_equals_brute_force():
    g = torch.Generator().manual_seed(5)
    mu, logvar, y = (torch.randn(2, 3, 4, generator=g) for _ in range(3))
    rows = [-0.5 * sum(float((mu[i, s, d] - y[i, s, d]) ** 2 / logvar[i, s, d].exp() + logvar[i, s, d])
                       for d in range(4)) for i in range(2) for s in range(3)]
    torch.testing.assert_close(gaussian_log_likelihood(mu, logvar, y), torch.tensor(sum(rows) / len(rows)))


def test_club_estimator_shapes_match_the_original():
    net = CLUBEstimator(256, 512, 256)
    assert sum(p.numel() for p in net.parameters()) == 263_936
    x, y = torch.randn(2, 10, 256), torch.randn(2, 10, 512)
    assert net.mi_upper_bound(x, y, "sampled").shape == () and net.log_likelihood(x, y).shape == ()
    lv = net.logvar(x)
    assert lv.abs().max() < 1  # tanh-squashed log-variance


def test_cpc_accuracy_counts_samples_whose_own_prediction_wins():
    from hf_hdcid.modeling.objectives_hdcid import cpc_accuracy

    targets = torch.eye(4)[:, None, :]  # [B=4, R=1, D=4], orthonormal
    assert cpc_accuracy(targets, targets).item() == 1.0
    shuffled = targets[torch.tensor([1, 0, 2, 3])]
    assert cpc_accuracy(targets, shuffled).item() == 0.5


def test_club_min_estimate_clamps_the_mi_term_and_keeps_the_raw_estimate():
    from hf_hdcid import HDCIDForPreTraining

    from conftest import make_batch

    cfg = HDCIDConfig.tiny(warm_start_epoch=0)
    torch.manual_seed(0)
    model = HDCIDForPreTraining(cfg).eval()
    batch = make_batch(cfg, batch_size=4)
    torch.manual_seed(1)
    clamped = model.compute_losses(batch, 0)
    raw_terms = {k: v for k, v in clamped.diagnostics.items() if k.startswith("mi_estimate/")}
    assert len(raw_terms) == 6  # 3 modalities x 2 layers
    for key, raw in raw_terms.items():
        assert torch.equal(clamped.losses[key.replace("mi_estimate/", "mi/")], raw.clamp_min(0.0))
    model.config.club_min_estimate = None
    torch.manual_seed(1)  # the same negative permutation
    unclamped = model.compute_losses(batch, 0)
    assert not any(k.startswith("mi_estimate/") for k in unclamped.diagnostics)
    for key, raw in raw_terms.items():
        assert torch.allclose(unclamped.losses[key.replace("mi_estimate/", "mi/")], raw)
    assert any(float(v) < 0 for v in raw_terms.values())  # the clamp did something here
    with pytest.raises(ValueError, match="HDCIDConfig.club_min_estimate: expected None or a finite number"):
        HDCIDConfig.tiny(club_min_estimate=float("-inf"))
    assert HDCIDConfig.original_hdcid().club_min_estimate is None and HDCIDConfig.hdcid().club_min_estimate == 0.0


def test_cmcm_temperature_divides_the_distances():
    z = torch.randn(3, 2, 4)
    e = torch.randn(5, 4)
    d = torch.cdist(z.reshape(-1, 4), e)  # [6, 5]
    expected = (-d / 0.25).softmax(-1).view(3, 2, 5).mean(1)
    torch.testing.assert_close(code_probabilities(z, e, 0.25), expected)
    torch.testing.assert_close(code_probabilities(z, e), (-d).softmax(-1).view(3, 2, 5).mean(1))
    with pytest.raises(ValueError, match="cmcm_temperature"):
        HDCIDConfig.tiny(cmcm_temperature=0.0)
