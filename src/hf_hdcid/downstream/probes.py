"""The original's downstream decoders (reference §5.2) and the AVVP auxiliary loss."""

from __future__ import annotations

import torch
from torch import nn


class ClipProbe(nn.Module):
    """Linear(C, C) (no activation) -> max over time -> Linear(C, K): clip logits [B, K]
    (the original ``Semantic_Decoder``)."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.project = nn.Linear(in_dim, in_dim)
        self.classify = nn.Linear(in_dim, num_classes)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:  # [B, T, C] -> [B, K]
        return self.classify(self.project(codes).max(dim=1).values)


class SegmentProbe(nn.Module):
    """Linear(C, C) -> Linear(C, K) per segment, no non-linearity between: logits [B, T, K]
    (the original ``Semantic_Decoder_AVVP``; K includes the background column)."""

    def __init__(self, in_dim: int, num_columns: int):
        super().__init__()
        self.project = nn.Linear(in_dim, in_dim)
        self.classify = nn.Linear(in_dim, num_columns)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:  # [B, T, C] -> [B, T, K]
        return self.classify(self.project(codes))


class ExpLogLoss(nn.Module):
    """The original AVVP auxiliary loss: learnable alpha_c per column (init 0.1),
    loss = -mean_rows sum_c y_c * log_softmax(logits)_c * exp(-alpha_c). Nothing bounds alpha, so
    gradient descent grows it and fades the term, as in the original."""

    def __init__(self, num_columns: int, init: float = 0.1):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((num_columns,), float(init)))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # [N, K], [N, K]
        weighted = targets * torch.log_softmax(logits, dim=-1) * torch.exp(-self.alpha)
        return -weighted.sum(dim=-1).mean()


__all__ = ["ClipProbe", "SegmentProbe", "ExpLogLoss"]
