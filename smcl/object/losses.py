"""Contrastive objectives of the SMCL pixel module (spec smcl.md 2.3, 3.1, 9.1).

`InfoNCE` is the intended vector-level form (default); `InfoNCECompat` reproduces the official per-channel
form. `FocalFrequencyLoss` follows the description of Focal Frequency Loss (Jiang et al., ICCV 2021) with
the settings SMCL uses (alpha 1, whole-map patch, per-sample max normalisation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class InfoNCE(nn.Module):
    """Vector-level InfoNCE: anchor vs its mirror (positive) and its 180-degree view (+ in-batch) negatives.

    Inputs (B, ...) feature maps, flattened per sample; optional projection head. Positive at logit 0.
    """

    def __init__(
        self, tau: float = 0.05, in_batch_negatives: bool = True, proj_dim: int = 0, in_dim: int = 2048
    ) -> None:
        super().__init__()
        self.tau, self.in_batch = tau, in_batch_negatives
        self.proj = (
            nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, proj_dim))
            if proj_dim > 0
            else None
        )

    def _embed(self, x: Tensor) -> Tensor:
        v = x.flatten(1)
        if self.proj is not None:
            v = self.proj(v)
        return F.normalize(v, dim=1)

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        a, p, q = self._embed(anchor), self._embed(positive), self._embed(negative)
        logits = [(a * p).sum(1, keepdim=True), (a * q).sum(1, keepdim=True)]
        b = a.shape[0]
        if self.in_batch and b > 1:
            off = ~torch.eye(b, dtype=torch.bool, device=a.device)
            logits.append((a @ p.t())[off].view(b, b - 1))
            logits.append((a @ q.t())[off].view(b, b - 1))
        logits = torch.cat(logits, dim=1) / self.tau
        return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=a.device))


class InfoNCECompat(nn.Module):
    """Official form: L2-normalise along width, per-(channel,row) cosines, softmax over 2C, channel 0 positive.

    (B, C, H, W) x3 -> scalar. Kept to reproduce official training; not the intended objective.
    """

    def __init__(self, tau: float = 0.05) -> None:
        super().__init__()
        self.tau = tau

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        a, p, q = (F.normalize(t, dim=-1) for t in (anchor, positive, negative))
        s_pos = (a * p).sum(-1)  # (B, C, H)
        s_neg = (a * q).sum(-1)
        logits = torch.cat([s_pos, s_neg], dim=1) / self.tau  # (B, 2C, H)
        return -F.log_softmax(logits, dim=1)[:, 0, :].mean()


def focal_frequency_loss(pred: Tensor, target: Tensor, alpha: float = 1.0) -> Tensor:
    """FFL = mean(W * |F(pred) - F(target)|^2), W = |diff|^alpha / max over (u,v) per (sample, channel).

    (B, C, H, W) x2 -> scalar. 2-D FFT with orthonormal scaling; W detached, NaN -> 0, clamped to [0, 1].
    """
    fp = torch.fft.fft2(pred.float(), norm="ortho")
    ft = torch.fft.fft2(target.float(), norm="ortho")
    d = (fp - ft).abs().pow(2)
    with torch.no_grad():
        w = d.sqrt().pow(alpha)
        w = w / w.amax(dim=(-2, -1), keepdim=True)
        w = torch.nan_to_num(w, nan=0.0).clamp(0.0, 1.0)
    return (w * d).mean()


class FocalFrequencyLoss(nn.Module):
    """Module wrapper of `focal_frequency_loss`."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return focal_frequency_loss(pred, target, self.alpha)


def negative_frequency_loss(
    anchor: Tensor, negative: Tensor, margin: float | None = 1.0, eps: float = 1e-12
) -> Tensor:
    """-log10(FFL(anchor, negative)): pushes the 180-degree view apart in frequency.

    With `margin` (fixed mode) the loss is floored at -log10(margin), i.e. no further push once
    FFL >= margin (the official unbounded form is margin=None).
    """
    loss = -torch.log10(focal_frequency_loss(anchor, negative) + eps)
    if margin is not None:
        loss = loss.clamp(min=-math.log10(margin))
    return loss
