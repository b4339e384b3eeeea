"""Projectors and the weighted L1-on-cosine loss (spec nvs_sqa.md §2.3).

This is a regression of projected cosine similarity onto soft targets, not InfoNCE: there are no negatives and
no temperature (spec §6.3 (1)).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Projector(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear."""

    def __init__(self, d_in: int = 384, d_hidden: int = 384, d_out: int = 384) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, d_hidden), nn.BatchNorm1d(d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CosineTargetLoss(nn.Module):
    """L = sum_k w_k * mean_b |cos(P_k f1, P_k f2) - t_k|, one projector per branch. Returns per-branch terms."""

    def __init__(self, branches: tuple[str, ...], weights: tuple[float, ...], dim: int = 384) -> None:
        super().__init__()
        if len(branches) != len(weights):
            raise ValueError(f"{len(branches)} branches but {len(weights)} weights")
        self.branches, self.weights = tuple(branches), tuple(float(w) for w in weights)
        self.projectors = nn.ModuleDict({b: Projector(dim, dim, dim) for b in branches})

    def forward(self, f1: Tensor, f2: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """f1, f2 (B, D); targets (B, K) in branch order -> {"loss_<branch>": weighted term}."""
        out = {}
        for k, (name, w) in enumerate(zip(self.branches, self.weights)):
            proj = self.projectors[name]
            c = F.cosine_similarity(proj(f1), proj(f2), dim=1, eps=1e-8)
            out[f"loss_{name}"] = w * (c - targets[:, k]).abs().mean()
        return out
