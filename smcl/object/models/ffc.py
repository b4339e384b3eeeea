"""Fast Fourier convolution blocks used by the SMCL pixel encoder (spec smcl.md section 2.1).

Re-implemented from the description of LaMa's FFC layer (advimman/lama, `ffc.py`) as used by SMCL
(jubo-neu/SMCL@e0e98bb). Parameter names follow the official state_dict (spec section 7.1) so that
official checkpoints load without renaming.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FourierUnit(nn.Module):
    """Real FFT -> 1x1 conv + BN + ReLU on interleaved (re, im) channels -> inverse FFT.

    (B, C, H, W) -> (B, C, H, W). Channels are interleaved per input channel (c0.re, c0.im, c1.re, ...).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(2 * in_channels, 2 * out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        spec = torch.fft.rfft2(x.float(), norm="ortho")  # (B, C, H, W//2+1) complex
        feat = torch.stack((spec.real, spec.imag), dim=2).reshape(b, 2 * c, h, spec.shape[-1])
        feat = self.relu(self.bn(self.conv_layer(feat.to(x.dtype))))
        co = feat.shape[1] // 2
        feat = feat.float().reshape(b, co, 2, h, spec.shape[-1])
        out = torch.complex(feat[:, :, 0], feat[:, :, 1])
        return torch.fft.irfft2(out, s=(h, w), norm="ortho").to(x.dtype)


class SpectralTransform(nn.Module):
    """Global path of an FFC: 1x1 reduce, Fourier unit + local Fourier unit (LFU), 1x1 expand."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)
        )
        self.fu = FourierUnit(mid, mid)
        self.lfu = FourierUnit(mid, mid)
        self.conv2 = nn.Conv2d(mid, out_channels, 1, bias=False)

    def _local_fourier(self, x: Tensor) -> Tensor:
        """First quarter of the channels, 2x2 quadrants stacked on channels, FU, tiled back 2x2."""
        c, h, w = x.shape[1:]
        if h != w or h % 2:
            raise ValueError(f"LFU needs square maps with even size, got {h}x{w}")
        s = h // 2
        xs = x[:, : c // 4]
        xs = torch.cat(torch.split(xs, s, dim=-2), dim=1)
        xs = torch.cat(torch.split(xs, s, dim=-1), dim=1)
        return self.lfu(xs).repeat(1, 1, 2, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(x + self.fu(x) + self._local_fourier(x))


class FFC(nn.Module):
    """Fast Fourier convolution with kernel 1: local/global channel split, four cross paths.

    Inputs and outputs are (local, global) pairs; a missing part is the integer 0.
    """

    def __init__(self, in_channels: int, out_channels: int, ratio_in: float, ratio_out: float) -> None:
        super().__init__()
        in_cg = int(in_channels * ratio_in)
        in_cl = in_channels - in_cg
        out_cg = int(out_channels * ratio_out)
        out_cl = out_channels - out_cg
        self.in_cl, self.in_cg, self.out_cl, self.out_cg = in_cl, in_cg, out_cl, out_cg

        def conv(ci: int, co: int) -> nn.Module:
            return nn.Conv2d(ci, co, 1, bias=False) if ci > 0 and co > 0 else nn.Identity()

        self.convl2l = conv(in_cl, out_cl)
        self.convl2g = conv(in_cl, out_cg)
        self.convg2l = conv(in_cg, out_cl)
        self.convg2g = SpectralTransform(in_cg, out_cg) if in_cg > 0 and out_cg > 0 else nn.Identity()

    def forward(self, x: tuple[Tensor | int, Tensor | int]) -> tuple[Tensor | int, Tensor | int]:
        x_l, x_g = x
        out_l: Tensor | int = 0
        out_g: Tensor | int = 0
        if self.out_cl > 0:
            if self.in_cl > 0:
                out_l = out_l + self.convl2l(x_l)
            if self.in_cg > 0:
                out_l = out_l + self.convg2l(x_g)
        if self.out_cg > 0:
            if self.in_cl > 0:
                out_g = out_g + self.convl2g(x_l)
            if self.in_cg > 0:
                out_g = out_g + self.convg2g(x_g)
        return out_l, out_g


class FFCBNAct(nn.Module):
    """FFC followed by BatchNorm on the local and the global output (activation: identity)."""

    def __init__(self, in_channels: int, out_channels: int, ratio_in: float, ratio_out: float) -> None:
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, ratio_in, ratio_out)
        self.bn_l = nn.BatchNorm2d(self.ffc.out_cl) if self.ffc.out_cl > 0 else nn.Identity()
        self.bn_g = nn.BatchNorm2d(self.ffc.out_cg) if self.ffc.out_cg > 0 else nn.Identity()

    def forward(self, x: tuple[Tensor | int, Tensor | int]) -> tuple[Tensor | int, Tensor | int]:
        x_l, x_g = self.ffc(x)
        if isinstance(x_l, Tensor):
            x_l = self.bn_l(x_l)
        if isinstance(x_g, Tensor):
            x_g = self.bn_g(x_g)
        return x_l, x_g
