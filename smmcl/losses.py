"""SMMCL objective: pixel CE (ignore 255) + weighted cross-modal, intra-RGB and intra-aux contrast.

Spec section 2 (official `SMMCL_LLRGBD/models/smmcl_loss.py`, itself derived from MSCSCL's
DenseContrastiveLossV2). Rewritten with the official sampling order, so that golden values match, and with
the fixes of spec 9.1: device-agnostic, zero loss (connected to the graph) when no anchor group exists,
labels resized to the exact feature shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SMMCLLossConfig:
    """Loss settings; defaults are the official LLRGBD config."""

    ignore_index: int = 255
    temperature: float = 0.1
    cm_temperature: float = 0.1
    weight_cm: float = 0.2
    weight_vis: float = 0.2
    weight_aux: float = 0.2
    min_views_per_class: int = 5
    max_views_per_class: int = 300
    max_features_total: int = 4800
    contrast_groups: int = 1  # 4 emulates the official DataParallel run over 4 GPUs (spec 2.7)
    contrastive: bool = True  # False: CE only (the paper's "Base" ablation)


def downsample_labels(label: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest resize (B,H,W) -> (B,h,w); equals the official top-left pick when H/h, W/w are integers."""
    return F.interpolate(label[:, None].float(), size=size, mode="nearest")[:, 0].long()


def anchor_groups(
    label_ds: Tensor, num_classes: int, cfg: SMMCLLossConfig
) -> tuple[list[tuple[int, int, Tensor]], int]:
    """(image, class, raster cell indices) for every group with >= min_views cells, image-major, and V.

    The labels are brought to the CPU once (one host sync per call, whatever the device); the groups and
    their CPU index tensors are then found there, so no per-(image, class) device round trip happens.
    """
    groups = []
    flat = label_ds.reshape(label_ds.shape[0], -1).cpu()
    for b in range(flat.shape[0]):
        for k in range(num_classes):
            idx = torch.nonzero(flat[b] == k).flatten()
            if idx.numel() >= cfg.min_views_per_class:
                groups.append((b, k, idx))
    if not groups:
        return groups, 0
    views = min(g[2].numel() for g in groups)
    if cfg.max_views_per_class != 1:
        views = min(views, cfg.max_views_per_class)
    if views * len(groups) > cfg.max_features_total:
        views = cfg.max_features_total // len(groups)
    return groups, views


def sample_indices(groups: list[tuple[int, int, Tensor]], views: int) -> tuple[Tensor, Tensor]:
    """V random cells per group (one CPU randperm per group, in group order, as the official code draws).

    Returns CPU tensors: image index (T,) and cell indices (T, V).
    """
    picks = [idx[torch.randperm(idx.numel())[:views]] for _, _, idx in groups]
    return torch.tensor([g[0] for g in groups]), torch.stack(picks)


def gather_features(feats: Tensor, images: Tensor, cells: Tensor) -> Tensor:
    """feats (B,C,h,w), images (T,), cells (T,V) -> (T,C,V) in one gather (indices moved in one copy)."""
    flat = feats.reshape(feats.shape[0], feats.shape[1], -1)
    images, cells = images.to(feats.device, non_blocking=True), cells.to(feats.device, non_blocking=True)
    return flat[images[:, None], :, cells].permute(0, 2, 1)


def sample_features(feats: Tensor, groups: list[tuple[int, int, Tensor]], views: int) -> Tensor:
    """Gather V random cells per group (CPU randperm per group, in order) -> (T, C, V)."""
    return gather_features(feats, *sample_indices(groups, views))


def contrast(anchors: Tensor, contrasts: Tensor, labels: Tensor, tau: float) -> Tensor:
    """MSCSCL per-positive InfoNCE. anchors/contrasts (T,C,V), labels (T,) -> scalar (spec 2.4)."""
    t, c, v = anchors.shape
    x = F.normalize(anchors.float().permute(0, 2, 1).reshape(t * v, c), dim=1)
    z = F.normalize(contrasts.float().permute(0, 2, 1).reshape(t * v, c), dim=1)
    y = labels.repeat_interleave(v)
    with torch.autocast(x.device.type, enabled=False):  # fp32 even in bf16 training: exp(10) logits
        sim = x @ z.T / tau
    same = y[:, None] == y[None, :]
    pos = same & ~torch.eye(t * v, dtype=torch.bool, device=x.device)
    exp = sim.exp()
    neg_sum = (exp * (~same)).sum(dim=1, keepdim=True)
    log_prob = sim - torch.log(exp + neg_sum)
    per_anchor = -(log_prob * pos).sum(dim=1) / pos.sum(dim=1).clamp(min=1)
    return per_anchor.mean()


class SMMCLLoss(nn.Module):
    """CE + w_cm*L_cm + w_vis*L_vis + w_aux*L_aux; forward returns the weighted terms as a dict."""

    def __init__(self, num_classes: int, cfg: SMMCLLossConfig | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cfg = cfg or SMMCLLossConfig()

    def contrastive_terms(self, label: Tensor, color_fea: Tensor, other_fea: Tensor) -> dict[str, Tensor]:
        """Unweighted (cm, vis, aux) losses for one group of images; zeros (with graph) if no group."""
        cfg = self.cfg
        label_ds = downsample_labels(label, color_fea.shape[2:])
        groups, views = anchor_groups(label_ds, self.num_classes, cfg)
        if not groups:
            zero = (color_fea.sum() + other_fea.sum()) * 0.0
            return {"cm": zero, "vis": zero, "aux": zero}
        cls = torch.tensor([g[1] for g in groups]).to(color_fea.device, non_blocking=True)
        fc = sample_features(color_fea, groups, views)
        fo = sample_features(other_fea, groups, views)
        return {
            "cm": contrast(fc, fo, cls, cfg.cm_temperature),
            "vis": contrast(fc, fc, cls, cfg.temperature),
            "aux": contrast(fo, fo, cls, cfg.temperature),
        }

    def forward(
        self, logits: Tensor, label: Tensor, color_fea: Tensor | None, other_fea: Tensor | None
    ) -> dict[str, Tensor]:
        """logits (B,K,H,W) at label size, label (B,H,W) long, projections (B,D,h,w) -> named weighted losses."""
        cfg = self.cfg
        n = min(cfg.contrast_groups, label.shape[0])
        chunks = list(zip(logits.float().chunk(n), label.chunk(n)))
        ce = torch.stack([F.cross_entropy(lg, lb, ignore_index=cfg.ignore_index) for lg, lb in chunks]).mean()
        out = {"ce": ce}
        if not cfg.contrastive or color_fea is None or other_fea is None:
            return out
        terms = [
            self.contrastive_terms(lb, c, o)
            for lb, c, o in zip(label.chunk(n), color_fea.chunk(n), other_fea.chunk(n))
        ]
        for name, w in (("cm", cfg.weight_cm), ("vis", cfg.weight_vis), ("aux", cfg.weight_aux)):
            out[name] = w * torch.stack([t[name] for t in terms]).mean()
        return out
