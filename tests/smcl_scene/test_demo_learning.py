"""Learning on a synthetic NeRF-Synthetic-layout scene (the demo's pipeline, shortened to seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("common.synthetic")

from common.synthetic import write_nerf_synthetic  # noqa: E402
from smcl.scene.data import load_blender  # noqa: E402
from smcl.scene.experiment import SceneDataConfig, view_rays  # noqa: E402
from smcl.scene.models.rmsa import RMSAConfig  # noqa: E402
from smcl.scene.models.scene_model import SceneModel, SceneModelConfig, param_groups  # noqa: E402
from smcl.scene.points import prepare_points  # noqa: E402


def _mse(model, scene, rays):
    with torch.no_grad():
        return float(
            np.mean(
                [
                    (model(o, d)["rgb"].clamp(0, 1) - img).square().mean()
                    for (o, d), img in zip(rays, scene.images)
                ]
            )
        )


def test_renderer_learns_synthetic_scene(tmp_path, one_thread):
    torch.manual_seed(0)
    root = write_nerf_synthetic(
        tmp_path / "scene", n_train=8, n_val=1, n_test=1, size=16, n_points=1500, seed=0
    )
    pts = prepare_points(root / "points3d.ply", tmp_path / "pts.npy", n=600)
    train = load_blender(root, "train")
    dc = SceneDataConfig(format="blender", root=str(root))
    rays = [view_rays(train, i, dc, 10.0) for i in range(len(train.names))]
    cfg = SceneModelConfig(
        rmsa=RMSAConfig(hidden=32, d_model=32, kq_layers=2, v_layers=3), unet_width=16, select_k=8
    )
    model = SceneModel(cfg, torch.from_numpy(pts) * 10.0)
    opt = torch.optim.Adam(
        param_groups(model, dict(points=1e-3, attn=1e-3, influ=1e-2, feats=1e-3, unet=3e-3))
    )
    before = _mse(model, train, rays)
    mean_img = train.images.mean(0)
    baseline = float((train.images - mean_img).square().mean())
    for step in range(160):
        i = step % len(rays)
        loss = (model(*rays[i])["rgb"] - train.images[i]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _mse(model, train, rays)
    assert after < 0.5 * before  # at least +3 dB on the training views
    assert after < baseline  # and better than predicting the mean training image
