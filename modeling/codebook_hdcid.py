"""The unified discrete codebook of one H-DCID layer, with the multimodal EMA update.

Notation (paper appendix eq. 3): codebook E in R^{L x D}, modality-general features z_m in
R^{B x T x D}; every modality of the batch is quantised against the same codebook.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def squared_distances(flat: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """||z - e_k||^2 for every row of ``flat`` [N, D] and code of ``embed`` [L, D] -> [N, L]
    (appendix eq. 3), expanded as ||e||^2 + ||z||^2 - 2 z e^T in one addmm."""
    return torch.addmm(
        embed.pow(2).sum(1) + flat.pow(2).sum(1, keepdim=True), flat, embed.t(), beta=1.0, alpha=-2.0
    )


def nearest_code(flat: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code by squared Euclidean distance, first index on ties -> [N] long."""
    return squared_distances(flat, embed).argmin(dim=-1)


def full_precision(tensor: torch.Tensor):
    """Context in which autocast is off (codebook distances and statistics stay fp32 under autocast)."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def _distributed_world() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


@dataclass
class CodebookOutput:
    """What one call of :class:`MultimodalEMACodebook` returns, per modality name.

    quantized: straight-through codes [B, T, D] (value exactly the code, gradient = identity to z).
    indices: code indices [B, T] (long). commitment: commitment loss per modality (scalar).
    codebook: the codebook [L, D] these codes were read from (before this call's EMA update).
    perplexity: code-usage perplexity per modality (scalar). equal_num: samples whose most
    frequent code agrees across all modalities (long scalar). active_codes: codes used within
    ``active_code_threshold`` updates (long scalar; after this call's update).
    diagnostics: further detached statistics of other quantizers (``"<name>"`` or
    ``"<name>/<modality>"``), empty for this codebook.

    Every quantizer of ``build_quantizer`` returns this; ``codebook`` is the matrix the code-matching
    loss uses (None for fsq, which has none).
    """

    quantized: dict
    indices: dict
    commitment: dict
    codebook: torch.Tensor
    perplexity: dict
    equal_num: torch.Tensor
    active_codes: torch.Tensor
    diagnostics: dict = field(default_factory=dict)


class MultimodalEMACodebook(nn.Module):
    """Shared codebook of one layer: nearest-code quantisation, multimodal EMA update, dead-code reset.

    Buffers (float32 whatever the model dtype, except float64 on request):
    ``embed`` [L, D] the codes, ``ema_count`` [L] smoothed usage counts N, ``ema_weight`` [L, D]
    smoothed feature sums W (E = W / N), ``unused_steps`` [L] (long) updates since a code was last used
    (-1 before the first update, as in the original).
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        size, dim = config.codebook_size, config.hidden_size
        self.register_buffer("embed", torch.empty(size, dim))
        self.register_buffer("ema_count", torch.empty(size))
        self.register_buffer("ema_weight", torch.empty(size, dim))
        self.register_buffer("unused_steps", torch.full((size,), -1, dtype=torch.long))
        self.reset_codebook()

    @property
    def init_bound(self) -> float:
        bound = self.config.codebook_init_bound
        return 1.0 / self.config.codebook_size if bound is None else bound

    @torch.no_grad()
    def reset_codebook(self) -> None:
        """Fresh codebook: E ~ U(-b, b), N = n0, W = E * max(n0, 1), unused = -1 (with n0 = 0 the
        original's initial state W = E, N = 0)."""
        if self.embed.is_meta:
            return
        self.embed.uniform_(-self.init_bound, self.init_bound)
        self.ema_count.fill_(self.config.codebook_init_count)
        self.ema_weight.copy_(self.embed * self.initial_weight_scale)
        self.unused_steps.fill_(-1)

    @property
    def initial_weight_scale(self) -> float:
        """W = E * this at initialisation: the initial count, or 1 for the original's N = 0."""
        return self.config.codebook_init_count or 1.0

    def _apply(self, fn, recurse=True):
        # casting the module to fp16/bf16 keeps the codebook statistics exactly, in fp32 (fp64 allowed):
        # the pre-cast tensors are put back (moved to the new device), nothing is rounded
        kept = {name: self._buffers[name] for name in ("embed", "ema_count", "ema_weight")}
        super()._apply(fn, recurse)
        for name, old in kept.items():
            new = self._buffers[name]
            if new is not None and new.dtype in (torch.float16, torch.bfloat16):
                self._buffers[name] = old.to(device=new.device, dtype=torch.float32)
        return self

    # ------------------------------------------------------------------ pure verbs
    def quantize(self, semantic: torch.Tensor) -> torch.Tensor:
        """Nearest code index of every position: [B, T, D] -> [B, T] long. Never changes a buffer."""
        with torch.no_grad(), full_precision(semantic):
            flat = semantic.detach().reshape(-1, semantic.shape[-1]).to(self.embed.dtype)
            return nearest_code(flat, self.embed).view(semantic.shape[:-1])

    def dequantize(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes of the given indices: [...] long -> [..., D]."""
        return F.embedding(indices, self.embed)

    def straight_through(self, semantic: torch.Tensor, indices: torch.Tensor,
                         embed: torch.Tensor | None = None) -> torch.Tensor:
        """Straight-through code: exactly the code's value, identity gradient to z -> [B, T, D].

        Written q + (z - sg[z]) rather than the original's z + sg[q - z], whose value differs from
        the code by a rounding error."""
        z = semantic.to(self.embed.dtype)  # [B, T, D]
        q = F.embedding(indices, self.embed if embed is None else embed)
        return q + (z - z.detach())

    def encode(self, semantic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices [B, T] and straight-through codes [B, T, D] of [B, T, D] features (what
        ``HDCIDModel.encode`` reports). Never changes a buffer."""
        indices = self.quantize(semantic)
        return indices, self.straight_through(semantic, indices)

    def toc_codebook(self, stage: int = 0) -> torch.Tensor:
        """The [L, D] matrix TOC ranks: the codebook itself (only stage 0 exists)."""
        if stage != 0:
            raise ValueError(f"stage: expected 0 (this quantizer has one codebook), got {stage!r}")
        return self.embed

    # ------------------------------------------------------------------ training call
    def forward(self, semantic: dict, update: bool) -> CodebookOutput:
        """:meth:`quantize_modalities` with autocast off (the codebook works in full precision)."""
        with full_precision(self.embed):
            return self.quantize_modalities(semantic, update)

    def quantize_modalities(self, semantic: dict, update: bool) -> CodebookOutput:
        """Quantise every modality of ``semantic`` ({name: [B, T, D]}) against the codebook.

        With ``update`` (training only) the multimodal EMA update and the dead-code reset follow,
        on statistics summed over all processes. Codes and losses use the codebook as it was before
        the update, as in the original. Runs in the caller's autocast state: :meth:`forward` turns
        autocast off; a caller already in full precision (a residual stage) calls this directly.
        """
        names = list(semantic)
        embed = self.embed.detach().clone() if update else self.embed  # [L, D] snapshot
        z = {m: semantic[m].to(embed.dtype) for m in names}  # [B, T, D] each
        flat = {m: z[m].detach().reshape(-1, z[m].shape[-1]) for m in names}  # [B*T, D]
        indices = {m: nearest_code(flat[m], embed) for m in names}  # [B*T]
        codes = {m: F.embedding(indices[m], embed).view_as(z[m]) for m in names}  # [B, T, D]
        commitment = {m: self.commitment_loss(z[m], codes, m) for m in names}
        counts = self._code_counts(indices)  # [n_mod, L] local
        perplexity = {m: self.perplexity(counts[i]) for i, m in enumerate(names)}
        shaped = {m: indices[m].view(z[m].shape[:-1]) for m in names}  # [B, T]
        if update:
            self.update_(flat, indices, counts)
        quantized = {m: codes[m] + (z[m] - z[m].detach()) for m in names}  # straight-through
        return CodebookOutput(
            quantized=quantized,
            indices=shaped,
            commitment=commitment,
            codebook=embed,
            perplexity=perplexity,
            equal_num=self.equal_num(shaped),
            active_codes=(self.unused_steps < self.config.active_code_threshold).sum(),
        )

    def commitment_loss(self, z: torch.Tensor, codes: dict, modality: str) -> torch.Tensor:
        """beta * (w_own ||z_m - sg q_m||^2 + w_cross/(n-1) sum_o ||z_m - sg q_o||^2), MSE means
        (appendix eq. 4's commitment term; the cross terms are the original code's)."""
        cfg = self.config
        others = [o for o in codes if o != modality]
        loss = cfg.commitment_own_weight * F.mse_loss(z, codes[modality].detach())
        if others and cfg.commitment_cross_weight:
            cross = cfg.commitment_cross_weight / len(others)
            for o in others:
                loss = loss + cross * F.mse_loss(z, codes[o].detach())
        return cfg.commitment_cost * loss

    def _code_counts(self, indices: dict) -> torch.Tensor:
        """C_m[k]: positions of modality m assigned to code k -> [n_mod, L]."""
        size = self.embed.shape[0]
        rows = [torch.zeros(size, dtype=self.embed.dtype, device=self.embed.device)
                .index_add_(0, idx, torch.ones_like(idx, dtype=self.embed.dtype)) for idx in indices.values()]
        return torch.stack(rows)

    @staticmethod
    def perplexity(counts: torch.Tensor) -> torch.Tensor:
        """exp(entropy) of the code-usage distribution of one modality's counts [L]."""
        p = counts / counts.sum().clamp_min(1)
        return torch.exp(-(p * torch.log(p + 1e-10)).sum())

    @staticmethod
    def equal_num(indices: dict) -> torch.Tensor:
        """Number of samples whose most frequent code over time (torch.mode) agrees across all
        modalities -> long scalar (the original's ``equal_num`` diagnostic)."""
        modes = [idx.mode(dim=-1).values for idx in indices.values()]  # [B] each
        agree = torch.ones_like(modes[0], dtype=torch.bool)
        for m in modes[1:]:
            agree &= m == modes[0]
        return agree.sum()

    # ------------------------------------------------------------------ EMA and resets
    @torch.no_grad()
    def mixed_sums(self, flat: dict, indices: dict) -> torch.Tensor:
        """S_m[k] = sum over positions assigned by modality m to code k of
        (w_self z_m + w_cross sum_o z_o) at the same position -> [n_mod, L, D] (MM-EMA numerator)."""
        w_cross = self.config.cross_weights()
        w_self = self.config.ema_self_weight
        total = sum(flat.values())  # [B*T, D]
        rows = []
        for m, idx in indices.items():
            mixed = w_cross * total + (w_self - w_cross) * flat[m]  # [B*T, D]
            rows.append(torch.zeros_like(self.embed).index_add_(0, idx, mixed))
        return torch.stack(rows)

    @torch.no_grad()
    def update_(self, flat: dict, indices: dict, counts: torch.Tensor | None = None) -> None:
        """Multimodal EMA update followed by the dead-code reset (mutates the buffers)."""
        counts = self._code_counts(indices) if counts is None else counts  # [n_mod, L]
        sums = self.mixed_sums(flat, indices)  # [n_mod, L, D]
        counts, sums = self._all_reduce(counts, sums)
        count, weight = self.ema_statistics(self.ema_count, self.ema_weight, counts, sums)
        self.ema_count.copy_(count)
        self.ema_weight.copy_(weight)
        self.embed.copy_(weight / count.unsqueeze(-1))
        self.expire_codes_(counts.sum(0) > 0)

    def ema_statistics(self, count: torch.Tensor, weight: torch.Tensor, counts: torch.Tensor,
                       sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequential multimodal EMA over the modalities in order (a -> v -> t in the original):
        N <- g N + (1-g) C_m; N <- (N + eps) / (n + L eps) n (Laplace); W <- g W + (1-g) S_m.
        Returns the new (N [L], W [L, D]); E = W / N."""
        g, eps = self.config.ema_decay, self.config.ema_epsilon
        size = count.shape[0]
        for c_m, s_m in zip(counts, sums):  # loop over 2-3 modalities, not over codes
            count = g * count + (1 - g) * c_m
            n = count.sum()
            count = (count + eps) / (n + size * eps) * n
            weight = g * weight + (1 - g) * s_m
        return count, weight

    @torch.no_grad()
    def expire_codes_(self, used: torch.Tensor) -> None:
        """Dead-code reset: a code unused for more than ``dead_code_threshold`` updates is replaced
        by a random active code (unused for fewer than ``active_code_threshold``) plus uniform noise.
        Branch-free: no host sync, no loop over codes."""
        cfg = self.config
        unused = torch.where(used, torch.zeros_like(self.unused_steps), self.unused_steps + 1)
        dead = unused > cfg.dead_code_threshold  # [L]
        active = (unused >= 0) & (unused < cfg.active_code_threshold)  # [L]
        self.unused_steps.copy_(torch.where(dead, torch.zeros_like(unused), unused))
        if cfg.dead_code_reset == "none":
            return
        replacement = self.sample_replacements(active)  # [L, D]
        if cfg.sync_codebook and _distributed_world() > 1:
            dist.broadcast(replacement, src=0)
        self.embed.copy_(torch.where(dead.unsqueeze(-1), replacement, self.embed))
        if cfg.dead_code_reset == "full":
            self.ema_weight.copy_(torch.where(dead.unsqueeze(-1), replacement, self.ema_weight))
            self.ema_count.copy_(torch.where(dead, torch.ones_like(self.ema_count), self.ema_count))

    def sample_replacements(self, active: torch.Tensor) -> torch.Tensor:
        """For every code a uniformly drawn active code plus U(-noise, noise) -> [L, D]. With no active
        code at all the last code is the source."""
        size, dim = self.embed.shape
        ranks = active.long().cumsum(0)  # [L]: number of active codes up to k
        draw = (torch.rand(size, device=self.embed.device) * ranks[-1]).long()  # [L] in [0, n_active)
        source = torch.searchsorted(ranks, draw + 1).clamp_max(size - 1)  # index of the (draw+1)-th active
        noise = (torch.rand(size, dim, device=self.embed.device, dtype=self.embed.dtype) * 2 - 1)
        return self.embed[source] + noise * self.config.dead_code_noise

    def _all_reduce(self, counts: torch.Tensor, sums: torch.Tensor):
        """Sum the EMA statistics over processes (one all-reduce) when a process group exists."""
        if not (self.config.sync_codebook and _distributed_world() > 1):
            return counts, sums
        packed = torch.cat([counts.reshape(-1), sums.reshape(-1)])
        dist.all_reduce(packed)
        return packed[: counts.numel()].view_as(counts), packed[counts.numel():].view_as(sums)


__all__ = ["MultimodalEMACodebook", "CodebookOutput", "squared_distances", "nearest_code", "full_precision"]
