"""Scenes as captures come: COLMAP `sparse/0` (cameras, images, points3D as .bin or .txt) and nerfstudio
`transforms.json`. Both give a `SceneData` in the loaders' convention (OpenGL c2w, images on white),
with the capture's own point cloud in the same frame as the cameras (`SceneData.points`).

COLMAP scenes are scaled as LLFF's (poses_bounds.npy is made from the same model): the nearest point
depth (0.1th percentile over all cameras) becomes 1/0.75. Only undistorted pinhole cameras are read:
run `colmap image_undistorter` (or `ns-process-data`) first.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from common.cameras import opencv_to_opengl
from smcl.scene.data.scenes import (
    SceneData,
    SceneFormatError,
    _check_pose,
    _check_same_sizes,
    _load_rgb,
    _near_scale,
    _read_json,
    _scaled_size,
)

# COLMAP camera models: id -> (name, number of parameters); the pinhole part is read, distortion refused
_MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
           4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
           8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}  # fmt: skip
_PINHOLE_PART = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 3, "RADIAL": 3, "OPENCV": 4}


def _intrinsics(model: str, params: list[float], where: Path) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy of a COLMAP camera; a distorted or non-pinhole camera is refused, naming it."""
    n = _PINHOLE_PART.get(model)
    if n is None or any(abs(v) > 1e-9 for v in params[n:]):
        raise SceneFormatError(
            where, f"camera model {model} with distortion {params[n or 0 :]} is not supported; undistort "
            "first (colmap image_undistorter) to get PINHOLE cameras",
        )  # fmt: skip
    return (params[0], params[0], params[1], params[2]) if n == 3 else tuple(params[:4])


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if not ln.startswith("#")]


def read_colmap_cameras(path: Path) -> dict[int, tuple[int, int, tuple[float, float, float, float]]]:
    """cameras.{bin,txt} -> {camera_id: (width, height, (fx, fy, cx, cy))}."""
    out = {}
    try:
        if path.suffix == ".txt":
            for ln in filter(None, _lines(path)):
                cid, model, w, h, *params = ln.split()
                out[int(cid)] = (int(w), int(h), _intrinsics(model, [float(v) for v in params], path))
            return out
        data = path.read_bytes()
        (n,), off = struct.unpack_from("<Q", data), 8
        for _ in range(n):
            cid, mid, w, h = struct.unpack_from("<iiQQ", data, off)
            name, k = _MODELS.get(mid, (f"id {mid}", 0))
            params = struct.unpack_from(f"<{k}d", data, off + 24)
            out[cid] = (w, h, _intrinsics(name, list(params), path))
            off += 24 + 8 * k
    except (ValueError, struct.error) as err:
        raise SceneFormatError(path, f"malformed COLMAP cameras file ({err})") from err
    return out


def read_colmap_images(path: Path) -> list[tuple[str, int, np.ndarray]]:
    """images.{bin,txt} -> [(name, camera_id, OpenCV world-to-camera 4x4)] in file order."""
    rows = []
    try:
        if path.suffix == ".txt":
            lines = iter(_lines(path))
            for ln in lines:
                if ln:  # an image line; the next line lists its 2D points (possibly empty)
                    _, *qt, cid, name = ln.split(maxsplit=9)
                    rows.append((name, int(cid), [float(v) for v in qt]))
                    next(lines, None)
        else:
            data = path.read_bytes()
            (n,), off = struct.unpack_from("<Q", data), 8
            for _ in range(n):
                *qt, cid = struct.unpack_from("<i7di", data, off)[1:]
                end = data.index(b"\0", off + 64)
                name = data[off + 64 : end].decode()
                (n2d,) = struct.unpack_from("<Q", data, end + 1)
                rows.append((name, cid, list(qt)))
                off = end + 1 + 8 + 24 * n2d
    except (ValueError, struct.error) as err:
        raise SceneFormatError(path, f"malformed COLMAP images file ({err})") from err
    out = []
    for name, cid, (qw, qx, qy, qz, tx, ty, tz) in rows:
        q = np.array([qw, qx, qy, qz]) / np.linalg.norm([qw, qx, qy, qz])
        w, x, y, z = q
        w2c = np.eye(4)
        w2c[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                       [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                       [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]  # fmt: skip
        w2c[:3, 3] = tx, ty, tz
        out.append((name, cid, w2c))
    return out


def _model_file(sparse: Path, stem: str) -> Path:
    for ext in (".bin", ".txt"):
        if (sparse / f"{stem}{ext}").is_file():
            return sparse / f"{stem}{ext}"
    raise SceneFormatError(sparse / f"{stem}.bin", "not found (nor .txt): expected a COLMAP sparse model")


def near_scale(c2w_cv: np.ndarray, points: np.ndarray) -> float:
    """LLFF's scene scale: 1 / (0.75 near), near = 0.1th percentile of the positive point depths."""
    pts = points[:: max(1, len(points) // 20000)]
    depth = np.einsum("cij,cj->ci", pts[None] - c2w_cv[:, None, :3, 3], c2w_cv[:, :3, 2])
    depth = depth[depth > 0]
    if depth.size == 0:
        raise SceneFormatError("points3D", "no point lies in front of any camera")
    return _near_scale(np.percentile(depth, 0.1))


def _split(names: list[str], split: str, hold: int) -> list[int]:
    idx = np.arange(len(names))
    return [int(i) for i in (idx[idx % hold == 0] if split == "test" else idx[idx % hold != 0])]


def load_colmap(
    root: str | Path,
    split: str = "train",
    factor: int = 1,
    image_dir: str | None = None,
    hold: int = 8,
) -> SceneData:
    """COLMAP scene: root/sparse/0 (or root/sparse) + images (`image_dir`, default images_<factor> if
    present, else images divided by `factor`); every `hold`-th image by name is the test split."""
    from smcl.scene.points import read_colmap_points3d

    root = Path(root)
    sparse = root / "sparse/0" if (root / "sparse/0").is_dir() else root / "sparse"
    cams = read_colmap_cameras(_model_file(sparse, "cameras"))
    imgs = sorted(read_colmap_images(_model_file(sparse, "images")), key=lambda r: r[0])
    if not imgs:
        raise SceneFormatError(sparse, "the COLMAP model has no registered images")
    pts = read_colmap_points3d(_model_file(sparse, "points3D"))
    resize = image_dir is not None or not (root / f"images_{factor}").is_dir()
    img_dir = root / (image_dir or ("images" if resize else f"images_{factor}"))
    files = [img_dir / name for name in (r[0] for r in imgs)]
    for f, (name, cid, _) in zip(files, imgs):
        if not f.is_file():
            raise SceneFormatError(f, f"image {name} of the COLMAP model not found")
        if cid not in cams:
            raise SceneFormatError(sparse, f"image {name} uses camera {cid}, absent from cameras")
    keep = _split([r[0] for r in imgs], split, hold)
    h0, w0 = _check_same_sizes([files[i] for i in keep])
    size = _scaled_size((h0, w0), factor if resize else 1)
    c2w_cv = np.linalg.inv(np.stack([r[2] for r in imgs]))
    scale = near_scale(c2w_cv, pts)
    c2w_cv[:, :3, 3] *= scale
    images = [_load_rgb(files[i], size) for i in keep]
    h, w = images[0].shape[:2]
    focal, principal = [], []
    for i in keep:
        cw, ch, (fx, fy, cx, cy) = cams[imgs[i][1]]
        focal.append([fx * w / cw, fy * h / ch])
        principal.append([cx * w / cw, cy * h / ch])
    return SceneData(
        images=torch.from_numpy(np.stack(images)),
        c2w=opencv_to_opengl(torch.from_numpy(c2w_cv[keep])).float(),
        focal=torch.tensor(focal, dtype=torch.float32),
        principal=torch.tensor(principal, dtype=torch.float32),
        names=[Path(imgs[i][0]).stem for i in keep],
        points=torch.from_numpy(pts * scale).float(),
        world_scale=scale,
    )


_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")


def load_nerfstudio(root: str | Path, split: str = "train", factor: int = 1, hold: int = 8) -> SceneData:
    """nerfstudio transforms.json: fl_x, fl_y, cx, cy, w, h at the top or per frame (a frame's own
    values win), OpenGL transform_matrix per frame, `ply_file_path` as the scene's cloud (same frame).
    Non-zero distortion (k1..k4, p1, p2) and non-perspective cameras are refused, naming the frame.
    Images divided by `factor`; every `hold`-th frame (file order) is the test split."""
    root = Path(root)
    meta_path = root / "transforms.json"
    if not meta_path.is_file():
        raise SceneFormatError(meta_path, "not found (expected a nerfstudio dataset folder)")
    meta = _read_json(meta_path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise SceneFormatError(meta_path, "needs a non-empty 'frames' list")
    keep = _split(list(range(len(frames))), split, hold)
    files, poses, intr = [], [], []
    for i in keep:
        fr = frames[i]
        if (
            not isinstance(fr, dict)
            or not isinstance(fr.get("file_path"), str)
            or "transform_matrix" not in fr
        ):
            raise SceneFormatError(
                meta_path, f"frame {i} needs a 'file_path' string and a 'transform_matrix'"
            )
        c = {**meta, **fr}
        if c.get("camera_model", "OPENCV") not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "PERSPECTIVE"):
            raise SceneFormatError(meta_path, f"frame {i}: camera_model {c['camera_model']} is not supported")
        bad = {k: c[k] for k in _DISTORTION if c.get(k)}
        if bad:
            raise SceneFormatError(
                meta_path, f"frame {i} ({fr['file_path']}) has lens distortion {bad}: undistort the images "
                "first (ns-process-data, colmap image_undistorter)",
            )  # fmt: skip
        missing = [
            k for k in ("fl_x", "fl_y", "cx", "cy", "w", "h") if not isinstance(c.get(k), (int, float))
        ]
        if missing:
            raise SceneFormatError(meta_path, f"frame {i}: intrinsics {missing} missing (top level or frame)")
        files.append(root / fr["file_path"])
        if not files[-1].is_file():
            raise SceneFormatError(files[-1], f"image of frame {i} in {meta_path.name} not found")
        poses.append(_check_pose(fr["transform_matrix"], meta_path, f"frame {i} transform_matrix"))
        intr.append([float(c[k]) for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")])
    size = _scaled_size(_check_same_sizes(files), factor)
    images = [_load_rgb(p, size) for p in files]
    h, w = images[0].shape[:2]
    k = np.array(intr)
    sx, sy = w / k[:, 4], h / k[:, 5]
    points = None
    if meta.get("ply_file_path"):
        from smcl.scene.points import read_points

        points = torch.from_numpy(read_points(root / meta["ply_file_path"])).float()
    return SceneData(
        images=torch.from_numpy(np.stack(images)),
        c2w=torch.from_numpy(np.stack(poses)).float(),
        focal=torch.from_numpy(np.stack([k[:, 0] * sx, k[:, 1] * sy], 1)).float(),
        principal=torch.from_numpy(np.stack([k[:, 2] * sx, k[:, 3] * sy], 1)).float(),
        names=[p.stem for p in files],
        points=points,
    )
