"""Pretraining objectives of H-DCID: cross-modal CPC (eq. 13), CLUB (eq. 12), CMCM.

Each equation is one function; the modules only hold the learnable parts.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .codebook_hdcid import full_precision, squared_distances
from .recurrent_hdcid import AutocastLSTM


# ---------------------------------------------------------------------------------------------
# Cross-modal contrastive predictive coding (paper eq. 2 / eq. 13)
# ---------------------------------------------------------------------------------------------
def cpc_info_nce(targets: torch.Tensor, predictions: torch.Tensor, softmax_over: str) -> torch.Tensor:
    """Sum over samples i and steps r of log p(i | i) for scores S_r[i, j] = z^n_{t+r, i} . p^m_{r, j}
    (eq. 13, before the -1/(B R) factor).

    targets [B, R, D] (future semantic features of modality n), predictions [B, R, D] (W_r c_t of
    modality m). ``softmax_over="targets"`` normalises each prediction's scores over the candidate
    targets (the paper: negatives are other samples' targets); ``"predictions"`` normalises each
    target's scores over the predictions (what the original code's dimensionless LogSoftmax does).
    """
    scores = torch.einsum("ird,jrd->rij", targets, predictions)  # [R, B(target), B(prediction)]
    dim = 2 if softmax_over == "predictions" else 1
    return scores.log_softmax(dim=dim).diagonal(dim1=1, dim2=2).sum()


def cpc_accuracy(targets: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose own prediction scores highest against their target (diagnostic)."""
    scores = torch.einsum("ird,jrd->rij", targets, predictions)  # [R, B, B]
    labels = torch.arange(scores.shape[-1], device=scores.device)
    return (scores.argmax(-1) == labels).float().mean()


class CrossModalCPC(nn.Module):
    """Cross-modal CPC of one layer: per modality a causal LSTM context and R linear predictors."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        d, steps = config.hidden_size, config.cpc_prediction_steps
        self.context = nn.ModuleDict({
            m: AutocastLSTM(d, d, config.cpc_num_layers, batch_first=True) for m in config.modalities
        })
        self.predictors = nn.ModuleDict({
            m: nn.ModuleList(nn.Linear(d, d) for _ in range(steps)) for m in config.modalities
        })

    def sample_time(self, num_frames: int, device) -> torch.Tensor:
        """One context step t ~ U{min_start, ..., T - R - 1} for the whole batch -> [1] long."""
        cfg = self.config
        high = num_frames - cfg.cpc_prediction_steps
        return torch.randint(cfg.cpc_min_start_steps, high, (1,), device=device)

    def forward(self, semantic: dict, t: torch.Tensor | None = None):
        """semantic: {modality: [B, T, D]} continuous modality-general features.

        t: context step(s) [n_t]; None draws one (``cpc_context_steps="one"``) or takes every valid
        step (``"all"``, the loss averaged over them).
        Returns (nce, accuracy): nce = -(1/(B R n_t)) sum_t sum_pairs w_pair sum_i log p(i|i) over all ordered
        (target n, prediction m) pairs, weight ``cpc_cross_weight`` for n != m and ``cpc_self_weight``
        for n == m; accuracy = mean over the cross-modal pairs.
        """
        cfg = self.config
        first = next(iter(semantic.values()))
        batch, frames, _ = first.shape
        if t is None:
            t = (torch.arange(cfg.cpc_min_start_steps, frames - cfg.cpc_prediction_steps, device=first.device)
                 if cfg.cpc_context_steps == "all" else self.sample_time(frames, first.device))  # [n_t]
        steps = torch.arange(1, cfg.cpc_prediction_steps + 1, device=first.device)  # [R]
        future = (t.view(-1, 1) + steps).flatten()  # [n_t * R]: t_1+1 .. t_1+R, t_2+1, ...
        targets, predictions = {}, {}
        for m, z in semantic.items():
            # the LSTM is causal, so its output at step t equals running it on z[:, :t+1]
            c_t = self.context[m](z)[0].index_select(1, t)  # [B, n_t, D]
            predictions[m] = torch.stack([p(c_t) for p in self.predictors[m]], dim=2).flatten(1, 2)  # [B, n_t*R, D]
            targets[m] = z.index_select(1, future)  # [B, n_t*R, D]
        # (t, r) pairs are independent InfoNCE problems: one axis of n_t * R "steps" for eq. 13
        nce = first.new_zeros(())
        accuracies = []
        for n, m in itertools.product(semantic, repeat=2):
            w = cfg.cpc_self_weight if n == m else cfg.cpc_cross_weight
            nce = nce + w * cpc_info_nce(targets[n], predictions[m], cfg.cpc_softmax_over)
            if n != m:
                accuracies.append(cpc_accuracy(targets[n].detach(), predictions[m].detach()))
        nce = -nce / (batch * cfg.cpc_prediction_steps * t.numel())
        return nce, torch.stack(accuracies).mean()


# ---------------------------------------------------------------------------------------------
# CLUB mutual-information upper bound (paper eq. 1 / eq. 12)
# ---------------------------------------------------------------------------------------------
def gaussian_log_likelihood(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unnormalised log q(y|x) of a diagonal Gaussian, summed over features, averaged over all other
    axes: mean(1/2 sum_d [-(mu - y)^2 / exp(logvar) - logvar]) (trains the CLUB network)."""
    return (-(mu - y).pow(2) / logvar.exp() - logvar).sum(-1).mean() / 2


@torch.compiler.disable
def random_permutation(n: int, device) -> torch.Tensor:
    """``torch.randperm(n)`` outside any torch.compile graph: inductor's randperm-index pattern fails on
    an unsliced randperm followed by indexing (torch 2.13, "Not all inputs to pattern found"); eager
    behaviour and the random stream are unchanged."""
    return torch.randperm(n, device=device)


def club_sampled(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor,
                 permutation: torch.Tensor) -> torch.Tensor:
    """The original code's CLUB estimate: one shuffled negative per sample, squared errors and
    log-variances averaged over time before dividing.

    mu, logvar, y [B, T, Dy]; permutation [B]. Returns mean_b sum_d (pos - neg) / 2 with
    pos = -mean_t (mu - y)^2 / exp(mean_t logvar) and neg the same with y[permutation]."""
    scale = logvar.mean(1).exp()  # [B, Dy]
    positive = -(mu - y).pow(2).mean(1) / scale
    negative = -(mu - y[permutation]).pow(2).mean(1) / scale
    return (positive.sum(-1) - negative.sum(-1)).mean() / 2


def club_full(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 12: (1/N) sum_i [ (1/T) sum_t log q(y_it|x_it) - (1/N)(1/T) sum_j sum_t log q(y_jt|x_it) ]
    with all N samples as negatives (same t), in closed form: O(N T D), no N x N tensor.

    mu, logvar, y [B, T, Dy]. The log-variance terms cancel between the two parts."""
    precision = (-logvar).exp()  # [B, T, Dy]
    positive = -((mu - y).pow(2) * precision).sum(-1).mean()
    y_mean = y.mean(0, keepdim=True)  # [1, T, Dy]
    y_sq_mean = y.pow(2).mean(0, keepdim=True)
    # mean_j (mu_i - y_j)^2 = mu_i^2 - 2 mu_i mean_j y_j + mean_j y_j^2
    negative = -((mu.pow(2) - 2 * mu * y_mean + y_sq_mean) * precision).sum(-1).mean()
    return (positive - negative) / 2


class CLUBEstimator(nn.Module):
    """Variational q(y|x) = N(mu(x), exp(logvar(x))) of CLUB: two 4-layer MLPs of width hidden/2,
    the log-variance squashed by tanh (as the original)."""

    def __init__(self, x_dim: int, y_dim: int, hidden_size: int):
        super().__init__()
        h = hidden_size // 2

        def mlp():
            return [nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                    nn.Linear(h, y_dim)]

        self.mu = nn.Sequential(*mlp())
        self.logvar = nn.Sequential(*mlp(), nn.Tanh())

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean unnormalised log q(y|x) over positions (x [B, T, Dx], y [B, T, Dy])."""
        return gaussian_log_likelihood(self.mu(x), self.logvar(x), y)

    def mi_upper_bound(self, x: torch.Tensor, y: torch.Tensor, estimator: str) -> torch.Tensor:
        """CLUB estimate of I(x; y) (minimised by the encoders)."""
        mu, logvar = self.mu(x), self.logvar(x)
        if estimator == "full":
            return club_full(mu, logvar, y)
        return club_sampled(mu, logvar, y, random_permutation(x.shape[0], x.device))


# ---------------------------------------------------------------------------------------------
# Cross-modal code matching (CMCM, Liu et al.; in eq. 14)
# ---------------------------------------------------------------------------------------------
def code_probabilities(semantic: torch.Tensor, embed: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Soft code assignment averaged over time: mean_t softmax_k(-||z_t - e_k|| / tau) -> [B, L]
    (tau = 1 in the paper and the original code).

    Distances are clamped at a tiny positive value before the square root, so a rounding-negative
    squared distance gives no NaN (the original takes the square root unclamped)."""
    b, t, d = semantic.shape
    dist = squared_distances(semantic.reshape(-1, d), embed)  # [B*T, L]
    probs = (-dist.clamp_min(1e-12).sqrt() / temperature).softmax(dim=-1)
    return probs.view(b, t, -1).mean(1)


def code_matching_loss(p_x: torch.Tensor, p_y: torch.Tensor) -> torch.Tensor:
    """CMCM for one modality pair: S[i, j] = sum_k P_x[i,k] log P_y[j,k] + P_y[i,k] log P_x[j,k];
    -(1/B) sum_i log softmax_j(S)[i, i], with a row-wise log-sum-exp (the original shifts by the
    global minimum and adds 1e-5 to the denominator; the difference is below 1e-5 relative)."""
    scores = p_x @ torch.log(p_y + 1e-10).t() + p_y @ torch.log(p_x + 1e-10).t()  # [B, B]
    return -scores.log_softmax(dim=1).diagonal().mean()


def cross_modal_code_matching(semantic: dict, embed: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """0.5 * sum over unordered modality pairs of :func:`code_matching_loss` (gradient flows into z)."""
    with full_precision(embed):
        probs = {m: code_probabilities(z.to(embed.dtype), embed, temperature) for m, z in semantic.items()}
        pairs = itertools.combinations(probs, 2)
        return 0.5 * sum(code_matching_loss(probs[a], probs[b]) for a, b in pairs)


__all__ = [
    "CrossModalCPC", "CLUBEstimator", "cpc_info_nce", "cpc_accuracy", "gaussian_log_likelihood",
    "club_sampled", "club_full", "code_probabilities", "code_matching_loss", "cross_modal_code_matching",
]
