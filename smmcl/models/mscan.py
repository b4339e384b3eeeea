"""MSCAN backbone blocks (SegNeXt's multi-scale convolutional attention network).

Re-implemented from the description in specs/smmcl.md section 1.2 (SegNeXt, Visual-Attention-Network/SegNeXt
@c87bcae). Module and attribute names follow the original so that state_dict keys match the official
checkpoints (`patch_embed1.proj.0`, `block1.0.mlp.dwconv.dwconv`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import StochasticDepth


@dataclass(frozen=True)
class MSCANConfig:
    """Architecture of one MSCAN branch; defaults are MSCAN-B, the paper's backbone."""

    embed_dims: tuple[int, ...] = (64, 128, 320, 512)
    depths: tuple[int, ...] = (3, 3, 12, 3)
    mlp_ratios: tuple[int, ...] = (8, 8, 4, 4)
    drop_path_rate: float = 0.2
    in_channels: int = 3


MSCAN_VARIANTS: dict[str, MSCANConfig] = {
    "mscan_t": MSCANConfig((32, 64, 160, 256), (3, 3, 5, 2), drop_path_rate=0.1),
    "mscan_s": MSCANConfig((64, 128, 320, 512), (2, 2, 4, 2), drop_path_rate=0.1),
    "mscan_b": MSCANConfig((64, 128, 320, 512), (3, 3, 12, 3), drop_path_rate=0.2),
    "mscan_l": MSCANConfig((64, 128, 320, 512), (3, 5, 27, 3), drop_path_rate=0.3),
}


class PWConv(nn.Conv2d):
    """1x1 conv (stride 1, no groups) that runs as a GEMM on the NHWC view when `fast` is set.

    Same parameters and state_dict as nn.Conv2d. With `fast` the input must be channels_last (or have a
    1x1 spatial size); the output is then channels_last too. `fast` is switched by SegNeXtRGBX.set_fast.
    """

    fast: bool = False

    def __init__(self, cin: int, cout: int, bias: bool = True) -> None:
        super().__init__(cin, cout, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if not self.fast:
            return super().forward(x)
        w = self.weight.view(self.out_channels, self.in_channels)
        return F.linear(x.permute(0, 2, 3, 1), w, self.bias).permute(0, 3, 1, 2)


class StemConv(nn.Module):
    """Stage-1 stem: two stride-2 3x3 convs with BN (H/4 x W/4)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.proj = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, 2, 1),
            nn.BatchNorm2d(mid),
            nn.GELU(),
            nn.Conv2d(mid, out_channels, 3, 2, 1),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class OverlapPatchEmbed(nn.Module):
    """Stages 2-4 downsampling: 3x3 stride-2 conv + BN."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x))


class _DepthwiseSame(torch.autograd.Function):
    """Stride-1 'same' depthwise conv whose backward avoids oneDNN's slow depthwise backward kernels.

    grad_input is the forward kernel run on the gradient with the flipped filter (exact algebra, fast NHWC
    kernel); grad_weight sums gradient x shifted input per tap. Used by the fast path in training for the
    1xk strips and the 5x5 conv, whose built-in backward is several times slower than the kx1 twins'.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, ph: int, pw: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.pad = (ph, pw)
        return F.conv2d(x, weight, bias, padding=(ph, pw), groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        ph, pw = ctx.pad
        c, _, kh, kw = weight.shape
        grad = grad.contiguous(memory_format=torch.channels_last)  # in the forward's compute dtype
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            wf = weight.to(grad.dtype).flip(2, 3)
            gx = F.conv2d(grad, wf, padding=(kh - 1 - ph, kw - 1 - pw), groups=c).to(x.dtype)
        if ctx.needs_input_grad[1]:
            xp = F.pad(x.to(grad.dtype), (pw, kw - 1 - pw, ph, kh - 1 - ph))
            h, w = grad.shape[2:]
            taps = [
                (grad * xp[:, :, i : i + h, j : j + w]).sum((0, 2, 3), dtype=torch.float32)
                for i in range(kh)
                for j in range(kw)
            ]
            gw = torch.stack(taps, 1).view(c, 1, kh, kw).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3), dtype=torch.float32).to(weight.dtype)
        return gx, gw, gb, None, None


def use_custom_depthwise_backward(x: Tensor, fast: bool) -> bool:
    """Whether the MSCA depthwise convs of `x` take the custom backward of :class:`_DepthwiseSame`.

    Only on the CPU fast path (channels_last input): the custom backward exists because oneDNN's depthwise
    backward is slow; on CUDA (and any other device) cuDNN's native kernels are used, since the custom
    form would run one full-activation pass per kernel tap there.
    """
    return fast and x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last)


def _depthwise(conv: nn.Conv2d, x: Tensor, custom_backward: bool) -> Tensor:
    if custom_backward and torch.is_grad_enabled() and conv.bias is not None:
        return _DepthwiseSame.apply(x, conv.weight, conv.bias, *conv.padding)
    return conv(x)


class AttentionModule(nn.Module):
    """MSCA: depthwise 5x5 then three strip-conv pairs (7, 11, 21), summed, 1x1 conv, gates the input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv0_1 = nn.Conv2d(dim, dim, (1, 7), padding=(0, 3), groups=dim)
        self.conv0_2 = nn.Conv2d(dim, dim, (7, 1), padding=(3, 0), groups=dim)
        self.conv1_1 = nn.Conv2d(dim, dim, (1, 11), padding=(0, 5), groups=dim)
        self.conv1_2 = nn.Conv2d(dim, dim, (11, 1), padding=(5, 0), groups=dim)
        self.conv2_1 = nn.Conv2d(dim, dim, (1, 21), padding=(0, 10), groups=dim)
        self.conv2_2 = nn.Conv2d(dim, dim, (21, 1), padding=(10, 0), groups=dim)
        self.conv3 = PWConv(dim, dim)

    fast: bool = False  # set by SegNeXtRGBX.set_fast: custom CPU backward for the 1xk strips and the 5x5 conv

    def forward(self, x: Tensor) -> Tensor:
        cb = use_custom_depthwise_backward(x, self.fast)
        a = _depthwise(self.conv0, x, cb)
        s = (
            a
            + self.conv0_2(_depthwise(self.conv0_1, a, cb))
            + self.conv1_2(_depthwise(self.conv1_1, a, cb))
            + self.conv2_2(_depthwise(self.conv2_1, a, cb))
        )
        return self.conv3(s) * x


class SpatialAttention(nn.Module):
    """1x1 conv -> GELU -> MSCA -> 1x1 conv, plus the input (its own shortcut)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_1 = PWConv(dim, dim)
        self.activation = nn.GELU()
        self.spatial_gating_unit = AttentionModule(dim)
        self.proj_2 = PWConv(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x)))) + x


class DWConv(nn.Module):
    """Depthwise 3x3 conv; the wrapper exists only so keys read `mlp.dwconv.dwconv.*`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.dwconv(x)


class Mlp(nn.Module):
    """Conv FFN: fc1 -> depthwise 3x3 -> GELU -> fc2 (dropout 0 omitted)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = PWConv(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = PWConv(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class Block(nn.Module):
    """MSCAN block: x + DropPath(ls1*Attn(BN(x))); x + DropPath(ls2*Mlp(BN(x)))."""

    def __init__(self, dim: int, mlp_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SpatialAttention(dim)
        self.drop_path = StochasticDepth(drop_path, mode="row")  # per-sample (timm DropPath semantics)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.layer_scale_1 = nn.Parameter(1e-2 * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(1e-2 * torch.ones(dim))

    checkpoint: bool = False  # recompute attn/mlp in backward (activation checkpointing) when training

    def _attn(self, x: Tensor) -> Tensor:
        return self.layer_scale_1[:, None, None] * self.attn(x)

    def _mlp(self, x: Tensor) -> Tensor:
        return self.layer_scale_2[:, None, None] * self.mlp(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.checkpoint and self.training and torch.is_grad_enabled():
            # The BatchNorms stay outside the recomputed regions, so running statistics update once.
            x = x + self.drop_path(checkpoint(self._attn, self.norm1(x), use_reentrant=False))
            return x + self.drop_path(checkpoint(self._mlp, self.norm2(x), use_reentrant=False))
        x = x + self.drop_path(self._attn(self.norm1(x)))
        return x + self.drop_path(self._mlp(self.norm2(x)))


def init_weights(m: nn.Module) -> None:
    """SegNeXt init: conv ~ N(0, sqrt(2/fan_out)), bias 0; LayerNorm (1, 0); Linear trunc-normal .02."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_stages(cfg: MSCANConfig) -> tuple[list[nn.Module], list[nn.ModuleList], list[nn.LayerNorm]]:
    """Patch embeds, block lists and stage LayerNorms of one branch (drop-path linspace over all blocks)."""
    rates = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
    embeds: list[nn.Module] = []
    blocks: list[nn.ModuleList] = []
    norms: list[nn.LayerNorm] = []
    cur = 0
    for i, (dim, depth, ratio) in enumerate(zip(cfg.embed_dims, cfg.depths, cfg.mlp_ratios)):
        if i == 0:
            embeds.append(StemConv(cfg.in_channels, dim))
        else:
            embeds.append(OverlapPatchEmbed(cfg.embed_dims[i - 1], dim))
        blocks.append(nn.ModuleList(Block(dim, ratio, rates[cur + j]) for j in range(depth)))
        norms.append(nn.LayerNorm(dim))
        cur += depth
    return embeds, blocks, norms


def run_stage(
    x: Tensor, embed: nn.Module, blocks: nn.ModuleList, norm: nn.LayerNorm, *, fast: bool = False
) -> Tensor:
    """One MSCAN stage: embed, blocks, LayerNorm over channels. (B,C,H,W) -> (B,C',H/2|4,W/2|4).

    fast: the tensors are channels_last; the LayerNorm then reads the NHWC memory directly and the result
    stays channels_last (no copy). Otherwise the result is a contiguous NCHW tensor (the reference form).
    """
    x = embed(x)
    for blk in blocks:
        x = blk(x)
    # LayerNorm on the channel axis == the official token-layout LN, without the reshapes.
    y = norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return y if fast else y.contiguous()
