"""Rendering with the object-level view synthesizer: dataset views and novel camera paths (spec smcl.md 1.2).

:func:`render_trajectory` renders any camera path (e.g. ``common.trajectories.orbit_around_pose`` around a
source view, as pixelNeRF's video script does) conditioned on one or more source views; it is what
``scripts/render_smcl.py`` and the NVS-SQA no-reference column use.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from common.viz import to_uint8
from smcl.object.data.nmr import NMR_FAR, NMR_NEAR, pixelnerf_rays
from smcl.object.models.view_synthesizer import ViewSynthesizer


def _device(model: ViewSynthesizer) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def render_rgb(
    model: ViewSynthesizer,
    source_images: Tensor,
    source_poses: Tensor,
    focal: float | Tensor,
    c2ws: Tensor,
    height: int,
    width: int,
    *,
    c: Tensor | None = None,
    near: float = NMR_NEAR,
    far: float = NMR_FAR,
    chunk_points: int | None = None,
) -> Tensor:
    """Fine RGB of the cameras `c2ws` (T, 4, 4) -> (T, 3, H, W) float in [0, 1], on the CPU.

    source_images (NS, 3, S, S) in [0, 1] and source_poses (NS, 4, 4) camera->world condition the model;
    all poses are OpenGL-camera, z-up-world as the loaders return them; focal in pixels; c the principal
    point (default (W/2, H/2), pixelNeRF's integer-pixel convention; the loaders' `c` keeps theirs).
    """
    if source_images.ndim == 3:
        source_images, source_poses = source_images[None], source_poses[None]
    if c2ws.ndim != 3 or c2ws.shape[-2:] != (4, 4):
        raise ValueError(f"c2ws must be (T, 4, 4) camera->world matrices, got {tuple(c2ws.shape)}")
    model.eval()
    dev = _device(model)
    c = torch.tensor([width / 2.0, height / 2.0]) if c is None else torch.as_tensor(c)
    cond = model.encode(source_images[None].to(dev), source_poses[None].float().to(dev))
    out = []
    for pose in c2ws.float():
        rays = pixelnerf_rays(pose.cpu(), focal, c, height, width, float(near), float(far))
        res = model.render_chunked(cond, rays.reshape(1, -1, 8).to(dev), chunk_points=chunk_points)
        rgb = res.get("rgb_fine", res["rgb_coarse"])
        out.append(rgb.view(height, width, 3).permute(2, 0, 1).clamp(0, 1).cpu())
    return torch.stack(out)


def render_trajectory(
    model: ViewSynthesizer,
    source_images: Tensor,
    source_poses: Tensor,
    focal: float | Tensor,
    c2ws: Tensor,
    height: int,
    width: int,
    *,
    c: Tensor | None = None,
    near: float = NMR_NEAR,
    far: float = NMR_FAR,
    chunk_points: int | None = None,
    rounding: str = "nearest",
) -> np.ndarray:
    """Render a novel camera path: (T, H, W, 3) uint8 frames, in the order of `c2ws`.

    Arguments as :func:`render_rgb`; `rounding` is common.viz.to_uint8's ("floor" reproduces the 8-bit
    PNGs of the official evaluation). Example, a 30-frame orbit around source view 0 of an NMR object::

        obj = NMRDataset(cfg)[0]
        path = common.trajectories.orbit_around_pose(obj["poses"][0], 30, radius_deg=15)
        frames = render_trajectory(model, obj["images"][:1], obj["poses"][:1], obj["focal"], path,
                                   64, 64, c=obj["c"], near=obj["near"], far=obj["far"])
    """
    rgb = render_rgb(model, source_images, source_poses, focal, c2ws, height, width, c=c, near=near,
                     far=far, chunk_points=chunk_points)  # fmt: skip
    return np.stack([to_uint8(x, rounding=rounding, chw=True) for x in rgb])


def render_views(model: ViewSynthesizer, obj: dict[str, Tensor], src: list[int], views: list[int]) -> Tensor:
    """Fine RGB of dataset `views` of one object rendered from its source views `src`: (V, 3, H, W) in [0,1]."""
    _, _, h, w = obj["images"].shape
    return render_rgb(model, obj["images"][src], obj["poses"][src], obj["focal"], obj["poses"][views], h, w,
                      c=obj["c"], near=float(obj["near"]), far=float(obj["far"]))  # fmt: skip
