"""SMMCL's dual-branch MSCAN RGB-X segmentor (spec sections 1.1, 1.3, 1.4, 7).

Official code: palmdong/SMMCL @7b92db3, `SMMCL_LLRGBD/models/{builder,encoders/dual_segnext,
encode_modules,projector}.py`. Rewritten; attribute names are kept so that official checkpoints
(`epoch-N.pth`, key `model`) load with strict=True.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smmcl.losses import SMMCLLoss, SMMCLLossConfig
from smmcl.models.ham_head import LightHamHead
from smmcl.models.mscan import (
    MSCAN_VARIANTS,
    AttentionModule,
    PWConv,
    build_stages,
    init_weights,
    run_stage,
)


@dataclass(frozen=True)
class SegNeXtRGBXConfig:
    """Model hyper-parameters; defaults are the paper's (MSCAN-B, K=14, decoder 512 wide, NMF rank 64)."""

    arch: str = "mscan_b"
    num_classes: int = 14
    decoder_channels: int = 512
    ham_rank: int = 64
    proj_dim: int = 256
    drop_path_rate: float | None = None  # None: the variant's default (0.2 for mscan_b)
    # Speed options (no effect on the state_dict; logits equal the reference form within float rounding):
    fast: bool = True  # channels_last execution, NHWC NMF2D; False: the straightforward (official) form
    # Activation checkpointing: MSCAN stages (1..4) whose blocks recompute attention and MLP in backward
    # (less training memory, about one extra forward of those stages). () = off, the official behaviour.
    checkpoint_stages: tuple[int, ...] = ()


class SpatialCoes(nn.Module):
    """Shared spatial gate S (B,1,H,W) from [c;o]: three 1x1 convs with GELU, sigmoid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            PWConv(2 * dim, 2 * dim),
            nn.GELU(),
            PWConv(2 * dim, 2 * dim),
            nn.GELU(),
            PWConv(2 * dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x)


class ChannelCoes(nn.Module):
    """Shared channel gate G (B,C,1,1) from avg- and max-pooled [c;o]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            PWConv(4 * dim, 4 * dim),
            nn.GELU(),
            PWConv(4 * dim, 4 * dim),
            nn.GELU(),
            PWConv(4 * dim, dim),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)], dim=1)
        return self.encode(pooled)


class CrossModu(nn.Module):
    """Symmetric rectification: c' = c + 0.5*S*o + 0.5*G*o and o' likewise with the same S, G."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.Spatial = SpatialCoes(dim)
        self.Channel = ChannelCoes(dim)

    def forward(self, c: Tensor, o: Tensor) -> tuple[Tensor, Tensor]:
        cat = torch.cat([c, o], dim=1)
        gate = 0.5 * self.Spatial(cat) + 0.5 * self.Channel(cat)  # (B,C,H,W) by broadcasting
        return c + gate * o, o + gate * c


class FusionConv(nn.Module):
    """1x1 conv 2C -> C over [c';o'] (no norm, no activation)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fusion_conv = nn.Sequential(PWConv(2 * dim, dim))

    def forward(self, c: Tensor, o: Tensor) -> Tensor:
        return self.fusion_conv(torch.cat([c, o], dim=1))


class Projector(nn.Module):
    """conv-GELU-BN, conv-GELU-BN, conv: (B,C4,h,w) -> (B,proj_dim,h,w); no L2 norm (done in the loss)."""

    def __init__(self, dim: int, proj_dim: int = 256) -> None:
        super().__init__()
        self.project = nn.Sequential(
            PWConv(dim, dim),
            nn.GELU(),
            nn.BatchNorm2d(dim),
            PWConv(dim, dim),
            nn.GELU(),
            nn.BatchNorm2d(dim),
            PWConv(dim, proj_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.project(x)


class DualMSCAN(nn.Module):
    """Two MSCAN branches with per-stage CrossModu + FusionConv and the two contrastive projectors."""

    def __init__(self, cfg: SegNeXtRGBXConfig) -> None:
        super().__init__()
        mcfg = MSCAN_VARIANTS[cfg.arch]
        if cfg.drop_path_rate is not None:
            mcfg = type(mcfg)(mcfg.embed_dims, mcfg.depths, mcfg.mlp_ratios, cfg.drop_path_rate)
        self.dims = mcfg.embed_dims
        for suffix in ("", "_other"):
            embeds, blocks, norms = build_stages(mcfg)
            for i in range(4):
                setattr(self, f"patch_embed{suffix}{i + 1}", embeds[i])
                setattr(self, f"block{suffix}{i + 1}", blocks[i])
                setattr(self, f"norm{suffix}{i + 1}", norms[i])
        for i, dim in enumerate(self.dims):
            setattr(self, f"module{i + 1}", CrossModu(dim))
            setattr(self, f"fconv{i + 1}", FusionConv(dim))
        self.projector_color = Projector(self.dims[-1], cfg.proj_dim)
        self.projector_other = Projector(self.dims[-1], cfg.proj_dim)
        self.apply(init_weights)

    def forward(
        self, rgb: Tensor, aux: Tensor, *, project: bool = True, fast: bool = False
    ) -> tuple[list[Tensor], Tensor | None, Tensor | None]:
        """Fused stage outputs (stage 1 is None: unused by the decoder, spec 9.1 #4) and projections.

        fast: run in channels_last memory format (depthwise and strip convs are several times faster in
        oneDNN's NHWC kernels, and the 1x21 strips lose their 4x penalty); same arithmetic per output.
        """
        if fast:
            rgb = rgb.contiguous(memory_format=torch.channels_last)
            aux = aux.contiguous(memory_format=torch.channels_last)
        c, o = rgb, aux
        fused: list[Tensor | None] = []
        proj_c = proj_o = None
        for i in range(1, 5):
            c = run_stage(
                c,
                getattr(self, f"patch_embed{i}"),
                getattr(self, f"block{i}"),
                getattr(self, f"norm{i}"),
                fast=fast,
            )
            o = run_stage(
                o,
                getattr(self, f"patch_embed_other{i}"),
                getattr(self, f"block_other{i}"),
                getattr(self, f"norm_other{i}"),
                fast=fast,
            )
            if i == 4 and project:
                proj_c, proj_o = self.projector_color(c), self.projector_other(o)
            c, o = getattr(self, f"module{i}")(c, o)
            fused.append(getattr(self, f"fconv{i}")(c, o) if i > 1 or self.keep_fconv1 else None)
        return fused, proj_c, proj_o

    keep_fconv1: bool = False  # set True only to inspect the (unused) stage-1 fusion output

    def branches(self) -> nn.Module:
        """A view of both MSCAN branches (the same modules, not copies) whose state_dict keys are the
        backbone's own (`patch_embed1.*`, `block_other2.0.*`, ...): the target of the ImageNet weights."""
        view = nn.Module()
        for suffix in ("", "_other"):
            for i in range(1, 5):
                for part in ("patch_embed", "block", "norm"):
                    name = f"{part}{suffix}{i}"
                    view.add_module(name, getattr(self, name))
        return view


class SegNeXtRGBX(nn.Module):
    """Full SMMCL network: DualMSCAN + LightHamHead. forward(rgb, aux) -> logits (B,K,H,W)."""

    def __init__(self, cfg: SegNeXtRGBXConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = DualMSCAN(cfg)
        self.decode_head = LightHamHead(
            tuple(self.backbone.dims[1:]), cfg.num_classes, cfg.decoder_channels, cfg.ham_rank
        )
        self.criterion = SMMCLLoss(cfg.num_classes, SMMCLLossConfig())  # no parameters: keys unchanged
        self.freeze_layer_scale = False
        self.fast = False
        self.set_fast(cfg.fast)
        self.set_checkpoint_stages(cfg.checkpoint_stages)

    def set_checkpoint_stages(self, stages: tuple[int, ...]) -> SegNeXtRGBX:
        """Activation checkpointing for the blocks of the given MSCAN stages (both branches)."""
        if any(s not in (1, 2, 3, 4) for s in stages):
            raise ValueError(f"checkpoint_stages must be a subset of 1..4, got {stages}")
        for i in range(1, 5):
            for name in (f"block{i}", f"block_other{i}"):
                for blk in getattr(self.backbone, name):
                    blk.checkpoint = i in stages
        return self

    def set_fast(self, fast: bool) -> SegNeXtRGBX:
        """Switch between the optimised path and the straightforward (official-form) path."""
        self.fast = bool(fast)
        self.decode_head.hamburger.ham.fast = self.fast
        for m in self.modules():
            if isinstance(m, (PWConv, AttentionModule)):
                m.fast = self.fast
        return self

    def set_layer_scale_trainable(self, trainable: bool) -> None:
        """The official optimizer never updates layer_scale_* (spec 9.1 #3); False reproduces that."""
        self.freeze_layer_scale = not trainable
        for name, p in self.named_parameters():
            if "layer_scale" in name:
                p.requires_grad_(trainable)

    def param_groups(self, cfg: object = None) -> list[dict]:
        """Official `group_weight`: conv weights decay; biases and norm affine (and layer scales) do not."""
        decay, no_decay = [], []
        for module in self.modules():
            for pname, p in module.named_parameters(recurse=False):
                if not p.requires_grad:
                    continue
                if isinstance(module, (nn.Conv2d, nn.Linear)) and pname == "weight":
                    decay.append(p)
                else:
                    no_decay.append(p)
        return [
            {"params": decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        ]

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """batch rgb/aux (B,3,H,W), label (B,H,W) -> weighted loss terms (ce, cm, vis, aux)."""
        rgb, aux, label = batch["rgb"], batch["aux"], batch["label"]
        logits, pc, po = self.forward_features(rgb, aux, project=self.criterion.cfg.contrastive)
        logits = F.interpolate(logits, size=label.shape[1:], mode="bilinear", align_corners=False)
        return self.criterion(logits.contiguous(), label, pc, po)

    def forward_features(
        self, rgb: Tensor, aux: Tensor, *, project: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Logits at 1/8 and the stage-4 projections (None unless project)."""
        if rgb.shape != aux.shape or rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(
                f"rgb and aux must both be (B,3,H,W); got {tuple(rgb.shape)} and {tuple(aux.shape)}"
            )
        fused, pc, po = self.backbone(rgb, aux, project=project, fast=self.fast)
        return self.decode_head(fused[1:]), pc, po

    def forward(self, rgb: Tensor, aux: Tensor) -> Tensor:
        """(B,3,H,W) x2 normalised -> upsampled logits (B,K,H,W)."""
        logits, _, _ = self.forward_features(rgb, aux, project=False)
        return F.interpolate(logits, size=rgb.shape[2:], mode="bilinear", align_corners=False).contiguous()


def build_segnext_rgbx(cfg: SegNeXtRGBXConfig | None = None, **overrides) -> SegNeXtRGBX:
    """The SMMCL network; keyword `overrides` replace fields of `cfg` (default: the paper's MSCAN-B, K=14)."""
    cfg = cfg or SegNeXtRGBXConfig()
    return SegNeXtRGBX(replace(cfg, **overrides) if overrides else cfg)


_BRANCH = re.compile(r"^(patch_embed|block|norm)(\d)\.")
_MMSEG_DWCONV = re.compile(r"\.mlp\.dwconv\.(weight|bias)$")


def _both_branches(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        out[key] = value
        out[_BRANCH.sub(r"\1_other\2.", key)] = value
    return out


def remap_mscan_in1k(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """SegNeXt's ImageNet MSCAN file (one branch, SegNeXt naming) -> both branches of `DualMSCAN.branches()`.

    Pure, no I/O. The classification head `head.*` is dropped on purpose (unused by segmentation); every
    other key must be an MSCAN branch key and is copied into the RGB and the aux branch (spec 7.1: both
    branches start identical, as the official loader makes them). A file wrapped as {"state_dict": ...}
    is unwrapped (the spec leaves the wrapper of the release open).
    """
    if set(sd) == {"state_dict"} or ("state_dict" in sd and isinstance(sd["state_dict"], dict)):
        sd = sd["state_dict"]
    return _both_branches({k: v for k, v in sd.items() if not k.startswith("head.")})


def remap_mscan_in1k_mmseg(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """mmsegmentation's converted MSCAN file -> both branches: its `backbone.` prefix removed, `head.*`
    dropped, and `.mlp.dwconv.{weight,bias}` renamed to SegNeXt's `.mlp.dwconv.dwconv.*` (mmseg PR #2653)."""
    out = {}
    for key, value in sd.items():
        key = key[len("backbone.") :] if key.startswith("backbone.") else key
        if key.startswith("head."):
            continue
        out[_MMSEG_DWCONV.sub(r".mlp.dwconv.dwconv.\1", key)] = value
    return _both_branches(out)


def remap_official_smmcl(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The authors' `epoch-N.pth` "model" dict -> ours: identical names (kept on purpose), nothing dropped."""
    return dict(sd)
