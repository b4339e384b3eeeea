"""Point GCL: blocks, edge modes, GIN by hand, InfoNCE, aligned per-point features, learning."""

from __future__ import annotations

import math

import pytest
import torch

from smcl.scene.models.point_gcl import (
    GINLayer,
    PointGCL,
    PointGCLConfig,
    block_adjacency,
    info_nce,
    make_blocks,
)
from smcl.scene.pretrain import pretrain_point_gcl


def test_file_chunks_official_layout():
    pts = torch.randn(45, 3)
    b = make_blocks(pts, PointGCLConfig(blocks="file_chunks"))
    assert b.shape == (3, 20)
    assert torch.equal(b[0], torch.arange(20)) and torch.equal(b[2], torch.arange(25, 45))


def test_knn_blocks_centre_first_and_nearest():
    pts = torch.randn(200, 3)
    b = make_blocks(pts, PointGCLConfig(block_size=8))
    assert torch.equal(b[:, 0], torch.arange(200))
    ref = torch.cdist(pts, pts).topk(8, largest=False).indices
    assert torch.equal(b.sort(1).values, ref.sort(1).values)


def test_edge_modes():
    x = torch.zeros(1, 4, 3)
    a = block_adjacency(x, PointGCLConfig(edge_mode="compat_lower_triangular"))[0]
    assert a[0].sum() == 0 and a[3].sum() == 3 and a[1, 2] == 0  # node v hears only u < v
    s = block_adjacency(x, PointGCLConfig())[0]
    assert torch.equal(s, s.T) and s.sum() == 12


def test_gin_layer_by_hand():
    layer = GINLayer(1, 1)
    with torch.no_grad():
        layer.nn[0].weight.fill_(1.0)
        layer.nn[0].bias.zero_()
        layer.nn[2].weight.fill_(2.0)
        layer.nn[2].bias.fill_(1.0)
    x = torch.tensor([[[1.0], [2.0], [3.0]]])
    adj = torch.tensor([[[0.0, 1, 1], [1, 0, 0], [0, 0, 0]]])
    # node0: 1 + 2 + 3 = 6 -> 2*6+1 = 13; node1: 2 + 1 = 3 -> 7; node2: 3 -> 7
    assert torch.allclose(layer(x, adj), torch.tensor([[[13.0], [7.0], [7.0]]]))


def test_info_nce_hand_value():
    a = torch.eye(2)
    # cos sim = I; tau 0.5 -> logits [[2, 0], [0, 2]]
    expect = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert float(info_nce(a, a, 0.5)) == pytest.approx(expect, rel=1e-6)


def test_state_dict_keys_official():
    sd = PointGCL().state_dict()
    assert sd["encoder.layers.0.nn.0.weight"].shape == (32, 3)
    assert sd["encoder.layers.1.nn.2.weight"].shape == (32, 32)
    assert sd["encoder.project.0.weight"].shape == (64, 64)
    assert "encoder.batch_norms.1.running_var" in sd and "encoder.layers.0.eps" in sd


def test_point_features_aligned_with_order():
    torch.manual_seed(0)
    model = PointGCL()
    pts = torch.randn(300, 3)
    f = model.point_features(pts)
    perm = torch.randperm(300)
    f2 = model.point_features(pts[perm])
    assert f.shape == (300, 64)
    # features follow the points, not the file order (norm-scaled: GEMM rounding differs per CPU)
    assert float((f[perm] - f2).norm()) <= 1e-5 * float(f2.norm())
    assert f.std(0).mean() > 0  # not one tiled block


def test_pretraining_learns(one_thread):
    g = torch.Generator().manual_seed(0)
    # two kinds of local structure: a plane and a line, so blocks are distinguishable
    plane = torch.rand(150, 3, generator=g) * torch.tensor([1.0, 1.0, 0.0])
    line = torch.rand(150, 1, generator=g) * torch.tensor([[0.0, 0.0, 1.0]]) + 2
    pts = torch.cat([plane, line])
    blocks = make_blocks(pts, PointGCLConfig())

    def fixed_eval(m: PointGCL) -> float:  # same batches and augmentations for both models
        torch.manual_seed(123)
        with torch.no_grad():
            return sum(float(m.loss(pts[blocks[i : i + 32]])) for i in range(0, 288, 32)) / 9

    torch.manual_seed(0)
    untrained = PointGCL()  # pretrain_point_gcl seeds the same initialisation
    model, hist = pretrain_point_gcl(pts, epochs=8, batch_size=32, lr=3e-3)  # through common.engine
    assert len(hist) == 8
    assert all(math.isfinite(h) for h in hist)
    assert fixed_eval(model) < fixed_eval(untrained) - 0.1
