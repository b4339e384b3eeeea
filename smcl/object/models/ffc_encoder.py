"""Dual-domain (spatial CNN + spectral FFC) pixel encoder `cnn_ffc` of SMCL (spec smcl.md 2.1, 2.2, 7.1).

Structure follows the description of the official `cnn_ffc` (jubo-neu/SMCL@e0e98bb, itself the encoder
half of Y-Net with init_features 8). The squeeze-excitation (SE) blocks are learned submodules by default
(`se_mode="learned"`); `se_mode="random_per_call"` reproduces the official defect (fresh default-initialised
SE weights at every forward, drawn here from a dedicated generator); `se_mode="none"` drops them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smcl.object.models.ffc import FFCBNAct


@dataclass(frozen=True)
class DualDomainEncoderConfig:
    in_channels: int = 3
    init_features: int = 8  # official value (Y-Net uses 32)
    ratio: float = 0.5  # global channel ratio of the FFC branch
    se_mode: Literal["learned", "random_per_call", "none"] = "learned"  # random_per_call: official defect
    se_seed: int = 0  # generator seed for se_mode=random_per_call


def conv_block(cin: int, cout: int, name: str) -> nn.Sequential:
    """Y-Net `_block`: (Conv3x3 no bias -> BN -> ReLU) x 2 with the official key names."""
    return nn.Sequential(
        OrderedDict(
            [
                (f"{name}conv1", nn.Conv2d(cin, cout, 3, padding=1, bias=False)),
                (f"{name}norm1", nn.BatchNorm2d(cout)),
                (f"{name}relu1", nn.ReLU(inplace=True)),
                (f"{name}conv2", nn.Conv2d(cout, cout, 3, padding=1, bias=False)),
                (f"{name}norm2", nn.BatchNorm2d(cout)),
                (f"{name}relu2", nn.ReLU(inplace=True)),
            ]
        )
    )


class SqueezeExcite(nn.Module):
    """GAP -> 1x1 (C -> C/r) -> ReLU -> 1x1 (C/r -> C) -> sigmoid -> scale the input."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * g


def random_squeeze_excite(x: Tensor, reduction: int, gen: torch.Generator) -> Tensor:
    """SE with freshly drawn PyTorch-default conv weights (U(-1/sqrt(fan_in), +)), as the official code."""
    c = x.shape[1]
    hidden = max(1, c // reduction)

    def draw(shape: tuple[int, ...], fan_in: int) -> Tensor:
        bound = 1.0 / math.sqrt(fan_in)
        return (torch.rand(shape, generator=gen) * 2 - 1).mul(bound).to(x.device, x.dtype)

    w1, b1 = draw((hidden, c, 1, 1), c), draw((hidden,), c)
    w2, b2 = draw((c, hidden, 1, 1), hidden), draw((c,), hidden)
    g = torch.sigmoid(F.conv2d(F.relu(F.conv2d(x.mean((2, 3), keepdim=True), w1, b1)), w2, b2))
    return x * g


class _SE(nn.Module):
    """One SE site; behaviour set by the encoder's se_mode."""

    def __init__(self, channels: int, reduction: int, mode: str, gen: torch.Generator | None) -> None:
        super().__init__()
        self.mode, self.reduction, self.gen = mode, reduction, gen
        self.block = SqueezeExcite(channels, reduction) if mode == "learned" else None

    def forward(self, x: Tensor) -> Tensor:
        if self.block is not None:
            return self.block(x)
        if self.mode == "random_per_call":
            return random_squeeze_excite(x, self.reduction, self.gen)
        return x  # "none": identity gate


class DualDomainEncoder(nn.Module):
    """`cnn_ffc`: (B, 3, S, S) -> (B, 8f*2, S/16, S/16); 3x64x64 -> 128x4x4 with f=8.

    S must be a multiple of 16 (four 2x poolings, the LFU needs even square maps).
    """

    def __init__(self, cfg: DualDomainEncoderConfig = DualDomainEncoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        f, r = cfg.init_features, cfg.ratio
        self.encoder1 = conv_block(cfg.in_channels, f, "enc1")
        self.encoder2 = conv_block(f, 2 * f, "enc2")
        self.encoder3 = conv_block(2 * f, 4 * f, "enc3")
        self.encoder4 = conv_block(4 * f, 4 * f, "enc4")
        self.encoder1_f = FFCBNAct(cfg.in_channels, f, 0.0, r)
        self.encoder2_f = FFCBNAct(f, 2 * f, r, r)
        self.encoder3_f = FFCBNAct(2 * f, 4 * f, r, r)
        self.encoder4_f = FFCBNAct(4 * f, 4 * f, r, r)
        self.bottleneck = conv_block(8 * f, 16 * f, "bottleneck")
        gen = None
        if cfg.se_mode == "random_per_call":
            gen = torch.Generator().manual_seed(cfg.se_seed)
        mode = cfg.se_mode
        # Spatial SE (reduction 8, residual x + SE(x)); spectral SE (reduction 4, replaces the input).
        self.se_cnn = nn.ModuleList([_SE(c, 8, mode, gen) for c in (f, 2 * f, 4 * f, 4 * f)])
        half = [self.encoder1_f.ffc, self.encoder2_f.ffc, self.encoder3_f.ffc]
        self.se_ffc_l = nn.ModuleList([_SE(m.out_cl, 4, mode, gen) for m in half])
        self.se_ffc_g = nn.ModuleList([_SE(m.out_cg, 4, mode, gen) for m in half])
        self.se_fuse_f = _SE(4 * f, 4, mode, gen)
        self.out_channels = 16 * f

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (bottleneck output (B,16f,S/16,S/16), spectral branch output (B,4f,S/16,S/16))."""
        if x.shape[-1] % 16 or x.shape[-2] != x.shape[-1]:
            raise ValueError(f"input must be square with size divisible by 16, got {tuple(x.shape)}")
        pool = F.max_pool2d
        e = self.encoder1(x)
        e = e + self.se_cnn[0](e)
        e = self.encoder2(pool(e, 2))
        e = e + self.se_cnn[1](e)
        e = self.encoder3(pool(e, 2))
        e = e + self.se_cnn[2](e)
        e = pool(self.encoder4(pool(e, 2)), 2)

        xl, xg = x, 0
        for i, stage in enumerate((self.encoder1_f, self.encoder2_f, self.encoder3_f)):
            xl, xg = stage((xl, xg))
            xl = pool(self.se_ffc_l[i](xl), 2)
            xg = pool(self.se_ffc_g[i](xg), 2)
        xl, xg = self.encoder4_f((xl, xg))
        spec = torch.cat([pool(xl, 2), pool(xg, 2)], dim=1)

        fused = torch.cat([e + self.se_cnn[3](e), spec + self.se_fuse_f(spec)], dim=1)
        return self.bottleneck(fused), spec

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[0]


class FFCOnlyNet(nn.Module):
    """Official auxiliary `FFCNet` (spec 2.2): the FFC branch only, last stage 4f -> 16f; (B,16f,S/16,S/16).

    Used only by the compat pretraining mode in which the focal frequency losses train separate networks.
    """

    def __init__(self, init_features: int = 8, ratio: float = 0.5, se_mode: str = "learned") -> None:
        super().__init__()
        f = init_features
        gen = torch.Generator().manual_seed(0) if se_mode == "random_per_call" else None
        self.stages = nn.ModuleList(
            [
                FFCBNAct(3, f, 0.0, ratio),
                FFCBNAct(f, 2 * f, ratio, ratio),
                FFCBNAct(2 * f, 4 * f, ratio, ratio),
                FFCBNAct(4 * f, 16 * f, ratio, ratio),
            ]
        )
        # SE after the first three stages only (the last stage's outputs are pooled directly, as official)
        self.se_l = nn.ModuleList([_SE(s.ffc.out_cl, 4, se_mode, gen) for s in self.stages[:3]])
        self.se_g = nn.ModuleList([_SE(s.ffc.out_cg, 4, se_mode, gen) for s in self.stages[:3]])
        self.se_out = _SE(16 * f, 4, se_mode, gen)

    def forward(self, x: Tensor) -> Tensor:
        xl, xg = x, 0
        for i, stage in enumerate(self.stages):
            xl, xg = stage((xl, xg))
            if i < len(self.se_l):
                xl, xg = self.se_l[i](xl), self.se_g[i](xg)
            xl, xg = F.max_pool2d(xl, 2), F.max_pool2d(xg, 2)
        out = torch.cat([xl, xg], dim=1)
        return out + self.se_out(out)


# Keys in our state_dict that the official `cnn_ffc` does not have (its SE blocks are never registered).
OFFICIAL_ABSENT_PREFIXES = ("se_cnn.", "se_ffc_l.", "se_ffc_g.", "se_fuse_f.")


def remap_official_cnn_ffc(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Official `encoder_<cat>.pt` (a plain `cnn_ffc` state_dict, spec 7.1) -> our DualDomainEncoder keys.

    Our module names are the official ones, so the map is the identity on names (pure, no I/O). The official
    file has no SE keys (OFFICIAL_ABSENT_PREFIXES): it loads strictly into an encoder with
    se_mode="random_per_call" (the official behaviour) or "none".
    """
    return dict(state_dict)


def build_ffc_encoder(cfg: DualDomainEncoderConfig | None = None, **overrides) -> DualDomainEncoder:
    """The dual-domain pixel encoder `cnn_ffc`; `overrides` replace DualDomainEncoderConfig fields."""
    cfg = cfg or DualDomainEncoderConfig()
    return DualDomainEncoder(replace(cfg, **overrides) if overrides else cfg)
