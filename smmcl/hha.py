"""HHA encoding of depth (horizontal disparity, height above ground, angle with gravity), vectorised.

Re-derived from the description of Gupta et al.'s MATLAB pipeline (ECCV 2014; `saurabhg/rcnn-depth`):
local least-squares plane normals over square windows (radius 3 for the angle, 10 for gravity), gravity
estimated by two rounds of iterative re-weighting of horizontal/vertical normals, then
disparity = 31000 / max(z_cm, 100), height = -(P . g) - min (min clamped to -130 cm unless lower),
angle = acos(N . g) in degrees + 38. All loops over pixels are numpy array operations.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.image_io import read_depth

log = logging.getLogger(__name__)

NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)  # fx, fy, cx, cy of the NYU colour camera
NYU_SIZE = (480, 640)  # (H, W) the NYU intrinsics belong to
SATURATION_M = 31000.0 / 255 / 100  # nearer than this (1.22 m) the disparity channel clips at 255


def point_cloud(
    z: np.ndarray, fx: float, fy: float, cx: float, cy: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame X (right), Y (down), Z from depth z (H,W); 1-based pixel grid as in MATLAB."""
    h, w = z.shape
    xx, yy = np.meshgrid(np.arange(1, w + 1, dtype=np.float64), np.arange(1, h + 1, dtype=np.float64))
    return (xx - cx) * z / fx, (yy - cy) * z / fy, z


def box_sum(f: np.ndarray, r: int) -> np.ndarray:
    """Zero-padded (2r+1)^2 window sums over the first two axes, NaN counted as 0 (integral image)."""
    f = np.nan_to_num(f, nan=0.0)
    pad = np.pad(f, ((r + 1, r), (r + 1, r)) + ((0, 0),) * (f.ndim - 2))
    c = pad.cumsum(0).cumsum(1)
    k = 2 * r + 1
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def normals(z_cm: np.ndarray, missing: np.ndarray, r: int, intr: tuple[float, ...]) -> np.ndarray:
    """Unit normals (H,W,3) from planes a*X/Z + b*Y/Z + c = 1/Z fitted over (2r+1)^2 windows."""
    x, y, z = point_cloud(z_cm, *intr)
    z = np.where(missing, np.nan, z)
    xz, yz, oz = x / z, y / z, 1.0 / z
    one = np.where(np.isnan(z), np.nan, 1.0)
    ata = box_sum(np.stack([xz * xz, xz * yz, xz, yz * yz, yz, one], axis=-1), r)
    atb = box_sum(np.stack([xz * oz, yz * oz, oz], axis=-1), r)
    a11, a12, a13, a22, a23, a33 = np.moveaxis(ata, -1, 0)
    b1, b2, b3 = np.moveaxis(atb, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty windows stay NaN, as in the original
        c11, c12, c13 = a22 * a33 - a23 * a23, a13 * a23 - a12 * a33, a12 * a23 - a13 * a22
        c22, c23, c33 = a11 * a33 - a13 * a13, a12 * a13 - a11 * a23, a11 * a22 - a12 * a12
        det = a11 * c11 + a12 * c12 + a13 * c13
        n = np.stack(
            [c11 * b1 + c12 * b2 + c13 * b3, c12 * b1 + c22 * b2 + c23 * b3, c13 * b1 + c23 * b2 + c33 * b3],
            -1,
        )
        n = n / det[..., None]
        n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    return n  # n . P = 1 > 0: normals point away from the camera, as in the original (no re-orientation)


def gravity_direction(n: np.ndarray, thresholds=(45.0, 15.0), iters=(5, 5)) -> np.ndarray:
    """Direction most parallel to 'floor-like' and most orthogonal to 'wall-like' normals, from (0,1,0)."""
    flat = n.reshape(-1, 3)
    flat = flat[np.isfinite(flat).all(axis=1)]
    g = np.array([0.0, 1.0, 0.0])
    for thresh, count in zip(thresholds, iters):
        for _ in range(count):
            sim = flat @ g
            par = flat[np.abs(sim) > np.cos(np.radians(thresh))]
            perp = flat[np.abs(sim) < np.sin(np.radians(thresh))]
            vals, vecs = np.linalg.eigh(perp.T @ perp - par.T @ par)
            new = vecs[:, np.argmin(vals)]
            g = new * np.sign(g @ new)
    return g


MASK_MODES = ("official", "exclude")


def depth_to_hha(
    depth_m: np.ndarray,
    missing: np.ndarray | None = None,
    intrinsics=NYU_INTRINSICS,
    mask_mode: str = "official",
) -> np.ndarray:
    """HHA (H,W,3) uint8 in (disparity, height, angle) order from depth in metres; `missing` marks holes.

    mask_mode "official": like Gupta et al.'s tools, the missing-data mask (raw depth == 0) is accepted but
    does not change the result: the normals are fitted on the filled depth everywhere. This reproduces the
    MATLAB reference of NYU frame 1 (made with raw_depth as the mask) exactly, while leaving the holes out
    of the fits does not (the normal routine there receives the mask but evidently does not use it).
    "exclude": missing pixels are left out of the plane fits (an alternative, not the reference: inside
    large holes no plane can be fitted and the angle channel is 0 there).
    """
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth_m.shape}")
    if mask_mode not in MASK_MODES:
        raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
    if missing is not None and missing.shape != depth_m.shape:
        raise ValueError(f"missing mask shape {missing.shape} differs from depth shape {depth_m.shape}")
    if not np.isfinite(depth_m).all() or (depth_m < 0).any():  # the encoding assumes metres in front
        raise ValueError("depth must be finite and >= 0 metres")
    if missing is None or mask_mode == "official":
        missing = np.zeros(depth_m.shape, bool)
    missing = missing.astype(bool)
    z_cm = depth_m.astype(np.float64) * 100.0
    n_small = normals(z_cm, missing, 3, intrinsics)
    g = gravity_direction(normals(z_cm, missing, 10, intrinsics))
    x, y, z = point_cloud(z_cm, *intrinsics)
    height = -(np.stack([x, y, z], -1) @ g)
    floor = height.min()
    height = height - (floor if floor <= -90 else -130.0)
    with np.errstate(invalid="ignore"):
        angle = np.degrees(np.arccos(np.clip(n_small @ g, -1, 1))) + 128 - 90
    disparity = 31000.0 / np.maximum(z, 100.0)
    hha = np.stack([disparity, height, np.nan_to_num(angle, nan=0.0)], -1)
    return np.clip(np.round(hha), 0, 255).astype(np.uint8)


def input_warnings(depth_m: np.ndarray, intrinsics=NYU_INTRINSICS) -> list[str]:
    """What makes the HHA image of this depth (metres, 0 = missing) mislead, though it can be computed:
    a disparity channel mostly saturated or depths beyond any room (a wrong depth scale: millimetres read
    with the NYU 1/10000 m default), or intrinsics that do not fit the image (NYU's 640x480 ones on a crop
    or another camera: the principal point far from the image centre)."""
    h, w = depth_m.shape
    valid = depth_m[depth_m > 0]
    out = []
    if valid.size:
        near, median = float((valid < SATURATION_M).mean()), float(np.median(valid))
        if near > 0.5 or median > 20:
            what = f"{100 * near:.0f} % nearer than {SATURATION_M:.2f} m, where disparity saturates at 255"
            out.append(
                f"depth median {median:.3g} m ({what if near > 0.5 else 'farther than an indoor scene'}): "
                "is --depth-scale right? It is depth units per metre: 10000 for NYU toolbox PNGs, 1000 for "
                "millimetres"
            )
    fx, fy, cx, cy = intrinsics
    if tuple(intrinsics) == NYU_INTRINSICS and (h, w) != NYU_SIZE:
        out.append(
            f"the intrinsics are NYU's 640x480 colour camera, but this image is {w}x{h}: give --intrinsics of "
            "its camera (a crop moves cx, cy by its offset; a resize scales all four)"
        )
    elif abs(cx - w / 2) > 0.05 * w or abs(cy - h / 2) > 0.05 * h:
        out.append(
            f"principal point ({cx:g}, {cy:g}) is far from the centre of this {w}x{h} image: are --intrinsics "
            "those of this image (not of the uncropped or full-size one)?"
        )
    return out


def check_depth_scale(depth_scale: float) -> None:
    """Depth units per metre must be a positive finite number (0 divides by zero, < 0 flips the scene)."""
    if not (np.isfinite(depth_scale) and depth_scale > 0):
        raise DataError(
            "--depth-scale", f"must be a positive number of depth units per metre, got {depth_scale}"
        )


def hha_from_files(
    depth: Path,
    raw_depth: Path | None,
    depth_scale: float,
    intrinsics=NYU_INTRINSICS,
    mask_mode: str = "official",
    *,
    allow_8bit: bool = False,
    allow_zero: bool = False,
) -> np.ndarray:
    """Read 16-bit depth PNG(s) (value / depth_scale = metres) and encode HHA (disparity, height, angle).

    raw_depth: its zeros form the missing-data mask, used as `mask_mode` says (see depth_to_hha); it may
    be all zero only with allow_zero. 8-bit depth (256 levels, not metric) or all-zero depth (no data: a mask
    or a wrong file) is refused with DataError unless allowed (common.image_io.read_depth); so is negative
    depth (float files), and a `depth_scale` that is not a positive finite number: either
    would give an HHA image of clipped garbage. A likely wrong scale or intrinsics is logged as a warning
    (input_warnings).
    """
    check_depth_scale(depth_scale)
    d = read_depth(depth, allow_8bit=allow_8bit, allow_zero=allow_zero).astype(np.float64)
    if (d < 0).any():
        raise DataError(
            depth, f"depth has {int((d < 0).sum())} negative values (min {d.min():.4g}); expected >= 0"
        )
    missing = None
    if raw_depth is not None:
        raw = read_depth(raw_depth, allow_8bit=allow_8bit, allow_zero=allow_zero)
        if raw.shape != d.shape:
            raise DataError(raw_depth, f"shape {raw.shape} differs from {depth} {d.shape}")
        missing = raw == 0
    for message in input_warnings(d / depth_scale, intrinsics):
        log.warning("%s: %s", depth, message)
    return depth_to_hha(d / depth_scale, missing, intrinsics, mask_mode)
