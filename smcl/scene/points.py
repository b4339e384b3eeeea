"""Point preparation (spec smcl.md 1.3, 4.5): read a cloud (PLY/PCD via open3d, COLMAP points3D.bin/
.txt, .npy/.pt), down-sample to a fixed count (official uniform-stride + random deletion, or voxel
grid), and write the N x 3 file the renderer loads (.npy, or .pcd/.ply via open3d)."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from common.checkpoint import load_tensor
from common.errors import TriVisionError
from common.io import atomic_save_npy, load_npy


class PointCloudError(TriVisionError, ValueError):
    """An unreadable, empty or degenerate point cloud."""


def read_colmap_points3d(path: Path) -> np.ndarray:
    """xyz (N, 3) from COLMAP points3D.bin (little-endian binary) or points3D.txt."""
    if path.suffix == ".txt":
        rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        try:
            return np.array(
                [[float(r[1]), float(r[2]), float(r[3])] for r in rows], dtype=np.float64
            ).reshape(-1, 3)
        except (IndexError, ValueError) as err:
            raise PointCloudError(f"{path}: malformed COLMAP points3D.txt line ({err})") from err
    data = path.read_bytes()
    try:
        (n,) = struct.unpack_from("<Q", data, 0)
        off, out = 8, np.empty((n, 3))
        for i in range(n):
            # point id (Q), xyz (3d), rgb (3B), error (d), track length (Q), track (2i each)
            out[i] = struct.unpack_from("<3d", data, off + 8)
            (track,) = struct.unpack_from("<Q", data, off + 8 + 24 + 3 + 8)
            off += 8 + 24 + 3 + 8 + 8 + 8 * track
    except struct.error as err:
        raise PointCloudError(f"{path}: truncated COLMAP points3D.bin ({err})") from err
    return out


def _open3d(path: Path) -> Any:
    """open3d, an optional extra (a large wheel) needed only for PLY/PCD files."""
    try:
        import open3d
    except ImportError as err:
        raise PointCloudError(
            f"{path}: PLY/PCD point clouds need open3d: pip install 'tri-vision-repro[points]' ({err})"
        ) from err
    return open3d


def read_points(path: str | Path) -> np.ndarray:
    """Read xyz (N, 3) float64 from .ply/.pcd (open3d), COLMAP points3D.{bin,txt}, .npy or .pt/.pth."""
    path = Path(path)
    if not path.is_file():
        raise PointCloudError(f"{path}: point cloud file not found")
    suf = path.suffix.lower()
    if suf in (".ply", ".pcd"):
        o3d = _open3d(path)
        xyz = np.asarray(o3d.io.read_point_cloud(str(path)).points, dtype=np.float64)
    elif path.name.startswith("points3D") and suf in (".bin", ".txt"):
        xyz = read_colmap_points3d(path)
    elif suf == ".npy":
        xyz = load_npy(path).astype(np.float64)
    elif suf in (".pt", ".pth"):
        xyz = load_tensor(path).double().numpy()
    else:
        raise PointCloudError(
            f"{path}: unsupported point file type (use .ply .pcd .npy .pt points3D.bin/.txt)"
        )
    return validate_points(xyz, path)


def validate_points(xyz: np.ndarray, source: str | Path = "<array>") -> np.ndarray:
    """Reject empty, non-finite or degenerate (all points on one spot) clouds with a clear message."""
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] < 3:
        raise PointCloudError(f"{source}: expected an (N, 3) array of points, got shape {xyz.shape}")
    xyz = xyz[:, :3]
    if xyz.shape[0] == 0:
        raise PointCloudError(f"{source}: the point cloud is empty")
    if not np.isfinite(xyz).all():
        raise PointCloudError(f"{source}: the point cloud contains NaN or infinite coordinates")
    if np.unique(xyz, axis=0).shape[0] < 2 or float(np.ptp(xyz, axis=0).max()) == 0.0:
        raise PointCloudError(f"{source}: degenerate point cloud (all {xyz.shape[0]} points coincide)")
    return xyz


def downsample_uniform_random(xyz: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Official scheme: keep every floor(N / n)-th point (file order), then delete random points to n."""
    if xyz.shape[0] < n:
        raise PointCloudError(f"cannot down-sample {xyz.shape[0]} points to {n}: too few points")
    stride = max(1, xyz.shape[0] // n)
    kept = xyz[::stride]
    rng = np.random.default_rng(seed)
    drop = rng.choice(kept.shape[0], kept.shape[0] - n, replace=False)
    return np.delete(kept, drop, axis=0)


def downsample_voxel(xyz: np.ndarray, n: int, seed: int = 0, iters: int = 30) -> np.ndarray:
    """Voxel-grid centroids with the voxel size bisected so that >= n voxels exist; random trim to n."""
    if xyz.shape[0] < n:
        raise PointCloudError(f"cannot down-sample {xyz.shape[0]} points to {n}: too few points")
    lo_p = xyz.min(0)
    hi, lo = float(np.ptp(xyz, axis=0).max()), 0.0
    best = xyz
    for _ in range(iters):
        size = 0.5 * (hi + lo)
        if size <= 0:
            break
        keys = np.floor((xyz - lo_p) / size).astype(np.int64)
        _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        if counts.shape[0] >= n:
            cent = np.zeros((counts.shape[0], 3))
            np.add.at(cent, inv.reshape(-1), xyz)
            best, lo = cent / counts[:, None], size
        else:
            hi = size
    rng = np.random.default_rng(seed)
    return best[np.sort(rng.choice(best.shape[0], n, replace=False))]


def prepare_points(
    src: str | Path,
    dst: str | Path,
    n: int = 10000,
    method: str = "uniform_random",
    seed: int = 0,
    scale: float = 1.0,
) -> np.ndarray:
    """Read, down-sample and write a cloud times `scale` (into a loader's frame, e.g. LLFF's);
    returns the (n, 3) float32 points."""
    xyz = read_points(src) * scale
    if method == "uniform_random":
        out = downsample_uniform_random(xyz, n, seed)
    elif method == "voxel":
        out = downsample_voxel(xyz, n, seed)
    else:
        raise ValueError(f"method must be 'uniform_random' or 'voxel', got {method!r}")
    validate_points(out, f"{src} after down-sampling")
    write_points(dst, out)
    return out.astype(np.float32)


def write_points(path: str | Path, xyz: np.ndarray) -> None:
    """Write .npy (default renderer input) or .pcd/.ply via open3d."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".pcd", ".ply"):
        o3d = _open3d(path)
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)))
        if not o3d.io.write_point_cloud(str(path), pc):
            raise PointCloudError(f"{path}: open3d failed to write the point cloud")
    elif path.suffix.lower() == ".npy":
        atomic_save_npy(path, np.asarray(xyz, dtype=np.float32))
    else:
        raise PointCloudError(f"{path}: output must end in .npy, .pcd or .ply")


def cube_count(n: int) -> tuple[int, int]:
    """(grid points, random points) of the official cube init: floor(n^(1/3))^3 and the rest."""
    g = int(math.floor(n ** (1 / 3) + 1e-9)) ** 3
    return g, n - g
