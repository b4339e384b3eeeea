"""Per-pixel camera rays for a pinhole camera with an explicit principal point.

Pixel (i, j) = (column, row). ``pixel_center=False`` casts through integer coordinates (pixelNeRF),
``True`` through i + 0.5, j + 0.5 (PAPR, most NeRF code). The principal point is K[0, 2], K[1, 2]:
build K with cx = W / 2, cy = H / 2 to get the image-centre convention.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["get_rays", "camera_directions", "rays_at_pixels"]


def camera_directions(H: int, W: int, K: Tensor, *, pixel_center: bool, convention: str = "opengl") -> Tensor:
    """Unnormalised camera-frame directions (H, W, 3).

    OpenGL: ((i - cx)/fx, -(j - cy)/fy, -1). OpenCV: ((i - cx)/fx, (j - cy)/fy, +1).
    """
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got {tuple(K.shape)}")
    if convention not in ("opengl", "opencv"):
        raise ValueError(f"convention must be 'opengl' or 'opencv', got {convention!r}")
    dtype = K.dtype if K.is_floating_point() else torch.float32
    off = 0.5 if pixel_center else 0.0
    j, i = torch.meshgrid(
        torch.arange(H, dtype=dtype, device=K.device) + off,
        torch.arange(W, dtype=dtype, device=K.device) + off,
        indexing="ij",
    )
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = (i - cx) / fx
    y = (j - cy) / fy
    if convention == "opengl":
        return torch.stack([x, -y, -torch.ones_like(x)], dim=-1)
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def get_rays(
    H: int,
    W: int,
    K: Tensor,
    c2w: Tensor,
    *,
    pixel_center: bool,
    convention: str = "opengl",
    normalize: bool = False,
) -> tuple[Tensor, Tensor]:
    """Ray origins and world directions, each (..., H, W, 3), for poses (..., 3|4, 4).

    ``convention`` names the camera axes of ``c2w`` (and of the camera-frame direction, z = -1 for
    OpenGL, +1 for OpenCV). Directions are unnormalised (camera-frame z = -/+1) unless ``normalize``,
    which divides the rotated directions by their norm (``d / d.norm(dim=-1, keepdim=True)``).
    """
    if c2w.ndim < 2 or c2w.shape[-1] != 4 or c2w.shape[-2] not in (3, 4):
        raise ValueError(f"c2w must have shape (..., 3|4, 4), got {tuple(c2w.shape)}")
    dirs = camera_directions(H, W, K.to(c2w.dtype), pixel_center=pixel_center, convention=convention)
    R = c2w[..., :3, :3]
    lead = c2w.shape[:-2]
    d = torch.einsum("...ab,hwb->...hwa", R, dirs)
    o = c2w[..., :3, 3].reshape(*lead, 1, 1, 3).expand(*lead, H, W, 3)
    if normalize:
        d = d / d.norm(dim=-1, keepdim=True)
    return o, d


def rays_at_pixels(
    K: Tensor,
    c2w: Tensor,
    rows: Tensor,
    cols: Tensor,
    *,
    pixel_center: bool,
    convention: str = "opengl",
    normalize: bool = False,
) -> tuple[Tensor, Tensor]:
    """Rays through chosen pixels only: poses (N, 3|4, 4), integer rows/cols (N,) -> origins, dirs (N, 3).

    The camera-frame direction is built as in :func:`camera_directions` (for pixel (cols[n], rows[n])),
    normalised in the camera frame when ``normalize`` (rotation keeps the norm), then rotated as
    ``(R @ d[..., None]).squeeze(-1)``. K is (3, 3) shared or (N, 3, 3) per ray.
    """
    if convention not in ("opengl", "opencv"):
        raise ValueError(f"convention must be 'opengl' or 'opencv', got {convention!r}")
    if c2w.ndim != 3 or c2w.shape[-1] != 4 or c2w.shape[-2] not in (3, 4):
        raise ValueError(f"c2w must have shape (N, 3|4, 4), got {tuple(c2w.shape)}")
    if rows.shape != cols.shape or rows.shape != c2w.shape[:1]:
        raise ValueError(f"rows {tuple(rows.shape)} and cols {tuple(cols.shape)} must be ({c2w.shape[0]},)")
    K = K.to(c2w.dtype)
    if K.shape not in ((3, 3), (c2w.shape[0], 3, 3)):
        raise ValueError(f"K must be (3, 3) or (N, 3, 3), got {tuple(K.shape)}")
    off = 0.5 if pixel_center else 0.0
    i = cols.to(c2w.dtype) + off
    j = rows.to(c2w.dtype) + off
    fx, fy, cx, cy = K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]
    x = (i - cx) / fx
    y = (j - cy) / fy
    if convention == "opengl":
        d = torch.stack([x, -y, -torch.ones_like(x)], dim=-1)
    else:
        d = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    if normalize:
        d = d / d.norm(dim=-1, keepdim=True)
    dirs = (c2w[:, :3, :3] @ d[..., None]).squeeze(-1)
    return c2w[:, :3, 3], dirs
