"""Camera-pose conventions: pinhole intrinsics, OpenCV <-> OpenGL camera axes, world-axis changes.

OpenCV camera: x right, y down, looking along +z. OpenGL (NeRF/pixelNeRF/PAPR): x right, y up,
looking along -z. Poses are camera-to-world (..., 3|4, 4) matrices; switching camera convention
flips the y and z columns of the rotation (right-multiplying by diag(1, -1, -1, 1)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "intrinsics_matrix",
    "focal_from_fov",
    "opencv_to_opengl",
    "opengl_to_opencv",
    "change_world_axes",
    "look_at",
]


def intrinsics_matrix(
    fx: float, fy: float, cx: float, cy: float, dtype: torch.dtype = torch.float32
) -> Tensor:
    """3x3 pinhole K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (pixels)."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype)


def focal_from_fov(width: float, fov_x: float) -> float:
    """Focal length in pixels from the horizontal field of view in radians: W / (2 tan(fov_x / 2))."""
    if not 0 < fov_x < math.pi:
        raise ValueError(f"fov_x must lie in (0, pi) radians, got {fov_x}")
    return 0.5 * width / math.tan(0.5 * fov_x)


def _check_pose(c2w: Tensor) -> None:
    if c2w.ndim < 2 or c2w.shape[-1] != 4 or c2w.shape[-2] not in (3, 4):
        raise ValueError(f"expected camera-to-world poses of shape (..., 3|4, 4), got {tuple(c2w.shape)}")


def _flip_yz(c2w: Tensor) -> Tensor:
    _check_pose(c2w)
    out = c2w.clone()
    out[..., :3, 1:3] = -out[..., :3, 1:3]
    return out


def opencv_to_opengl(c2w: Tensor) -> Tensor:
    """OpenCV-camera c2w -> OpenGL-camera c2w (negate the y and z axis columns)."""
    return _flip_yz(c2w)


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """OpenGL-camera c2w -> OpenCV-camera c2w (the same flip; it is its own inverse)."""
    return _flip_yz(c2w)


def change_world_axes(c2w: Tensor, R: Tensor) -> Tensor:
    """Express poses in a new world frame x' = R x (e.g. z-up -> y-up): c2w' = [R 0; 0 1] @ c2w."""
    _check_pose(c2w)
    if R.shape != (3, 3):
        raise ValueError(f"R must be 3x3, got {tuple(R.shape)}")
    R = R.to(c2w)
    out = c2w.clone()
    out[..., :3, :3] = R @ c2w[..., :3, :3]
    out[..., :3, 3] = (R @ c2w[..., :3, 3].unsqueeze(-1)).squeeze(-1)
    return out


def look_at(
    eye,
    target=(0.0, 0.0, 0.0),
    up=(0.0, 0.0, 1.0),
    *,
    convention: str = "opengl",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Camera-to-world pose(s) at ``eye`` looking at ``target`` with ``up`` roughly up in the image.

    ``eye`` (3,) or (..., 3); ``target`` and ``up`` broadcast against it -> (4, 4) or (..., 4, 4).
    OpenGL: columns x right, y up, z backwards (the camera looks along -z); OpenCV: x right, y down,
    z forwards. Computed in float64, returned in ``dtype``. ``up`` parallel to the viewing direction
    raises ValueError. The one look-at of the code base (common.trajectories builds on it).
    """
    if convention not in ("opengl", "opencv"):
        raise ValueError(f"convention must be 'opengl' or 'opencv', got {convention!r}")
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target, up = (torch.as_tensor(v, dtype=torch.float64).expand_as(eye) for v in (target, up))
    forward = target - eye
    n = torch.linalg.norm(forward, dim=-1, keepdim=True)
    if bool((n < 1e-12).any()):
        raise ValueError("look_at: eye and target coincide")
    forward = forward / n
    right = torch.linalg.cross(forward, up, dim=-1)
    rn = torch.linalg.norm(right, dim=-1, keepdim=True)
    if bool((rn < 1e-9 * torch.linalg.norm(up, dim=-1, keepdim=True)).any()):
        raise ValueError("look_at: viewing direction is parallel to `up`")
    right = right / rn
    true_up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.zeros(eye.shape[:-1] + (4, 4), dtype=torch.float64)
    cols = [right, true_up, -forward] if convention == "opengl" else [right, -true_up, forward]
    c2w[..., :3, :3] = torch.stack(cols, dim=-1)
    c2w[..., :3, 3] = eye
    c2w[..., 3, 3] = 1.0
    return c2w.to(dtype)
