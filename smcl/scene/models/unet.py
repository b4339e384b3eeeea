"""PAPR "SmallUNet" renderer (spec smcl.md 2.7): one 3x3 conv + ReLU per stage, official key names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Conv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.double_conv(x)


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), _Conv(cin, cout))

    def forward(self, x: Tensor) -> Tensor:
        return self.maxpool_conv(x)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = _Conv(cin, cout)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], 1))


class _OutConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SmallUNet(nn.Module):
    """(B, 32, H, W) ray features -> (B, 3, H, W) foreground colour, no output activation; any H, W.

    The two poolings need H and W divisible by 4 (the official sizes are): other sizes (LLFF images_8,
    504x378) are padded at the bottom and right by edge replication and cropped back, so the official
    sizes run unchanged."""

    def __init__(self, in_ch: int = 32, out_ch: int = 3, width: int = 128) -> None:
        super().__init__()
        self.inc = _Conv(in_ch, width)
        self.down1 = _Down(width, 2 * width)
        self.down2 = _Down(2 * width, 4 * width)
        self.up1 = _Up(4 * width, 2 * width)
        self.up2 = _Up(2 * width, width)
        self.outc = _OutConv(width, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % 4, -w % 4
        if ph or pw:
            x = F.pad(x, [0, pw, 0, ph], mode="replicate")
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        return self.outc(self.up2(self.up1(x3, x2), x1))[..., :h, :w]
