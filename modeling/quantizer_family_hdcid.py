"""The quantizer family of an H-DCID layer (``config.quantizer``), all with one calling convention.

Every quantizer takes the layer's modality-general features and offers

* ``forward(semantic: dict, update: bool) -> CodebookOutput`` (pretraining; updates EMA statistics
  when ``update``),
* ``encode(z [B, T, D]) -> (indices [B, T] long, quantized [B, T, D])`` (never changes a buffer),
* ``quantize(z) -> indices [B, T]`` and ``toc_codebook(stage) -> [L, D]`` (TOC's matrix).

``"mmema"``: :class:`MultimodalEMACodebook` (codebook_hdcid.py). ``"rvq"``:
:class:`ResidualEMACodebook`. ``"fsq"``: :class:`FiniteScalarQuantizer`. ``"fdt"``:
:class:`FiniteDiscreteTokens` (FDT, Chen et al., CVPR 2023).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_hdcid import FSQ_NO_TOC
from .codebook_hdcid import CodebookOutput, MultimodalEMACodebook, full_precision


def build_quantizer(config) -> nn.Module:
    """The quantizer of one layer named by ``config.quantizer``."""
    kinds = {"mmema": MultimodalEMACodebook, "rvq": ResidualEMACodebook, "fsq": FiniteScalarQuantizer,
             "fdt": FiniteDiscreteTokens}
    return kinds[config.quantizer](config)


def usage_perplexity(indices: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the code usage of ``indices`` (any shape), from the codes that occur."""
    counts = torch.unique(indices.reshape(-1), return_counts=True)[1].to(torch.float32)
    p = counts / counts.sum()
    return torch.exp(-(p * torch.log(p)).sum())


# =============================================================================================
# Residual VQ
# =============================================================================================
class ResidualEMACodebook(nn.Module):
    """Residual VQ: ``num_quantizers`` multimodal EMA codebooks, stage s quantising z minus the codes of
    stages < s. A position's code is the sum of its stage codes; its index is the first stage's
    (``quantize_stages`` gives all). Each stage keeps the multimodal EMA update, dead-code reset and
    distributed sync of :class:`MultimodalEMACodebook`; the commitment loss is the sum over stages of
    each stage's (own and cross-modal) commitment to its residual. The code-matching loss and TOC use
    the first stage's codebook by default (``toc_codebook(stage)`` picks another)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.stages = nn.ModuleList(MultimodalEMACodebook(config) for _ in range(config.num_quantizers))

    @property
    def embed(self) -> torch.Tensor:
        """The first stage's codebook [L, D]."""
        return self.stages[0].embed

    def quantize_stages(self, semantic: torch.Tensor) -> torch.Tensor:
        """Indices of every stage: [B, T, D] -> [B, T, S] long. Never changes a buffer."""
        with torch.no_grad(), full_precision(semantic):
            residual = semantic.detach().to(self.embed.dtype)
            out = []
            for stage in self.stages:
                idx = stage.quantize(residual)  # [B, T]
                residual = residual - stage.dequantize(idx)
                out.append(idx)
            return torch.stack(out, dim=-1)

    def quantize(self, semantic: torch.Tensor) -> torch.Tensor:
        """First-stage indices [B, T] (the index a position reports)."""
        return self.stages[0].quantize(semantic)

    def dequantize(self, stage_indices: torch.Tensor) -> torch.Tensor:
        """Sum of the stage codes: [..., S] long -> [..., D]."""
        code = self.stages[0].dequantize(stage_indices[..., 0])
        for s in range(1, len(self.stages)):
            code = code + self.stages[s].dequantize(stage_indices[..., s])
        return code

    def encode(self, semantic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First-stage indices [B, T] and the straight-through sum of stage codes [B, T, D]."""
        stage_indices = self.quantize_stages(semantic)  # [B, T, S]
        z = semantic.to(self.embed.dtype)
        return stage_indices[..., 0], self.dequantize(stage_indices) + (z - z.detach())

    def toc_codebook(self, stage: int = 0) -> torch.Tensor:
        """The codebook [L, D] of ``stage`` (0 = first)."""
        if not isinstance(stage, int) or isinstance(stage, bool) or not 0 <= stage < len(self.stages):
            raise ValueError(f"stage: expected an int in [0, {len(self.stages)}), got {stage!r}")
        return self.stages[stage].embed

    def forward(self, semantic: dict, update: bool) -> CodebookOutput:
        with full_precision(self.embed):
            z = {m: x.to(self.embed.dtype) for m, x in semantic.items()}  # [B, T, D]
            residual, outs = z, []
            for stage in self.stages:
                out = stage.quantize_modalities(residual, update)
                outs.append(out)
                residual = {m: residual[m] - out.quantized[m].detach() for m in z}  # minus the code
            codes = {m: outs[0].quantized[m].detach() for m in z}
            for out in outs[1:]:
                codes = {m: codes[m] + out.quantized[m].detach() for m in z}
            diagnostics = {}
            for s, out in enumerate(outs[1:], start=2):
                diagnostics[f"active_codes_stage{s}"] = out.active_codes
                for m in z:
                    diagnostics[f"perplexity_stage{s}/{m}"] = out.perplexity[m]
            first, commitment = outs[0], dict(outs[0].commitment)
            for out in outs[1:]:
                commitment = {m: commitment[m] + out.commitment[m] for m in z}
            return CodebookOutput(
                quantized={m: codes[m] + (z[m] - z[m].detach()) for m in z},
                indices=first.indices,
                commitment=commitment,
                codebook=first.codebook,
                perplexity=first.perplexity,
                equal_num=first.equal_num,
                active_codes=first.active_codes,
                diagnostics=diagnostics,
            )


# =============================================================================================
# Finite scalar quantisation
# =============================================================================================
class FiniteScalarQuantizer(nn.Module):
    """FSQ (Mentzer et al., 2023): z [D] -> h = W_in z [d = len(levels)], each channel i bounded to
    L_i values and rounded (straight-through), scaled to [-1, 1], then W_out back to D.

    Channel i with L_i levels takes the values (j - L_i//2) / (L_i//2), j = 0..L_i-1; the index of a
    code is the mixed-radix number of its digits j (first channel least significant). No codebook
    buffer, no EMA, no commitment loss (zero), no TOC; ``update`` is ignored."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.levels = list(config.fsq_levels_or_default)
        self.project_in = nn.Linear(config.hidden_size, len(self.levels))
        self.project_out = nn.Linear(len(self.levels), config.hidden_size)

    @property
    def num_codes(self) -> int:
        return math.prod(self.levels)

    def _grid(self, like: torch.Tensor):
        levels = torch.tensor(self.levels, dtype=like.dtype, device=like.device)  # [d]
        basis = torch.tensor([math.prod(self.levels[:i]) for i in range(len(self.levels))], device=like.device)
        return levels, torch.div(levels, 2, rounding_mode="floor"), basis  # L, L//2, radix weights

    def bound(self, h: torch.Tensor) -> torch.Tensor:
        """tanh bound of every channel to an interval that rounds to exactly the L integers
        -(L//2) .. L - 1 - L//2 (a margin of 1e-3 keeps the extreme ones reachable)."""
        levels, _, _ = self._grid(h)
        half = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0).to(h.dtype)
        shift = torch.atanh(offset / half)
        return torch.tanh(h + shift) * half - offset

    def codes(self, h: torch.Tensor) -> torch.Tensor:
        """Grid codes of projected features h [..., d] (values (j - L//2)/(L//2)), gradient straight
        through the rounding."""
        _, half_width, _ = self._grid(h)
        bounded = self.bound(h)
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / half_width

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """[..., d] grid codes -> [...] long indices."""
        _, half_width, basis = self._grid(codes)
        digits = (codes * half_width + half_width).round().long()  # j in [0, L)
        return (digits * basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """[...] long indices -> [..., d] grid codes."""
        levels, half_width, basis = self._grid(torch.empty(0, dtype=dtype, device=indices.device))
        digits = torch.div(indices.unsqueeze(-1), basis, rounding_mode="floor") % levels.long()
        return (digits.to(dtype) - half_width) / half_width

    def encode(self, semantic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices [B, T] and W_out(codes) [B, T, D] (gradient straight through the rounding)."""
        with full_precision(semantic):
            h = self.project_in(semantic.to(self.project_in.weight.dtype))  # [B, T, d]
            codes = self.codes(h)
            return self.codes_to_indices(codes.detach()), self.project_out(codes)

    def quantize(self, semantic: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encode(semantic)[0]

    def dequantize(self, indices: torch.Tensor) -> torch.Tensor:
        """W_out of the grid codes of ``indices`` -> [..., D]."""
        return self.project_out(self.indices_to_codes(indices, self.project_out.weight.dtype))

    def toc_codebook(self, stage: int = 0) -> torch.Tensor:
        raise ValueError(f"TOC is not available with quantizer='fsq': {FSQ_NO_TOC}")

    def forward(self, semantic: dict, update: bool) -> CodebookOutput:
        encoded = {m: self.encode(z) for m, z in semantic.items()}
        indices = {m: e[0] for m, e in encoded.items()}  # [B, T]
        zero = self.project_in.weight.new_zeros(())
        return CodebookOutput(
            quantized={m: e[1] for m, e in encoded.items()},
            indices=indices,
            commitment={m: zero for m in semantic},
            codebook=None,
            perplexity={m: usage_perplexity(i) for m, i in indices.items()},
            equal_num=MultimodalEMACodebook.equal_num(indices),
            active_codes=torch.tensor(torch.unique(torch.cat([i.reshape(-1) for i in indices.values()])).numel(),
                                      device=zero.device),
        )


# =============================================================================================
# Finite discrete tokens
# =============================================================================================
def sparsemax(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sparsemax (Martins & Astudillo, 2016): the Euclidean projection of ``scores`` onto the simplex
    along ``dim``, p = max(z - tau, 0) with tau from the sorted scores: k(z) = max{k : 1 + k z_(k) >
    sum_{j<=k} z_(j)}, tau = (sum_{j<=k(z)} z_(j) - 1) / k(z). Differentiable by autograd."""
    z = scores.transpose(dim, -1)
    z = z - z.max(dim=-1, keepdim=True).values  # shift-invariant; keeps the cumulative sums small
    ordered = z.sort(dim=-1, descending=True).values
    cumulative = ordered.cumsum(-1)
    k = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    support = (1 + k * ordered > cumulative).sum(-1, keepdim=True)  # k(z) >= 1
    tau = (cumulative.gather(-1, support - 1) - 1) / support.to(z.dtype)
    return (z - tau).clamp_min(0).transpose(dim, -1)


class FiniteDiscreteTokens(nn.Module):
    """FDT (Chen et al., CVPR 2023) as a layer quantizer: a token bank E [N, D] learnt by gradient, a
    query MLP (LayerNorm, Linear, GELU, LayerNorm, Linear), scores s = q(z) E^T / sqrt(D) / temperature,
    weights = sparsemax over the tokens, output = weights @ E per position [B, T, D] (differentiable,
    no straight-through). ``indices`` is the top token; no EMA (``update`` is ignored), no commitment
    loss (zero); the code-matching loss and TOC use the token bank."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        dim, hidden = config.hidden_size, config.fdt_query_hidden_size or config.hidden_size
        self.tokens = nn.Parameter(torch.randn(config.num_codes, dim))
        eps = config.layer_norm_eps
        self.query = nn.Sequential(nn.LayerNorm(dim, eps=eps), nn.Linear(dim, hidden), nn.GELU(),
                                   nn.LayerNorm(hidden, eps=eps), nn.Linear(hidden, dim))

    @property
    def embed(self) -> torch.Tensor:
        """The token bank [N, D]."""
        return self.tokens

    def scores(self, semantic: torch.Tensor) -> torch.Tensor:
        """q(z) E^T / sqrt(D) / temperature: [..., D] -> [..., N]."""
        q = self.query(semantic.to(self.tokens.dtype))
        return q @ self.tokens.t() / (math.sqrt(self.tokens.shape[1]) * self.config.fdt_temperature)

    def weights(self, semantic: torch.Tensor) -> torch.Tensor:
        """Sparse token weights [..., N] (each row sums to one)."""
        return sparsemax(self.scores(semantic), dim=-1)

    def encode(self, semantic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-token indices [B, T] and weights @ tokens [B, T, D]."""
        with full_precision(self.tokens):
            w = self.weights(semantic)  # [B, T, N]
            return w.detach().argmax(-1), w @ self.tokens

    def quantize(self, semantic: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encode(semantic)[0]

    def dequantize(self, indices: torch.Tensor) -> torch.Tensor:
        """The tokens of ``indices`` -> [..., D] (the hard, top-1 reading)."""
        return F.embedding(indices, self.tokens)

    def toc_codebook(self, stage: int = 0) -> torch.Tensor:
        """The token bank [N, D]."""
        if stage != 0:
            raise ValueError(f"stage: expected 0 (this quantizer has one token bank), got {stage!r}")
        return self.tokens

    def forward(self, semantic: dict, update: bool) -> CodebookOutput:
        with full_precision(self.tokens):
            w = {m: self.weights(z) for m, z in semantic.items()}  # [B, T, N]
            indices = {m: x.detach().argmax(-1) for m, x in w.items()}
            used = torch.stack([(x.detach() > 0).flatten(0, -2).any(0) for x in w.values()]).any(0)  # [N]
            zero = self.tokens.new_zeros(())
            diagnostics = {f"fdt_support/{m}": (x.detach() > 0).sum(-1).to(torch.float32).mean()
                           for m, x in w.items()}  # mean number of tokens with weight > 0 per position
            return CodebookOutput(
                quantized={m: x @ self.tokens for m, x in w.items()},
                indices=indices,
                commitment={m: zero for m in semantic},
                codebook=self.tokens,
                perplexity={m: usage_perplexity(i) for m, i in indices.items()},
                equal_num=MultimodalEMACodebook.equal_num(indices),
                active_codes=used.sum(),
                diagnostics=diagnostics,
            )


__all__ = ["build_quantizer", "ResidualEMACodebook", "FiniteScalarQuantizer", "FiniteDiscreteTokens", "sparsemax",
           "usage_perplexity"]
