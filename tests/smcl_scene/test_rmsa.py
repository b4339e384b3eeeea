"""R-MSA: tiled top-k vs brute force, embedding widths, attention and compositing by hand."""

from __future__ import annotations

import copy
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


def assert_close(a, b, rtol, what=""):
    """Norm-scaled comparison: ||a - b|| <= rtol ||b|| (never per element on long sums, whose rounding
    depends on the CPU's GEMM blocking: AMX / AVX-512 / AVX2, and on the thread count)."""
    a, b = a.double(), b.double()
    err, ref = float((a - b).norm()), float(b.norm())
    assert err <= rtol * ref + 1e-12, f"{what}: relative error {err / max(ref, 1e-30):.2e} > {rtol:.0e}"


def assert_same_selection(pts, o, d, idx, k):
    """The selected points are K nearest to each ray: their float64 distances equal the float64 top-K
    (tie-robust: a swap of two points at the same distance within rounding is not a failure)."""
    p64, o64, d64 = pts.double(), o.double(), d.double()
    ref = perpendicular_distance(p64, o64, d64).topk(k, dim=1, largest=False).values.sort(1).values
    v = p64[idx] - o64[:, None]
    t = (v * d64[:, None]).sum(-1, keepdim=True) / ((d64 * d64).sum(-1)[:, None, None] + 1e-6)
    got = (v - t * d64[:, None]).norm(dim=-1).sort(1).values
    assert float((got - ref).abs().max()) <= 1e-5 * float(ref.abs().max()), (
        "a selected point is not among the K nearest"
    )


@pytest.mark.parametrize("form", ["direct", "expanded"])
def test_tiled_topk_matches_brute_force(form):
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(3000, 3, generator=g) * 2
    o = torch.randn(200, 3, generator=g) * 5
    d = torch.nn.functional.normalize(torch.randn(200, 3, generator=g), dim=-1)
    idx, dist = topk_points_per_ray(pts, o, d, 20, ray_chunk=64, point_chunk=333, form=form)
    assert_same_selection(pts, o, d, idx, 20)
    ref_d = perpendicular_distance(pts.double(), o.double(), d.double()).topk(20, dim=1, largest=False).values
    assert dist.dtype == torch.float32
    assert_close(dist, ref_d, 1e-6, "distances")  # fp32 rounding only


def _scaled_scene(m, r, seed=0):
    """Points in a x10-scaled object (radius ~15), cameras at distance 40 looking at it (spec 4.3)."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(m, 3, generator=g) * 5
    o = torch.nn.functional.normalize(torch.randn(r, 3, generator=g), dim=-1) * 40
    d = torch.nn.functional.normalize(-o + torch.randn(r, 3, generator=g) * 3, dim=-1)
    return pts, o, d


def test_expanded_selection_equals_direct_on_scaled_scene():
    # without the candidate margin the expanded form flips near-ties on several % of these rays
    pts, o, d = _scaled_scene(12000, 600)
    ref_d, ref_i = perpendicular_distance(pts, o, d).topk(20, dim=1, largest=False)
    no_margin, _ = topk_points_per_ray(pts, o, d, 20, form="expanded", margin=0)
    idx, dist = topk_points_per_ray(pts, o, d, 20, form="expanded")
    same = lambda a: (a.sort(1).values == ref_i.sort(1).values).all(1).float().mean()  # noqa: E731
    assert float(same(no_margin)) < 0.99  # the cancellation problem is real at this scale
    assert_same_selection(pts, o, d, idx, 20)  # with the margin: the K nearest (ties within rounding aside)
    assert_close(dist, ref_d.sort(1).values, 1e-6, "distances")


def test_topk_ignores_autocast():
    pts, o, d = _scaled_scene(4000, 100)
    ref = topk_points_per_ray(pts, o, d, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = topk_points_per_ray(pts, o, d, 20)
    assert torch.equal(out[0], ref[0]) and out[1].dtype == torch.float32


def test_topk_distance_in_full_fp32_under_reduced_matmul_precision():
    """set_float32_matmul_precision("medium") lets oneDNN run fp32 matmuls in bf16 on AMX CPUs (TF32 on
    CUDA): the expanded-form distances must still be full fp32, and the global policy is restored."""
    from smcl.scene.models.rmsa import full_fp32_matmul

    pts, o, d = _scaled_scene(4000, 100)
    ref = topk_points_per_ray(pts, o, d, 20, form="expanded", margin=0)
    prev = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = topk_points_per_ray(pts, o, d, 20, form="expanded", margin=0)
        assert torch.get_float32_matmul_precision() == "medium"  # restored after the call
        with full_fp32_matmul():
            a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
            err = float(((a @ a).double() - a.double() @ a.double()).abs().max())
    finally:
        torch.set_float32_matmul_precision(prev)
    assert err < 1e-3  # bf16 products would be off by ~0.1
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_topk_chunks_per_device():
    from smcl.scene.models.rmsa import TOPK_CHUNKS, topk_chunks

    assert topk_chunks("cpu") == TOPK_CHUNKS["cpu"] == (256, 8192)
    assert topk_chunks(torch.device("cuda", 0)) == TOPK_CHUNKS["cuda"]
    assert TOPK_CHUNKS["cuda"][0] > TOPK_CHUNKS["cpu"][0]
    assert topk_chunks("cuda", 64, 128) == (64, 128)  # explicit sizes win


@pytest.mark.parametrize(
    "cfg",
    [
        RMSAConfig(chunk_rays=7),
        RMSAConfig(num_heads=4, act="leakyrelu", v_skip_layer=5, chunk_rays=16, hidden=64, d_model=64),
        RMSAConfig(num_freqs_k=4, num_freqs_q=4, num_freqs_v=3, hidden=64, d_model=64),
    ],
)
def test_fused_attention_equals_reference(cfg):
    torch.manual_seed(0)
    attn = ProximityAttention(cfg)
    with torch.no_grad():  # non-trivial norms and biases
        for prm in attn.parameters():
            prm.add_(torch.randn_like(prm) * 0.1)
    pts, o, d = _scaled_scene(500, 40)
    idx, _ = topk_points_per_ray(pts, o, d, 20)
    p = pts[idx].requires_grad_()
    f = torch.randn(40, 20, 64).requires_grad_()
    infl = torch.rand(40, 20).requires_grad_()
    # 1) algebra: in float64 the fused path equals the straightforward form to rounding (1e-10)
    # 2) fp32: the fused path against the fp32 straightforward form, norm-scaled (per-element checks on
    #    sums of thousands of products fail on CPUs whose GEMM blocks differently, e.g. AMX)
    attn64 = copy.deepcopy(attn).double()
    x64 = [t.detach().double().requires_grad_() for t in (p, f, infl)]
    w = torch.randn(40, cfg.d_value, dtype=torch.float64)
    names = ["points", "features", "influence", *(n for n, _ in attn.named_parameters())]
    for module, xs, params, rtol_out, rtol_grad in (
        (attn64, x64, list(attn64.parameters()), 1e-10, 1e-9),
        (attn, [p, f, infl], list(attn.parameters()), 1e-5, 1e-4),
    ):
        dt = xs[0].dtype
        args = (*xs, o.to(dt), d.to(dt), 3.0)
        ref = module.forward_reference(*args)
        out = module(*args)
        for name, a, b in zip(("features", "a_bkg"), out, ref):
            assert_close(a, b, rtol_out, f"{dt} {name}")
        # gradients agree too (points, features, influence, weights)
        g_ref = torch.autograd.grad((ref[0] * w.to(dt)).sum() + ref[1].sum(), [*xs, *params])
        g_out = torch.autograd.grad((out[0] * w.to(dt)).sum() + out[1].sum(), [*xs, *params])
        for name, a, b in zip(names, g_out, g_ref):
            assert_close(a, b, rtol_grad, f"{dt} grad {name}")


def test_checkpointed_blocks_same_gradients():
    torch.manual_seed(0)
    cfg = RMSAConfig(hidden=32, d_model=32, kq_layers=2, v_layers=3)
    plain = ProximityAttention(cfg)
    ckpt = ProximityAttention(RMSAConfig(**{**cfg.__dict__, "ckpt_rays": 16, "ckpt_min_rays": 20}))
    ckpt.load_state_dict(plain.state_dict())
    pts, o, d = _scaled_scene(300, 50)
    idx, _ = topk_points_per_ray(pts, o, d, 8)
    grads = []
    for m in (plain, ckpt):
        p = pts[idx].requires_grad_()
        feat, a_bkg = m(p, torch.zeros(50, 8, 64), torch.ones(50, 8), o, d, 5.0)
        (feat.square().sum() + a_bkg.sum()).backward()
        grads.append([p.grad, *(q.grad for q in m.parameters())])
    for a, b in zip(*grads):  # the same function in different ray blocks: rounding only
        assert_close(a, b, 1e-5, "gradient")


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
