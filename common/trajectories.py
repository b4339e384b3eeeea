"""Novel camera paths for rendering: camera-to-world matrices (N, 4, 4), OpenGL convention.

OpenGL camera axes: x right, y up, the camera looks along -z (as nerf_synthetic's transforms.json and
`common.cameras.opencv_to_opengl`). Paths are computed in float64 and returned as float32 tensors.

* `orbit`: a circle around a centre at a fixed elevation (360-degree turntable, object-centric scenes).
* `spiral`: LLFF-style spiral around the mean pose of the training cameras, looking at a focus point.
* `interpolate`: through given poses, rotations by spherical linear interpolation (scipy's `Slerp`),
  positions linearly; optionally a closed loop.
* `orbit_through_pose`: the full orbit through one camera (its distance and elevation).
* `camera_path(c2ws, "orbit" | "spiral" | "interpolate", n)`: one of the above fitted to training cameras.
* `orbit_around_pose`: a small circle around one source view, every camera looking at the source view's
  look-at point (the single-image novel-view video of pixelNeRF-style object models).
* `read_camera_path`: a nerfstudio `camera_path.json` (the viewer's export) as poses, intrinsics, fps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation, Slerp
from torch import Tensor

from common.cameras import look_at

__all__ = [
    "camera_path",
    "focus_point",
    "interpolate",
    "orbit",
    "orbit_around_pose",
    "orbit_through_pose",
    "read_camera_path",
    "spiral",
]

ArrayLike = Tensor | np.ndarray | Sequence[float]


def _np(x: ArrayLike) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _out(c2w: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(c2w)).float()


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n < 1e-12):
        raise ValueError("trajectories: zero-length direction (camera at its target, or up parallel to view)")
    return v / n


def _poses(c2ws: ArrayLike, name: str) -> np.ndarray:
    p = _np(c2ws)
    if p.ndim != 3 or p.shape[1:] not in ((4, 4), (3, 4)) or p.shape[0] == 0:
        raise ValueError(f"{name}: c2ws must be (M, 4, 4) or (M, 3, 4), got {p.shape}")
    return p


def _look_at_np(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(..., 3) eyes, targets, ups -> (..., 4, 4) OpenGL c2w (common.cameras.look_at, float64)."""
    try:
        return look_at(eye, target, up, dtype=torch.float64).numpy()
    except ValueError as err:
        raise ValueError(f"trajectories: {err} (camera at its target, or up parallel to view)") from err


def _plane_basis(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fixed basis of the plane orthogonal to unit `u`: e1 = the world axis least aligned with u, made
    orthogonal to it; e2 = u x e1 (azimuth grows counter-clockwise seen from +u)."""
    i = int(np.argmin(np.abs(u)))
    e1 = _unit(np.eye(3)[i] - u * u[i])
    return e1, np.cross(u, e1)


def orbit(
    center: ArrayLike = (0.0, 0.0, 0.0),
    radius: float = 4.0,
    elevation_deg: float = 30.0,
    n: int = 40,
    up: ArrayLike = (0.0, 0.0, 1.0),
    start_azimuth_deg: float = 0.0,
) -> Tensor:
    """n cameras evenly around a full circle of `radius` about `center`, `elevation_deg` above the plane
    orthogonal to `up`, all looking at `center` (the last one stops short of the first: loop-ready)."""
    if n < 1 or radius <= 0:
        raise ValueError(f"orbit: need n >= 1 and radius > 0, got n={n}, radius={radius}")
    c, u = _np(center), _unit(_np(up))
    e1, e2 = _plane_basis(u)
    az = np.deg2rad(start_azimuth_deg) + np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    el = np.deg2rad(elevation_deg)
    d = np.cos(el) * (np.cos(az)[:, None] * e1 + np.sin(az)[:, None] * e2) + np.sin(el) * u
    eye = c + radius * d
    return _out(_look_at_np(eye, np.broadcast_to(c, eye.shape), np.broadcast_to(u, eye.shape)))


def orbit_through_pose(
    c2w: ArrayLike, n: int = 40, center: ArrayLike = (0.0, 0.0, 0.0), up: ArrayLike = (0.0, 0.0, 1.0)
) -> Tensor:
    """A full `orbit` that starts at the position of camera `c2w` (4, 4): its distance to `center` and its
    elevation above the plane orthogonal to `up` (the 360-degree video around an object seen from a
    source view)."""
    c = _np(c2w)
    off = c[:3, 3] - _np(center)
    u = _unit(_np(up))
    radius = float(np.linalg.norm(off))
    if radius < 1e-12:
        raise ValueError("orbit_through_pose: the camera is at the centre")
    e1, e2 = _plane_basis(u)
    elevation = np.degrees(np.arcsin(np.clip(off @ u / radius, -1.0, 1.0)))
    azimuth = np.degrees(np.arctan2(off @ e2, off @ e1))
    return orbit(center, radius, float(elevation), n, up=u, start_azimuth_deg=float(azimuth))


def camera_path(c2ws: ArrayLike, kind: str, n: int, up: ArrayLike | None = None) -> Tensor:
    """A novel path of n cameras around a scene's training cameras `c2ws` (M, 4, 4):

    * "orbit": a circle about their `focus_point` at their mean distance and mean elevation;
    * "spiral": `spiral(c2ws, n)` (forward-facing scenes);
    * "interpolate": a closed `interpolate` through up to 8 of them, taken in azimuth order about the
      focus point (so the path does not jump back and forth between randomly ordered views).

    `up` defaults to the mean of the cameras' up axes."""
    p = _poses(c2ws, "camera_path")
    if kind == "spiral":
        return spiral(p, n)
    if kind not in ("orbit", "interpolate"):
        raise ValueError(f"camera_path: kind must be orbit | spiral | interpolate, got {kind!r}")
    u = _unit(_np(up)) if up is not None else _unit(p[:, :3, 1].sum(0))
    try:
        centre = focus_point(p)
    except ValueError:
        avg = _mean_pose(p)
        centre = avg[:3, 3] - np.linalg.norm(avg[:3, 3]) * avg[:3, 2]
    off = p[:, :3, 3] - centre
    dist = np.linalg.norm(off, axis=1)
    if kind == "orbit":
        elevation = np.degrees(np.arcsin(np.clip(off @ u / dist, -1.0, 1.0))).mean()
        return orbit(centre, float(dist.mean()), float(elevation), n, up=u)
    e1, e2 = _plane_basis(u)
    order = np.argsort(np.arctan2(off @ e2, off @ e1))
    keys = order[np.unique(np.round(np.linspace(0, len(order) - 1, min(8, len(order)))).astype(int))]
    if len(keys) < 2:
        raise ValueError("camera_path: interpolate needs at least 2 cameras")
    return interpolate(p[keys], n, closed=True)


def focus_point(c2ws: ArrayLike) -> np.ndarray:
    """Least-squares point nearest to every camera's optical axis, (3,) float64 (the look-at point of
    cameras that face a common centre); raises ValueError when the axes are (nearly) parallel."""
    p = _poses(c2ws, "focus_point")
    o, d = p[:, :3, 3], _unit(-p[:, :3, 2])
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    a, b = proj.sum(0), (proj @ o[:, :, None]).sum(0)[:, 0]
    if np.linalg.cond(a) > 1e6:
        raise ValueError("focus_point: the camera axes are parallel; pass the focus depth explicitly")
    return np.linalg.solve(a, b)


def _mean_pose(p: np.ndarray) -> np.ndarray:
    """LLFF's average pose: mean position, mean viewing axis, mean up made orthogonal."""
    centre = p[:, :3, 3].mean(0)
    back = _unit(p[:, :3, 2].sum(0))
    up = p[:, :3, 1].sum(0)
    right = _unit(np.cross(up, back))
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, centre
    return m


def spiral(
    c2ws: ArrayLike,
    n: int = 120,
    rots: float = 2.0,
    zrate: float = 0.5,
    radius_scale: float = 1.0,
    focus_depth: float | None = None,
) -> Tensor:
    """LLFF-style spiral: `rots` turns around the mean pose of `c2ws` (M, 4, 4), with radii the 90th
    percentile of the cameras' offsets from it (times `radius_scale`) and a depth oscillation at `zrate`
    turns per turn, every camera looking at the point `focus_depth` in front of the mean pose (default:
    the depth of `focus_point(c2ws)`, or, for near-parallel axes, the mean camera distance from the mean
    pose's position to the scene origin)."""
    p = _poses(c2ws, "spiral")
    if n < 1:
        raise ValueError(f"spiral: n must be >= 1, got {n}")
    avg = _mean_pose(p)
    local = (p[:, :3, 3] - avg[:3, 3]) @ avg[:3, :3]  # offsets in the mean camera frame
    radii = np.percentile(np.abs(local), 90, axis=0) * radius_scale
    if focus_depth is None:
        try:
            focus_depth = float((avg[:3, 3] - focus_point(p)) @ avg[:3, 2])
        except ValueError:
            focus_depth = float(np.linalg.norm(avg[:3, 3]))
        if focus_depth <= 0:
            focus_depth = float(np.linalg.norm(avg[:3, 3])) or 1.0
    target = avg[:3, 3] - focus_depth * avg[:3, 2]
    theta = np.linspace(0.0, 2 * np.pi * rots, n, endpoint=False)
    offs = np.stack([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate)], -1) * radii
    eye = avg[:3, 3] + offs @ avg[:3, :3].T
    return _out(_look_at_np(eye, np.broadcast_to(target, eye.shape), np.broadcast_to(avg[:3, 1], eye.shape)))


def interpolate(c2ws: ArrayLike, n: int, closed: bool = False) -> Tensor:
    """n poses through the keyframes `c2ws` (M >= 2, 4, 4), evenly spaced in keyframe index: rotations by
    slerp, positions linearly. Open: the first and last outputs are the first and last keyframes. Closed:
    the path returns to the first keyframe, which is not repeated at the end."""
    p = _poses(c2ws, "interpolate")
    if p.shape[0] < 2 or n < 2:
        raise ValueError(f"interpolate: need at least 2 keyframes and n >= 2, got {p.shape[0]} and {n}")
    rot, pos = p[:, :3, :3], p[:, :3, 3]
    if closed:
        rot, pos = np.concatenate([rot, rot[:1]]), np.concatenate([pos, pos[:1]])
    k = np.arange(rot.shape[0], dtype=np.float64)
    t = np.linspace(0.0, k[-1], n, endpoint=not closed)
    r = Slerp(k, Rotation.from_matrix(rot))(t).as_matrix()
    seg = np.minimum(np.floor(t).astype(int), len(k) - 2)
    w = (t - seg)[:, None]
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = r
    out[:, :3, 3] = (1 - w) * pos[seg] + w * pos[seg + 1]
    return _out(out)


def orbit_around_pose(
    c2w: ArrayLike, n: int = 40, radius_deg: float = 15.0, focus_distance: float | None = None
) -> Tensor:
    """n cameras on a cone of half-angle `radius_deg` around the source view `c2w` (4, 4): each keeps the
    source's distance to the look-at point (the point `focus_distance` along the source's optical axis;
    default: the axis point nearest the world origin, the object centre of object-centric data) and looks
    at it, with the source's up vector. The path starts to the source's right and turns counter-clockwise
    as seen by the source."""
    c = _np(c2w)
    if c.shape not in ((4, 4), (3, 4)):
        raise ValueError(f"orbit_around_pose: c2w must be (4, 4), got {c.shape}")
    right, up, back, eye = c[:3, 0], c[:3, 1], c[:3, 2], c[:3, 3]
    back = _unit(back)
    if focus_distance is None:
        focus_distance = float(eye @ back)  # along -back from the eye to the origin's projection
        if focus_distance <= 1e-9:
            focus_distance = float(np.linalg.norm(eye)) or 1.0
    target = eye - focus_distance * back
    r = np.deg2rad(radius_deg)
    phi = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    ring = np.cos(phi)[:, None] * _unit(right) + np.sin(phi)[:, None] * _unit(up)
    d = np.cos(r) * back + np.sin(r) * ring
    eyes = target + focus_distance * d
    return _out(_look_at_np(eyes, np.broadcast_to(target, eyes.shape), np.broadcast_to(up, eyes.shape)))


@dataclass
class CameraPath:
    """An imported path: OpenGL c2w (T, 4, 4), pinhole K (T, 3, 3) for height x width, frames per second."""

    c2w: Tensor
    K: Tensor
    height: int
    width: int
    fps: float


def read_camera_path(path: str | Path) -> CameraPath:
    """nerfstudio `camera_path.json`: `camera_path` entries with a row-major 4x4 `camera_to_world`
    (OpenGL, as nerfstudio) and a vertical `fov` in degrees (focal 0.5 H / tan(fov / 2), square pixels,
    principal point at the centre), `render_height` / `render_width`, `fps`. Poses are taken as they
    are: they must be in the frame of the scene being rendered. Only perspective paths are read."""
    from common.errors import DataError
    from common.io import read_json

    path = Path(path)
    meta = read_json(path)  # DataError naming the file on a syntax error
    if not isinstance(meta, dict) or not isinstance(meta.get("camera_path"), list) or not meta["camera_path"]:
        raise DataError(
            path, "expected a nerfstudio camera path: an object with a non-empty 'camera_path' list"
        )
    if meta.get("camera_type", "perspective") != "perspective":
        raise DataError(path, f"camera_type {meta['camera_type']!r} is not supported (perspective only)")
    try:
        h, w = int(meta["render_height"]), int(meta["render_width"])
        fps = float(meta.get("fps", 24.0))
        c2w = np.array(
            [np.asarray(c["camera_to_world"], dtype=np.float64).reshape(4, 4) for c in meta["camera_path"]]
        )
        fov = np.array([float(c["fov"]) for c in meta["camera_path"]])
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(path, f"needs render_height, render_width and per camera a 16-number "
                        f"camera_to_world and a fov ({type(err).__name__}: {err})") from err  # fmt: skip
    if h < 1 or w < 1 or not np.isfinite(c2w).all() or not ((fov > 0) & (fov < 180)).all():
        raise DataError(path, "render size must be positive, poses finite and fov in (0, 180) degrees")
    f = 0.5 * h / np.tan(np.radians(fov) / 2)
    K = np.zeros((len(f), 3, 3))
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f, w / 2, h / 2, 1.0
    return CameraPath(_out(c2w), _out(K), h, w, fps)
