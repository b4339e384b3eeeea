"""Scene model: cube init, compositing, pruning/growth invariants with optimiser surgery, schedules, learning."""

from __future__ import annotations

import math

import pytest
import torch

from smcl.scene.models.rmsa import RMSAConfig
from smcl.scene.models.scene_model import SceneModel, SceneModelConfig, init_points, lr_lambda, param_groups
from smcl.scene.models.unet import SmallUNet

SMALL = SceneModelConfig(
    rmsa=RMSAConfig(hidden=32, d_model=32, kq_layers=2, v_layers=2), unet_width=8, select_k=4
)
LRS = dict(points=1e-3, attn=1e-3, influ=1e-2, feats=1e-3, unet=1e-3)


def test_cube_init():
    p = init_points(SceneModelConfig(init_type="cube", init_scale=1.2, coord_scale=10))
    assert p.shape == (10000, 3)
    assert float(p.abs().max()) <= 12.0 + 1e-5
    assert torch.unique(p[:9261, 0]).numel() == 21


def test_unet_shapes_and_keys():
    sd = SmallUNet().state_dict()
    assert sd["up1.up.weight"].shape == (512, 256, 2, 2)
    assert sd["up2.conv.double_conv.0.weight"].shape == (128, 256, 3, 3)
    assert sd["outc.conv.weight"].shape == (3, 128, 1, 1)
    torch.manual_seed(0)
    net, x = SmallUNet(width=4), torch.randn(1, 32, 6, 10)
    out = net(x)  # any size: edge-padded to 8x12 and cropped back
    assert out.shape == (1, 3, 6, 10)
    padded = torch.nn.functional.pad(x, [0, 2, 0, 2], mode="replicate")
    assert torch.equal(out, net(padded)[..., :6, :10])


def _model(n=200, seed=0):
    torch.manual_seed(seed)
    m = SceneModel(SMALL, torch.randn(n, 3))
    opt = torch.optim.Adam(param_groups(m, LRS))
    return m, opt


def _batch(step=1):
    o = torch.zeros(8, 8, 3)
    o[..., 2] = 5.0
    d = torch.nn.functional.normalize(torch.randn(8, 8, 3) * 0.1 + torch.tensor([0, 0, -1.0]), dim=-1)
    return {"rays_o": o, "rays_d": d, "rgb": torch.full((8, 8, 3), 0.3), "step": torch.tensor(step)}


def test_background_compositing_with_zero_influence():
    m, _ = _model()
    out = m(_batch()["rays_o"], _batch()["rays_d"])
    a = math.exp(5) / (4 + math.exp(5))
    assert torch.allclose(out["a_bkg"], torch.full_like(out["a_bkg"], a), atol=1e-6)
    with torch.no_grad():  # zero UNet output -> colour = white * a_bkg
        for p in m.renderer.parameters():
            p.zero_()
    assert torch.allclose(
        m(_batch()["rays_o"], _batch()["rays_d"])["rgb"], torch.full((8, 8, 3), a), atol=1e-6
    )


def test_prune_and_add_keep_rows_and_adam_state_aligned():
    m, opt = _model()
    sum(m.training_step(_batch()).values()).backward()
    opt.step()
    with torch.no_grad():
        m.points_influ_scores[:] = torch.linspace(-1, 1, 200)[:, None]
    before_pts = m.points.detach().clone()
    before_m = opt.state[m.points]["exp_avg"].clone()
    removed = m.prune(0.0, opt)
    keep = torch.linspace(-1, 1, 200) > 0
    assert removed == int((~keep).sum())
    assert torch.equal(m.points.detach(), before_pts[keep])
    assert torch.equal(opt.state[m.points]["exp_avg"], before_m[keep])
    n0 = m.points.shape[0]
    added = m.add_points(30, seed=0, optimizer=opt)
    assert added == 30 and m.points.shape[0] == n0 + 30
    assert m.pc_feats.shape[0] == m.points_influ_scores.shape[0] == n0 + 30
    assert torch.equal(opt.state[m.points]["exp_avg"][n0:], torch.zeros(30, 3))
    # new points are convex combinations: inside the bounding box of the old ones
    lo, hi = before_pts[keep].min(0).values, before_pts[keep].max(0).values
    assert ((m.points[n0:] >= lo - 1e-5) & (m.points[n0:] <= hi + 1e-5)).all()
    assert any(p is m.points for g in opt.param_groups for p in g["params"])
    sum(m.training_step(_batch()).values()).backward()  # training continues after the edit
    opt.step()


def test_add_capped_unless_compat():
    m, _ = _model()
    object.__setattr__(m, "cfg", SceneModelConfig(**{**SMALL.__dict__, "max_num_pts": 210}))
    assert m.add_points(50, seed=0) == 10 and m.points.shape[0] == 210
    object.__setattr__(
        m, "cfg", SceneModelConfig(**{**SMALL.__dict__, "max_num_pts": 215, "compat_uncapped_add": True})
    )
    assert m.add_points(50, seed=0) == 50 and m.points.shape[0] == 260  # below the cap: all added
    assert m.add_points(50, seed=0) == 0  # at or above it: none (official gate)


def test_schedule_prunes_then_adds():
    cfg = SceneModelConfig(
        **{
            **SMALL.__dict__,
            "prune_start": 10,
            "prune_every": 5,
            "add_start": 10,
            "add_every": 10,
            "add_num": 7,
        }
    )
    torch.manual_seed(0)
    m = SceneModel(cfg, torch.randn(100, 3))
    assert m.update_points(9) is False
    assert m.points.shape[0] == 100  # nothing before prune_start
    assert not m.pruned_before(9) and m.pruned_before(10) and m.pruned_before(11)
    with torch.no_grad():
        m.points_influ_scores[:50] = 1.0
    old = m.points
    assert m.update_points(10) is True  # prune (50 kept) then add 7, Parameters replaced
    assert m.points.shape[0] == 57 and m.points is not old
    assert m.update_points(15) is False  # new points mix scores 1.0: all kept; growth only every 10
    with torch.no_grad():
        m.points_influ_scores[50:] = -1.0
    assert m.update_points(15) is True and m.points.shape[0] == 50  # the 7 pruned, nothing added
    assert m.update_points(20) is True and m.points.shape[0] == 57  # none pruned, 7 added


def test_load_state_dict_resizes_points():
    """A state dict of another point count loads (pre-hook), also through the strict loader."""
    from common.checkpoint import load_state_dict_strict

    torch.manual_seed(0)
    src = SceneModel(SMALL, torch.randn(37, 3), torch.randn(37, SMALL.rmsa.d_feat))
    with torch.no_grad():
        src.points_influ_scores.normal_()
    dst = SceneModel(SMALL, torch.randn(5, 3))
    load_state_dict_strict(dst, src.state_dict(), source="test")
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    assert isinstance(dst.points, torch.nn.Parameter) and dst.points.shape == (37, 3)
    lego = SceneModelConfig(prune_steps=(40000,), prune_thresholds=(0.0, 0.2))
    mm = SceneModel(lego, torch.randn(30, 3))
    assert mm.prune_threshold(40000) == 0.0 and mm.prune_threshold(40001) == 0.2


def test_lr_schedules():
    f = lr_lambda("cosine_half", 10, 110)
    assert f(0) == pytest.approx(1e-16) and f(5) == pytest.approx(0.5)
    assert f(10) == pytest.approx(1.0) and f(110) == pytest.approx(0.5, abs=1e-9)
    assert lr_lambda("cosine", 0, 100)(100) == pytest.approx(0.0, abs=1e-12)


def test_renderer_learns_a_colour(one_thread):
    m, opt = _model(n=100)
    losses = []
    for step in range(40):
        loss = sum(m.training_step(_batch(step)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]


def test_sphere_init_fibonacci():
    p = init_points(SceneModelConfig(init_type="sphere", init_num=500, init_scale=1.2, coord_scale=10))
    assert p.shape == (500, 3)
    r = p.norm(dim=-1)
    assert torch.allclose(r, torch.full_like(r, 12.0), atol=1e-4)  # on the sphere of radius s
    # Fibonacci lattice: z uniformly spaced in (-s, s), so nearly uniform coverage of the sphere
    z = p[:, 2].sort().values / 12.0
    assert torch.allclose(z, torch.linspace(-1 + 1 / 500, 1 - 1 / 500, 500), atol=1e-4)
    assert abs(float(p.mean(0).norm())) < 0.2  # balanced around the centre
    with pytest.raises(ValueError, match="init_type"):
        init_points(SceneModelConfig(init_type="torus"))
