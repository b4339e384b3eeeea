"""Scene-level photometric loss (spec smcl.md 3.4): MSE + w * LPIPS-VGG (common.metrics.lpips) with the
v0.0 linear heads the authors shipped (their vgg.pth is the lpips package's weights/v0.0/vgg.pth), inputs
mapped 2x-1 then through the ScalingLayer, as the official trainer."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PhotometricLoss(nn.Module):
    """(H, W, 3) prediction and target in [0, 1] -> {"mse", "lpips"} weighted terms."""

    def __init__(self, lpips_weight: float = 0.01) -> None:
        super().__init__()
        self.lpips_weight = lpips_weight
        self.lpips: nn.Module | None = None
        if lpips_weight > 0:
            from common.metrics.lpips import LPIPSMetric

            self.lpips = LPIPSMetric(net="vgg", heads="0.0").eval()
            for p in self.lpips.parameters():
                p.requires_grad_(False)

    def forward(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        out = {"mse": F.mse_loss(pred, target)}
        if self.lpips is not None:
            a, b = pred.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None]
            out["lpips"] = self.lpips_weight * self.lpips(a, b).mean()
        return out
