"""R-MSA: tiled top-k vs brute force, embedding widths, attention and compositing by hand."""

from __future__ import annotations

import math

import pytest
import torch

from smcl.scene.models.rmsa import (
    Embeddings,
    LayerNormUnbiased,
    ProximityAttention,
    RMSAConfig,
    attend,
    perpendicular_distance,
    posenc,
    topk_points_per_ray,
)


@pytest.mark.parametrize("form", ["direct", "expanded"])
def test_tiled_topk_matches_brute_force(form):
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(3000, 3, generator=g) * 2
    o = torch.randn(200, 3, generator=g) * 5
    d = torch.nn.functional.normalize(torch.randn(200, 3, generator=g), dim=-1)
    idx, dist = topk_points_per_ray(pts, o, d, 20, ray_chunk=64, point_chunk=333, form=form)
    ref_d, ref_i = perpendicular_distance(pts, o, d).topk(20, dim=1, largest=False)
    same = (idx.sort(1).values == ref_i.sort(1).values).all(1).float().mean()
    if form == "direct":
        assert torch.allclose(dist, ref_d, atol=1e-6)
        assert float(same) == 1.0
    else:  # cancellation may flip near-ties at the K-th place only
        assert float(same) > 0.9
        assert torch.allclose(dist[:, :10], ref_d[:, :10], atol=1e-4)


def test_perpendicular_distance_by_hand():
    # ray along +x from origin; point (3, 4, 0) is 4 away from the ray
    d = perpendicular_distance(
        torch.tensor([[3.0, 4.0, 0.0]]), torch.zeros(1, 3), torch.tensor([[1.0, 0, 0]])
    )
    assert float(d) == pytest.approx(4.0, abs=1e-5)


def test_embedding_widths():
    assert Embeddings(RMSAConfig()).dims == (117, 39, 142)
    assert Embeddings(RMSAConfig(num_freqs_k=4, num_freqs_q=4, num_freqs_v=4)).dims == (81, 27, 118)
    sd = ProximityAttention(RMSAConfig(v_skip_layer=5)).state_dict()
    assert sd["embed.embed_v.mlp.model.11.weight"].shape == (256, 256 + 142)
    assert sd["embed.embed_v.mlp.model.15.weight"].shape == (32, 256)
    assert sd["embed.embed_k.innorm.a_2"].shape == (117,)
    assert sd["attention_layer.w_k.weight"].shape == (256, 256)


def test_posenc_order():
    x = torch.tensor([0.5, 1.0, 2.0])
    e = posenc(x, 2)
    assert e.shape == (15,)
    assert torch.allclose(
        e[:5], torch.tensor([0.5, math.sin(0.5), math.cos(0.5), math.sin(1.0), math.cos(1.0)])
    )


def test_layernorm_unbiased():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(LayerNormUnbiased(3)(x), torch.tensor([[-1.0, 0.0, 1.0]]) / (1 + 1e-6), atol=1e-6)


def test_attend_hand_computed():
    scores = torch.tensor([[[0.0, math.log(3.0)]]])  # (R=1, H=1, K=2)
    values = torch.tensor([[[[1.0], [5.0]]]])
    feat, a_bkg, fg = attend(scores, values, bkg_score=0.0, normalize_topk=True)
    # softmax over [1, 3, 1]/5: bkg 0.2; foreground renormalised 1/4, 3/4
    assert float(a_bkg) == pytest.approx(0.2)
    assert torch.allclose(fg, torch.tensor([[[0.25, 0.75]]]))
    assert float(feat) == pytest.approx(0.25 * 1 + 0.75 * 5)
    feat2, _, fg2 = attend(scores, values, 0.0, normalize_topk=False)
    assert float(feat2) == pytest.approx(0.2 * 1 + 0.6 * 5)


def test_multihead_shapes_and_zero_influence_uniform():
    torch.manual_seed(0)
    for heads in (1, 4):
        attn = ProximityAttention(RMSAConfig(num_heads=heads))
        r, k = 5, 20
        feat, a_bkg = attn(
            torch.randn(r, k, 3),
            torch.randn(r, k, 64),
            torch.zeros(r, k),
            torch.zeros(r, 3),
            torch.randn(r, 3),
            5.0,
        )
        assert feat.shape == (r, 32) and a_bkg.shape == (r, 1)
        # influence 0 -> all scores 0 -> a_bkg = e^5 / (20 + e^5)
        assert torch.allclose(a_bkg, torch.full((r, 1), math.exp(5) / (20 + math.exp(5))), atol=1e-6)
