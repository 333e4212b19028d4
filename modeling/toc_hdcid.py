"""TOC: training-free optimisation of a codebook by channel selection (paper section 4.1, eqs. 5-11).

Pure functions of a codebook ``[L, D]`` (L codes of D channels), from this model or any other
vector-quantisation codebook or token bank, on any device and float dtype. Everything is computed
in float64 with closed forms in O(L D); no pair loop.

Normalisation: the paper divides the similarity (eq. 9) by L^2 and the variance (eq. 10) by L;
the original code by L(L-1) and L-1 (``unbiased=True``). Both scale S and V by the same factor
(1/L relative to each other), so the channel ranking is the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _prepare(codebook: torch.Tensor, normalize: bool) -> torch.Tensor:
    if not isinstance(codebook, torch.Tensor) or codebook.dim() != 2 or not codebook.is_floating_point():
        shape = list(codebook.shape) if isinstance(codebook, torch.Tensor) else type(codebook).__name__
        raise ValueError(f"codebook: expected a floating-point tensor of shape [L, D], got {shape}")
    if codebook.shape[0] < 2 or codebook.shape[1] < 1:
        raise ValueError(f"codebook: expected at least 2 codes and 1 channel, got shape {list(codebook.shape)}")
    e = codebook.detach().to(torch.float64)
    if normalize:  # the paper's assumption: unit-norm codes
        e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return e


def inter_code_similarity(codebook: torch.Tensor, normalize: bool = False, unbiased: bool = False) -> torch.Tensor:
    """S_k = 1/L^2 sum_i sum_{j != i} e^i_k e^j_k per channel k (eq. 9) -> [D] float64.

    Closed form ((sum_i e^i_k)^2 - sum_i (e^i_k)^2) / L^2; ``unbiased`` divides by L(L-1) instead
    (the original code). ``normalize`` first scales every code to unit norm."""
    e = _prepare(codebook, normalize)
    n = e.shape[0]
    pairs = e.sum(0).pow(2) - e.pow(2).sum(0)  # [D]
    return pairs / (n * (n - 1) if unbiased else n * n)


def inter_code_variance(codebook: torch.Tensor, normalize: bool = False, unbiased: bool = False) -> torch.Tensor:
    """V_k = 1/L sum_i (e^i_k - mean_k)^2 per channel k (eq. 10) -> [D] float64; ``unbiased``
    divides by L-1 (the original code's torch.var)."""
    e = _prepare(codebook, normalize)
    return e.var(dim=0, correction=1 if unbiased else 0)


def toc_scores(codebook: torch.Tensor, lam: float = 0.7, normalize: bool = False, unbiased: bool = False) -> torch.Tensor:
    """J_k = lam S_k - (1 - lam) V_k (eq. 11) -> [D] float64; the best channels have the lowest J
    (little similarity between codes, much variance across them)."""
    _check_lam(lam)
    return lam * inter_code_similarity(codebook, normalize, unbiased) - (1 - lam) * inter_code_variance(
        codebook, normalize, unbiased)


def select_channels(codebook: torch.Tensor, num_channels: int, lam: float = 0.7, normalize: bool = False,
                    top_bottom: Sequence[int] = (1, 0), unbiased_variance: bool = True) -> torch.Tensor:
    """Indices of the TOC channels -> LongTensor[num_channels], on the codebook's device.

    ``top_bottom=(a, b)`` follows the original code: a share a/(a+b) of the channels with the best
    scores (best first), then a share b/(a+b) with the worst scores (worst first); (1, 0) is the
    paper's plain selection of the best channels. The original splits u = num_channels // (a+b) into
    u*a + u*b channels, which drops the remainder when num_channels is not a multiple of a+b; here the
    top block gets round(num_channels * a / (a+b)) channels and the bottom block the rest, which is the
    same whenever the original's split is exact. Ties keep the lower channel index first.
    """
    dim = codebook.shape[-1] if isinstance(codebook, torch.Tensor) and codebook.dim() == 2 else None
    if dim is not None and (not isinstance(num_channels, int) or isinstance(num_channels, bool)
                            or not 1 <= num_channels <= dim):
        raise ValueError(f"num_channels: expected an int in [1, {dim}], got {num_channels!r}")
    top, bottom = _split(num_channels, top_bottom)
    scores = toc_scores(codebook, lam, normalize, unbiased_variance)  # [D], lower = better
    order = torch.sort(scores, stable=True).indices  # best first
    worst_first = torch.sort(-scores, stable=True).indices
    chosen = order[:top]
    if bottom:
        rest = worst_first[~torch.isin(worst_first, chosen)]
        chosen = torch.cat([chosen, rest[:bottom]])
    return chosen.to(device=codebook.device)


def _split(num_channels: int, top_bottom: Sequence[int]) -> tuple[int, int]:
    if (not isinstance(top_bottom, (tuple, list)) or len(top_bottom) != 2
            or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in top_bottom) or sum(top_bottom) == 0):
        raise ValueError(f"top_bottom: expected two ints >= 0 with a positive sum, got {top_bottom!r}")
    a, b = top_bottom
    top = round(num_channels * a / (a + b))
    return top, num_channels - top


def _check_lam(lam) -> None:
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected a number in [0, 1], got {lam!r}")


def cosine_similarity_matrix(codebook: torch.Tensor, channels: torch.Tensor | None = None) -> torch.Tensor:
    """Code-to-code cosine similarities [L, L] (on the given channels only), as in the paper's Fig. 2."""
    e = codebook.detach().to(torch.float64)
    if channels is not None:
        e = e[:, channels]
    e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return e @ e.t()


def mean_off_diagonal(matrix: torch.Tensor) -> float:
    """Mean absolute off-diagonal entry of a square matrix."""
    n = matrix.shape[0]
    off = matrix.abs().sum() - matrix.diagonal().abs().sum()
    return float(off / (n * (n - 1)))


__all__ = [
    "inter_code_similarity", "inter_code_variance", "toc_scores", "select_channels",
    "cosine_similarity_matrix", "mean_off_diagonal",
]
