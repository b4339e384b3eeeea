"""Per-view CNN of NVS-SQA ("normal" encoder, spec nvs_sqa.md §1.2).

Module names (`conv_0`, `low_level_convs.i.1`, `fused_conv_k`, `dwise_conv_k`, `pwise_conv`, `out_feats`,
and `convna.N` inside blocks) follow the official state_dict so the released checkpoint loads strictly.
Upstream: VincentQQu/NVS-SQA@8f3f945 models/encoders.py (re-written from the spec, not copied).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ViewEncoderConfig:
    in_channels: int = 3  # 3 for RGB ("LUM" mode would be 1)
    chs: tuple[int, ...] = (12, 24, 48, 96, 192)
    view_enc_size: int = 192
    with_low_level: bool = True  # adds the 24+48+96 multi-scale descriptors

    @property
    def token_size(self) -> int:
        low = sum(self.chs[1:4]) if self.with_low_level else 0
        return self.view_enc_size + low


class DoubleConv(nn.Module):
    """conv-BN-SiLU-conv-BN-SiLU; identity residual when output shape == input shape."""

    def __init__(
        self, cin: int, cmid: int, cout: int, k1: int = 3, k2: int = 3, stride: int = 1, same: bool = True
    ) -> None:
        super().__init__()
        pad1, pad2 = (k1 // 2, k2 // 2) if same else (0, 0)
        mode = "reflect" if same else "zeros"
        self.convna = nn.Sequential(
            nn.Conv2d(cin, cmid, k1, stride, pad1, padding_mode=mode),
            nn.BatchNorm2d(cmid),
            nn.SiLU(),
            nn.Conv2d(cmid, cout, k2, stride, pad2, padding_mode=mode),
            nn.BatchNorm2d(cout),
            nn.SiLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.convna(x)
        return y + x if y.shape == x.shape else y


class ConvNormAct(nn.Module):
    """One conv-BN-SiLU with the same residual rule (used as the 1x1 head)."""

    def __init__(self, cin: int, cout: int, k: int = 1) -> None:
        super().__init__()
        self.convna = nn.Sequential(
            nn.Conv2d(cin, cout, k, 1, k // 2, padding_mode="reflect" if k > 1 else "zeros"),
            nn.BatchNorm2d(cout),
            nn.SiLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.convna(x)
        return y + x if y.shape == x.shape else y


class ViewEncoder(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, token_size) tokens: [low1 24, low2 48, low3 96, head 192]."""

    min_size = 69  # smaller inputs make a reflect pad meet a 1-pixel map

    def __init__(self, cfg: ViewEncoderConfig = ViewEncoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c0, c1, c2, c3, c4 = cfg.chs
        self.conv_0 = DoubleConv(cfg.in_channels, c0 // 2, c0, k1=5, k2=3, stride=2, same=False)
        if cfg.with_low_level:
            self.low_level_convs = nn.ModuleList(
                nn.Sequential(nn.MaxPool2d(2), DoubleConv(ci, co, co))
                for ci, co in ((c0, c1), (c1, c2), (c2, c3))
            )
        self.fused_conv_1 = DoubleConv(c0, c1, c1)
        self.fused_conv_2 = DoubleConv(c1, c1, c1)
        self.pool_1 = nn.MaxPool2d(2)
        self.fused_conv_3 = DoubleConv(c1, c2, c2)
        self.fused_conv_4 = DoubleConv(c2, c2, c2)
        self.pool_2 = nn.MaxPool2d(2)
        self.dwise_conv_1 = DoubleConv(c2, c3, c3)
        self.dwise_conv_2 = DoubleConv(c3, c3, c3)
        self.pool_3 = nn.MaxPool2d(2)
        self.pwise_conv = ConvNormAct(c3, c4, 1)
        self.out_feats = nn.Linear(c4, cfg.view_enc_size)

    def forward(self, x: Tensor) -> Tensor:
        lows: list[Tensor] = []
        x = self.conv_0(x)
        if self.cfg.with_low_level:
            lows.append(self.low_level_convs[0](x).mean(dim=(2, 3)))
        x = self.pool_1(self.fused_conv_2(self.fused_conv_1(x)))
        if self.cfg.with_low_level:
            lows.append(self.low_level_convs[1](x).mean(dim=(2, 3)))
        x = self.pool_2(self.fused_conv_4(self.fused_conv_3(x)))
        if self.cfg.with_low_level:
            lows.append(self.low_level_convs[2](x).mean(dim=(2, 3)))
        x = self.pool_3(self.dwise_conv_2(self.dwise_conv_1(x)))
        head = self.out_feats(self.pwise_conv(x).mean(dim=(2, 3)))
        return torch.cat([*lows, head], dim=1)
