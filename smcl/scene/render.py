"""Rendering whole views and camera paths with a trained scene model (no reference needed).

`render_trajectory(model, c2ws, H, W, K)` renders a camera path, e.g. from `common.trajectories`
(orbit / spiral / interpolate around the scene's cameras), as uint8 frames ready for
`common.viz.save_video` / `save_gif` or a no-reference quality model such as NVS-SQA.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from common.rays import get_rays
from common.viz import to_uint8
from smcl.scene.models.scene_model import SceneModel


def camera_rays(c2w: Tensor, h: int, w: int, K: Tensor, coord_scale: float) -> tuple[Tensor, Tensor]:
    """PAPR-convention rays of one OpenGL camera-to-world pose (4, 4) in unscaled scene units: pixel
    centres at +0.5, principal point K[0, 2], K[1, 2]; unit directions; origins times coord_scale.
    -> origins, directions (H, W, 3)."""
    o, d = get_rays(h, w, K.float(), c2w.float(), pixel_center=True, convention="opengl")
    return (o * coord_scale).contiguous(), d / d.norm(dim=-1, keepdim=True)


@torch.no_grad()
def render_rays(model: SceneModel, rays_o: Tensor, rays_d: Tensor, tile: int | None = None) -> Tensor:
    """(H, W, 3) in [0, 1] (clamped, as at test time), on the CPU; rays moved to the model's device."""
    dev = model.points.device
    tile = tile or model.render_tile
    return model(rays_o.to(dev), rays_d.to(dev), tile=tile)["rgb"].clamp(0, 1).float().cpu()


@torch.no_grad()
def render_trajectory(
    model: SceneModel,
    c2ws: Tensor,
    H: int,
    W: int,
    K: Tensor,
    *,
    tile: int | None = None,
) -> np.ndarray:
    """Render a camera path with the scene model.

    c2ws: (T, 4, 4) OpenGL camera-to-world poses in the scene's own (unscaled) units, as the loaders
    give them (`SceneData.c2w`); K: (3, 3) pinhole intrinsics in pixels for an H x W image (build it
    with `common.cameras.intrinsics_matrix(fx, fy, W / 2, H / 2)` for the official image-centre
    convention). The model's `coord_scale` is applied here. `tile`: rays per attention tile (default
    `model.render_tile`). Returns (T, H, W, 3) uint8 frames (nearest rounding, common.viz.to_uint8).
    """
    if c2ws.ndim != 3 or c2ws.shape[1:] != (4, 4):
        raise ValueError(f"c2ws must be (T, 4, 4) camera-to-world poses, got {tuple(c2ws.shape)}")
    was = model.training
    model.eval()
    try:
        frames = [
            to_uint8(render_rays(model, *camera_rays(c, H, W, K, model.cfg.coord_scale), tile=tile))
            for c in c2ws
        ]
    finally:
        model.train(was)
    return np.stack(frames) if frames else np.zeros((0, H, W, 3), np.uint8)
