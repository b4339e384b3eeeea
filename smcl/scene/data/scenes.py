"""Scene loaders for the per-scene point renderer (spec smcl.md 4.3, 4.4, 4.6) and LLFF.

All loaders return a `SceneData` with OpenGL camera-to-world poses (x right, y up, looking down -z),
images composited on white in [0, 1], and per-view focal lengths. Rays follow the PAPR convention:
pixel centres at +0.5, principal point at the image centre (unless `use_principal_point`), scene
multiplied by `coord_scale`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from common.errors import TriVisionError

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


class SceneFormatError(TriVisionError, ValueError):
    """A scene folder is missing a file or a file has unexpected content."""


@dataclass
class SceneData:
    """One split of a scene. images (N, H, W, 3) in [0, 1]; c2w (N, 4, 4) OpenGL; focal (N, 2) fx, fy."""

    images: Tensor
    c2w: Tensor
    focal: Tensor
    principal: Tensor  # (N, 2) cx, cy in pixels (ignored unless use_principal_point)
    names: list[str]

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])


def _load_rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an 8-bit PNG/JPG, composite RGBA on white, optionally resize (W, H) bicubic -> float32."""
    if not path.is_file():
        raise SceneFormatError(f"{path}: image file not found")
    try:
        img = Image.open(path)
        img.load()
    except Exception as err:  # PIL raises many types
        raise SceneFormatError(f"{path}: cannot read image ({err})") from err
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.BICUBIC)
    arr = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    return arr[..., :3] * arr[..., 3:] + (1.0 - arr[..., 3:])


def load_blender(root: str | Path, split: str = "train", factor: int = 1) -> SceneData:
    """NeRF-Synthetic: transforms_<split>.json; focal = 0.5 W / tan(0.5 camera_angle_x); poses as is."""
    root = Path(root)
    meta_path = root / f"transforms_{split}.json"
    if not meta_path.is_file():
        raise SceneFormatError(f"{meta_path}: not found (expected a NeRF-Synthetic scene folder)")
    meta = json.loads(meta_path.read_text())
    if "camera_angle_x" not in meta or not meta.get("frames"):
        raise SceneFormatError(f"{meta_path}: needs 'camera_angle_x' and a non-empty 'frames' list")
    images, poses, names = [], [], []
    for fr in meta["frames"]:
        p = root / fr["file_path"]
        p = p if p.suffix else p.with_suffix(".png")
        first = Image.open(p).size if not images else None
        size = None
        if factor > 1:
            w0, h0 = first if first else (images[0].shape[1] * factor, images[0].shape[0] * factor)
            size = (w0 // factor, h0 // factor)
        images.append(_load_rgb(p, size))
        poses.append(np.asarray(fr["transform_matrix"], dtype=np.float64))
        names.append(p.stem)
    h, w = images[0].shape[:2]
    f = 0.5 * w / np.tan(0.5 * float(meta["camera_angle_x"]))
    n = len(images)
    return SceneData(
        images=torch.from_numpy(np.stack(images)),
        c2w=torch.from_numpy(np.stack(poses)).float(),
        focal=torch.tensor([[f, f]] * n, dtype=torch.float32),
        principal=torch.tensor([[w / 2, h / 2]] * n, dtype=torch.float32),
        names=names,
    )


def parse_nsvf_intrinsics(path: Path) -> tuple[float, float, float, float, tuple[int, int] | None]:
    """Return fx, fy, cx, cy and the (H, W) the intrinsics refer to, if the file states it.

    Accepts a 3x3/4x4 matrix or the "f cx cy 0" first-line form (optionally followed by the SRN-style
    lines origin / near / scale / "H W").
    """
    if not path.is_file():
        raise SceneFormatError(f"{path}: intrinsics file not found")
    rows = [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise SceneFormatError(f"{path}: empty intrinsics file")
    is_matrix = (
        len(rows) >= 3 and all(len(r) >= 3 for r in rows[:3]) and rows[1][0] == 0.0 and rows[1][1] != 0
    )
    if is_matrix:
        return rows[0][0], rows[1][1], rows[0][2], rows[1][2], None
    if len(rows[0]) < 3:
        raise SceneFormatError(f"{path}: first line must be 'f cx cy [0]' or the file a 3x3/4x4 matrix")
    f, cx, cy = rows[0][:3]
    hw = (int(rows[-1][0]), int(rows[-1][1])) if len(rows) >= 5 and len(rows[-1]) == 2 else None
    return f, f, cx, cy, hw


def load_nsvf(
    root: str | Path,
    split: str = "train",
    factor: int = 2,
    target_size: tuple[int, int] = (2176, 1280),
    prefixes: dict[str, str] | None = None,
) -> SceneData:
    """NSVF layout (T&T): rgb/<p>_XXXX.png, pose/<p>_XXXX.txt (OpenCV c2w), intrinsics.txt.

    factor 1 keeps native size; factor > 1 resizes (anisotropic, bicubic) to target_size / factor,
    e.g. 1088x640, scaling fx by new W / W and fy by new H / H. Split prefixes: train 0_, test/val 1_.
    """
    root = Path(root)
    prefixes = prefixes or {"train": "0_", "val": "1_", "test": "1_"}
    if split not in prefixes:
        raise SceneFormatError(f"{root}: unknown split {split!r}; known: {sorted(prefixes)}")
    rgb_dir, pose_dir = root / "rgb", root / "pose"
    for d in (rgb_dir, pose_dir):
        if not d.is_dir():
            raise SceneFormatError(f"{d}: folder not found (expected NSVF layout rgb/ pose/ intrinsics.txt)")
    files = sorted(
        (
            p
            for p in rgb_dir.iterdir()
            if p.name.startswith(prefixes[split]) and p.suffix.lower() in {".png", ".jpg"}
        ),
        key=lambda p: int(p.stem.rsplit("_", 1)[-1]),
    )
    if not files:
        raise SceneFormatError(f"{rgb_dir}: no images with prefix {prefixes[split]!r} for split {split!r}")
    fx, fy, cx, cy, hw_ref = parse_nsvf_intrinsics(root / "intrinsics.txt")
    w0, h0 = Image.open(files[0]).size
    if hw_ref is not None and hw_ref != (h0, w0):  # intrinsics given for another resolution
        fx, cx = fx * w0 / hw_ref[1], cx * w0 / hw_ref[1]
        fy, cy = fy * h0 / hw_ref[0], cy * h0 / hw_ref[0]
    size = None if factor == 1 else (target_size[0] // factor, target_size[1] // factor)
    images, poses = [], []
    for p in files:
        images.append(_load_rgb(p, size))
        pose_file = pose_dir / (p.stem + ".txt")
        if not pose_file.is_file():
            raise SceneFormatError(f"{pose_file}: pose missing for image {p.name}")
        m = np.loadtxt(pose_file).reshape(-1)
        if m.size not in (12, 16):
            raise SceneFormatError(f"{pose_file}: expected a 3x4 or 4x4 matrix, got {m.size} numbers")
        m = np.vstack([m.reshape(-1, 4)[:3], [0, 0, 0, 1]])
        poses.append(m @ OPENCV_TO_OPENGL)
    h, w = images[0].shape[:2]
    sx, sy = w / w0, h / h0
    n = len(files)
    return SceneData(
        images=torch.from_numpy(np.stack(images)),
        c2w=torch.from_numpy(np.stack(poses)).float(),
        focal=torch.tensor([[fx * sx, fy * sy]] * n, dtype=torch.float32),
        principal=torch.tensor([[cx * sx, cy * sy]] * n, dtype=torch.float32),
        names=[p.stem for p in files],
    )


def load_llff(
    root: str | Path, split: str = "train", image_dir: str = "images_8", hold: int = 8
) -> SceneData:
    """LLFF poses_bounds.npy (N x 17: 3x5 [R|t|hwf] in (down, right, back) axes + near/far).

    Poses are converted to OpenGL (right, up, back) and the scene scaled so that the nearest bound is
    1/0.75 (the NeRF convention); every `hold`-th view is the test split.
    """
    root = Path(root)
    pb_path = root / "poses_bounds.npy"
    if not pb_path.is_file():
        raise SceneFormatError(f"{pb_path}: not found (expected an LLFF scene folder)")
    pb = np.load(pb_path)
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise SceneFormatError(f"{pb_path}: expected shape (N, 17), got {pb.shape}")
    files = sorted(p for p in (root / image_dir).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if len(files) != pb.shape[0]:
        raise SceneFormatError(f"{root / image_dir}: {len(files)} images but {pb.shape[0]} poses")
    poses = pb[:, :15].reshape(-1, 3, 5)
    bounds = pb[:, 15:]
    h_full, w_full, f_full = poses[0, :, 4]
    rot = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
    scale = 1.0 / (bounds.min() * 0.75)
    rot[:, :, 3] *= scale
    idx = np.arange(len(files))
    keep = idx[idx % hold == 0] if split == "test" else idx[idx % hold != 0]
    images = [_load_rgb(files[i]) for i in keep]
    h, w = images[0].shape[:2]
    f = f_full * w / w_full
    c2w = np.tile(np.eye(4), (len(keep), 1, 1))
    c2w[:, :3, :4] = rot[keep]
    n = len(keep)
    return SceneData(
        images=torch.from_numpy(np.stack(images)),
        c2w=torch.from_numpy(c2w).float(),
        focal=torch.tensor([[f, f * (h / h_full) / (w / w_full)]] * n, dtype=torch.float32),
        principal=torch.tensor([[w / 2, h / 2]] * n, dtype=torch.float32),
        names=[files[i].stem for i in keep],
    )


def get_rays_papr(
    h: int,
    w: int,
    focal: Tensor,
    c2w: Tensor,
    coord_scale: float = 1.0,
    principal: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Rays for one camera: origins, unit directions, each (H, W, 3), in the scaled scene.

    x = (i + 0.5 - cx) / fx, y = -(j + 0.5 - cy) / fy, direction (x, y, -1) rotated by c2w; cx, cy
    default to the image centre (the official behaviour).
    """
    cx, cy = (w / 2, h / 2) if principal is None else (float(principal[0]), float(principal[1]))
    j, i = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    dirs = torch.stack([(i + 0.5 - cx) / focal[0], -(j + 0.5 - cy) / focal[1], -torch.ones_like(i)], -1)
    d = dirs @ c2w[:3, :3].T
    d = d / d.norm(dim=-1, keepdim=True)
    o = (c2w[:3, 3] * coord_scale).expand_as(d)
    return o.contiguous(), d
