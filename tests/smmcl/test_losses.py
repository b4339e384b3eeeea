"""SMMCL loss: golden tests A and B (spec 10.3/10.4), degenerate cases, contrast_groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from smmcl.losses import SMMCLLoss, SMMCLLossConfig, anchor_groups, contrast, downsample_labels


def test_golden_a_formula():
    torch.manual_seed(0)
    fc, fo = torch.randn(6, 256, 7), torch.randn(6, 256, 7)
    y = torch.tensor([0, 3, 3, 5, 7, 13])
    assert contrast(fc, fc, y, 0.1).item() == pytest.approx(3.705659866333008, abs=2e-6)
    assert contrast(fo, fo, y, 0.1).item() == pytest.approx(3.7030341625213623, abs=2e-6)
    assert contrast(fc, fo, y, 0.1).item() == pytest.approx(3.7271831035614014, abs=2e-6)


def _label_b() -> torch.Tensor:
    lab = torch.full((2, 480, 640), 255)
    lab[0, :240], lab[0, 240:] = 12, 5
    lab[0, 100:200, 100:300] = 1
    lab[1, :, :320], lab[1, :, 320:] = 3, 12
    lab[1, 300:, 500:] = 0
    return lab


def test_golden_b_sampling_and_forward():
    label = _label_b()
    torch.manual_seed(1)
    c = torch.randn(2, 256, 15, 20, requires_grad=True)
    o = torch.randn(2, 256, 15, 20, requires_grad=True)
    loss = SMMCLLoss(14)
    groups, views = anchor_groups(downsample_labels(label, (15, 20)), 14, loss.cfg)
    assert [g[1] for g in groups] == [1, 5, 12, 0, 3, 12] and views == 18
    torch.manual_seed(123)
    t = loss.contrastive_terms(label, c, o)
    assert t["cm"].item() == pytest.approx(4.627428, abs=2e-6)
    assert t["vis"].item() == pytest.approx(4.627282, abs=2e-6)
    assert t["aux"].item() == pytest.approx(4.627090, abs=2e-6)
    sum(t.values()).backward()
    assert c.grad.norm() > 0 and o.grad.norm() > 0


def test_formula_matches_loop_reference():
    """Hand-written per-anchor loop of spec 2.4 vs the vectorised form (cross-modal, with ties)."""
    torch.manual_seed(3)
    x, z = torch.randn(4, 8, 3), torch.randn(4, 8, 3)
    y = torch.tensor([2, 2, 4, 1])
    u = F.normalize(x.permute(0, 2, 1).reshape(12, 8), dim=1)
    a = F.normalize(z.permute(0, 2, 1).reshape(12, 8), dim=1)
    yy = y.repeat_interleave(3)
    total = 0.0
    for r in range(12):
        s = (u[r] @ a.T / 0.5).double()
        neg = sum(torch.exp(s[q]) for q in range(12) if yy[q] != yy[r])
        pos = [q for q in range(12) if yy[q] == yy[r] and q != r]
        total += -sum(s[q] - torch.log(torch.exp(s[q]) + neg) for q in pos) / max(len(pos), 1)
    assert contrast(x, z, y, 0.5).item() == pytest.approx(total.item() / 12, rel=1e-5)


def test_single_class_gives_zero():
    torch.manual_seed(0)
    f = torch.randn(3, 16, 5)
    assert abs(contrast(f, f, torch.tensor([4, 4, 4]), 0.1).item()) < 1e-6


def test_no_group_returns_connected_zero():
    c = torch.randn(1, 16, 4, 4, requires_grad=True)
    o = torch.randn(1, 16, 4, 4, requires_grad=True)
    logits = torch.randn(1, 3, 128, 128, requires_grad=True)
    label = torch.full((1, 128, 128), 255)
    label[0, :40, :40] = 1  # only 1-4 cells at 1/32: below min_views
    out = SMMCLLoss(3)(logits, label, c, o)
    assert out["cm"].item() == 0.0 and out["cm"].requires_grad
    sum(out.values()).backward()
    assert c.grad is not None and torch.count_nonzero(c.grad) == 0


def test_contrast_groups_average_per_chunk():
    torch.manual_seed(0)
    label = _label_b().repeat(2, 1, 1)
    logits = torch.randn(4, 14, 480, 640)
    c, o = torch.randn(4, 32, 15, 20), torch.randn(4, 32, 15, 20)
    grouped = SMMCLLoss(14, SMMCLLossConfig(contrast_groups=2))
    single = SMMCLLoss(14)
    torch.manual_seed(5)
    got = grouped(logits, label, c, o)
    torch.manual_seed(5)
    a = single(logits[:2], label[:2], c[:2], o[:2])
    b = single(logits[2:], label[2:], c[2:], o[2:])
    for k in ("ce", "cm", "vis", "aux"):
        assert got[k].item() == pytest.approx((a[k].item() + b[k].item()) / 2, rel=1e-6)
    ce = F.cross_entropy(logits, label, ignore_index=255)
    assert single(logits, label, None, None)["ce"].item() == pytest.approx(ce.item(), rel=1e-6)


def test_view_caps():
    cfg = SMMCLLossConfig(max_features_total=20)
    label = torch.zeros(1, 10, 10, dtype=torch.long)
    label[0, :5] = 1
    groups, views = anchor_groups(label, 2, cfg)
    assert len(groups) == 2 and views == 10
    groups, views = anchor_groups(label, 2, SMMCLLossConfig(max_views_per_class=7))
    assert views == 7
