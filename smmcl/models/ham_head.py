"""LightHamHead decoder with the NMF2D "Hamburger" (SegNeXt), as configured by SMMCL (spec section 1.5).

Names follow mmcv's ConvModule (`conv`, `gn`) so official checkpoints load. SMMCL's `ham_out` has no norm
(a quirk kept for checkpoint compatibility; SegNeXt's own head has a GN there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvModule(nn.Module):
    """1x1 conv (+ GroupNorm(32)) (+ ReLU); children named `conv` and `gn` like mmcv's ConvModule."""

    def __init__(self, cin: int, cout: int, *, norm: bool, act: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=not norm)
        self.gn = nn.GroupNorm(32, cout) if norm else None
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.gn is not None:
            x = self.gn(x)
        return F.relu(x, inplace=True) if self.act else x


class NMF2D(nn.Module):
    """Non-negative matrix factorisation of (B, D, h*w) with random bases drawn at every forward.

    Bases: one `torch.rand((B, D, R), generator=...)` on the CPU (the official draw, so results match the
    golden values), L2-normalised over D. Pass `generator` to make evaluation deterministic.
    """

    def __init__(self, rank: int = 64, train_steps: int = 6, eval_steps: int = 7, inv_t: float = 1.0) -> None:
        super().__init__()
        self.rank = rank
        self.train_steps = train_steps
        self.eval_steps = eval_steps
        self.inv_t = inv_t
        self.generator: torch.Generator | None = None

    @staticmethod
    def _update_coef(x: Tensor, bases: Tensor, coef: Tensor) -> Tensor:
        num = torch.bmm(x.transpose(1, 2), bases)
        den = coef.bmm(bases.transpose(1, 2).bmm(bases))
        return coef * num / (den + 1e-6)

    def forward(self, x: Tensor) -> Tensor:
        b, d, h, w = x.shape
        flat = x.reshape(b, d, h * w)
        bases = torch.rand((b, d, self.rank), generator=self.generator)
        bases = F.normalize(bases, dim=1).to(device=x.device, dtype=x.dtype)
        coef = torch.softmax(self.inv_t * torch.bmm(flat.transpose(1, 2), bases), dim=-1)
        for _ in range(self.train_steps if self.training else self.eval_steps):
            coef = self._update_coef(flat, bases, coef)
            num = torch.bmm(flat, coef)
            den = bases.bmm(coef.transpose(1, 2).bmm(coef))
            bases = bases * num / (den + 1e-6)
        coef = self._update_coef(flat, bases, coef)
        return torch.bmm(bases, coef.transpose(1, 2)).reshape(b, d, h, w)


class Hamburger(nn.Module):
    """relu(x + ham_out(NMF(relu(ham_in(x)))))."""

    def __init__(self, channels: int, rank: int = 64) -> None:
        super().__init__()
        self.ham_in = ConvModule(channels, channels, norm=False, act=False)
        self.ham = NMF2D(rank=rank)
        self.ham_out = ConvModule(channels, channels, norm=False, act=False)

    def forward(self, x: Tensor) -> Tensor:
        enjoy = F.relu(self.ham_in(x))
        enjoy = self.ham_out(self.ham(enjoy))
        return F.relu(x + enjoy)


class LightHamHead(nn.Module):
    """Resize stages 2-4 to 1/8, concat, squeeze, Hamburger, align, classify. -> (B, K, H/8, W/8)."""

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, channels: int = 512, rank: int = 64):
        super().__init__()
        self.squeeze = ConvModule(sum(in_channels), channels, norm=True, act=True)
        self.hamburger = Hamburger(channels, rank)
        self.align = ConvModule(channels, channels, norm=True, act=True)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, feats: list[Tensor]) -> Tensor:
        size = feats[0].shape[2:]
        x = torch.cat(
            [feats[0]]
            + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]],
            dim=1,
        )
        x = self.align(self.hamburger(self.squeeze(x)))
        return self.conv_seg(self.dropout(x))
