"""Scene loaders for the per-scene point renderer (spec smcl.md 4.3, 4.4, 4.6) and LLFF.

All loaders return a `SceneData` with OpenGL camera-to-world poses (x right, y up, looking down -z),
images composited on white in [0, 1], and per-view focal lengths. Rays follow the PAPR convention:
pixel centres at +0.5, principal point at the image centre (unless `use_principal_point`), scene
multiplied by `coord_scale`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.cameras import intrinsics_matrix, opencv_to_opengl
from common.errors import DataError
from common.image_io import ImageReadError, image_size, read_image
from common.io import load_npy, read_json
from common.rays import get_rays


class SceneFormatError(DataError):
    """A scene folder is missing a file or a file has unexpected content: ``SceneFormatError(path, why)``."""


@dataclass
class SceneData:
    """One split of a scene. images (N, H, W, 3) in [0, 1]; c2w (N, 4, 4) OpenGL; focal (N, 2) fx, fy."""

    images: Tensor
    c2w: Tensor
    focal: Tensor
    principal: Tensor  # (N, 2) cx, cy in pixels (ignored unless use_principal_point)
    names: list[str]
    points: Tensor | None = None  # (M, 3) the capture's own cloud in the cameras' frame (COLMAP, nerfstudio)
    world_scale: float = 1.0  # scene units per source unit (LLFF / COLMAP: 1 / (0.75 near))

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])


def _size_of(path: Path) -> tuple[int, int]:
    """(H, W) of an image file; a missing or unreadable file is a SceneFormatError naming it."""
    if not path.is_file():
        raise SceneFormatError(path, "image file not found")
    try:
        return image_size(path)
    except Exception as err:  # Pillow raises many types
        raise SceneFormatError(path, f"cannot read image ({err})") from err


def _load_rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """8-bit PNG/JPG, RGBA composited on white, optionally resized to size (H, W) with Pillow's bicubic
    filter (as the official loader) -> float32 (H, W, 3) in [0, 1]."""
    try:
        return read_image(path, mode="rgb", alpha="white", size=size, interpolation="cubic", backend="pil")
    except ImageReadError as err:
        raise SceneFormatError(path, err.why) from err


def _check_same_sizes(files: list[Path]) -> tuple[int, int]:
    """(H, W) shared by every frame of a split; a frame of another size is an error naming both."""
    h0, w0 = _size_of(files[0])
    for f in files[1:]:
        hw = _size_of(f)
        if hw != (h0, w0):
            raise SceneFormatError(
                f,
                f"image is {hw[1]}x{hw[0]}, but {files[0].name} is {w0}x{h0} (all frames of a split must "
                "have one size)",
            )
    return h0, w0


def _scaled_size(hw: tuple[int, int], factor: int) -> tuple[int, int] | None:
    """(H, W) // factor, or None (native size, no resampling) when nothing changes."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise SceneFormatError("data.factor", f"must be a positive integer, got {factor!r}")
    out = (hw[0] // factor, hw[1] // factor)
    return None if factor == 1 and out == hw else out


def _check_pose(m, where: Path, what: str) -> np.ndarray:
    """A finite 4x4 camera-to-world matrix with last row (0, 0, 0, 1) -> float64 array."""
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise SceneFormatError(where, f"{what} is not a numeric matrix ({err})") from err
    if a.shape != (4, 4):
        shape = "x".join(str(n) for n in a.shape) or "a scalar"
        raise SceneFormatError(where, f"{what} has shape {shape}, expected a 4x4 camera-to-world matrix")
    if not np.isfinite(a).all():
        raise SceneFormatError(where, f"{what} contains NaN or infinite values")
    if not np.allclose(a[3], [0.0, 0.0, 0.0, 1.0], atol=1e-4):
        raise SceneFormatError(where, f"{what} last row is {a[3].tolist()}, expected [0, 0, 0, 1]")
    return a


def _read_json(path: Path) -> dict:
    meta = read_json(path)  # DataError naming the file, line and column of a syntax error
    if not isinstance(meta, dict):
        raise SceneFormatError(path, f"expected a JSON object, got {type(meta).__name__}")
    return meta


def load_blender(root: str | Path, split: str = "train", factor: int = 1) -> SceneData:
    """NeRF-Synthetic: transforms_<split>.json; focal = 0.5 W / tan(0.5 camera_angle_x); poses as is.

    Every problem is reported at load time, naming the file: invalid JSON, a missing camera_angle_x or
    frame list, a missing image, a pose that is not a finite 4x4 matrix, frames of different sizes.
    """
    root = Path(root)
    meta_path = root / f"transforms_{split}.json"
    if not meta_path.is_file():
        raise SceneFormatError(meta_path, "not found (expected a NeRF-Synthetic scene folder)")
    meta = _read_json(meta_path)
    frames = meta.get("frames")
    if "camera_angle_x" not in meta or not isinstance(frames, list) or not frames:
        raise SceneFormatError(meta_path, "needs 'camera_angle_x' and a non-empty 'frames' list")
    fov = meta["camera_angle_x"]
    if isinstance(fov, bool) or not isinstance(fov, (int, float)) or not 0 < fov < math.pi:
        raise SceneFormatError(meta_path, f"camera_angle_x must be a number in (0, pi) radians, got {fov!r}")
    files, poses = [], []
    for i, fr in enumerate(frames):
        if (
            not isinstance(fr, dict)
            or not isinstance(fr.get("file_path"), str)
            or "transform_matrix" not in fr
        ):
            raise SceneFormatError(
                meta_path, f"frame {i} needs a 'file_path' string and a 'transform_matrix'"
            )
        p = root / fr["file_path"]
        p = p if p.suffix else p.with_suffix(".png")
        if not p.is_file():
            raise SceneFormatError(p, f"image of frame {i} in {meta_path.name} not found")
        files.append(p)
        poses.append(
            _check_pose(fr["transform_matrix"], meta_path, f"frame {i} ({fr['file_path']}) transform_matrix")
        )
    size = _scaled_size(_check_same_sizes(files), factor)
    images = [_load_rgb(p, size) for p in files]
    h, w = images[0].shape[:2]
    f = 0.5 * w / np.tan(0.5 * float(fov))
    n = len(images)
    return SceneData(
        images=torch.from_numpy(np.stack(images)),
        c2w=torch.from_numpy(np.stack(poses)).float(),
        focal=torch.tensor([[f, f]] * n, dtype=torch.float32),
        principal=torch.tensor([[w / 2, h / 2]] * n, dtype=torch.float32),
        names=[p.stem for p in files],
    )


def parse_nsvf_intrinsics(path: Path) -> tuple[float, float, float, float, tuple[int, int] | None]:
    """Return fx, fy, cx, cy and the (H, W) the intrinsics refer to, if the file states it.

    Accepts a 3x3/4x4 matrix or the "f cx cy 0" first-line form (optionally followed by the SRN-style
    lines origin / near / scale / "H W").
    """
    if not path.is_file():
        raise SceneFormatError(path, "intrinsics file not found")
    try:
        rows = [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
    except ValueError as err:
        raise SceneFormatError(path, f"non-numeric value ({err})") from err
    if not rows:
        raise SceneFormatError(path, "empty intrinsics file")
    if not all(math.isfinite(v) for r in rows for v in r):
        raise SceneFormatError(path, "intrinsics contain NaN or infinite values")
    is_matrix = (
        len(rows) >= 3 and all(len(r) >= 3 for r in rows[:3]) and rows[1][0] == 0.0 and rows[1][1] != 0
    )
    if is_matrix:
        fx, fy, cx, cy, hw = rows[0][0], rows[1][1], rows[0][2], rows[1][2], None
    else:
        if len(rows[0]) < 3:
            raise SceneFormatError(path, "first line must be 'f cx cy [0]' or the file a 3x3/4x4 matrix")
        f, cx, cy = rows[0][:3]
        fx = fy = f
        hw = (int(rows[-1][0]), int(rows[-1][1])) if len(rows) >= 5 and len(rows[-1]) == 2 else None
    if fx <= 0 or fy <= 0:
        raise SceneFormatError(path, f"focal lengths must be positive, got fx={fx}, fy={fy}")
    return fx, fy, cx, cy, hw


def load_nsvf(
    root: str | Path,
    split: str = "train",
    factor: int = 1,
    target_size: tuple[int, int] | None = None,
    prefixes: dict[str, str] | None = None,
) -> SceneData:
    """NSVF layout (T&T): rgb/<p>_XXXX.png, pose/<p>_XXXX.txt (OpenCV 4x4 c2w), intrinsics.txt.

    As in every format, `factor` divides the native size (bicubic, fx and fy scaled by the new W / W
    and H / H). `target_size` (W, H) replaces the native size first: the official T&T preprocessing
    resizes 1920x1080 to 2176x1280 (anisotropic), so T&T factor 2 gives 1088x640. Split prefixes:
    train 0_, test/val 1_.
    A missing pose or image, a pose that is not a finite 4x4 matrix and frames of different sizes are
    errors naming the file.
    """
    root = Path(root)
    prefixes = prefixes or {"train": "0_", "val": "1_", "test": "1_"}
    if split not in prefixes:
        raise SceneFormatError(root, f"unknown split {split!r}; known: {sorted(prefixes)}")
    rgb_dir, pose_dir = root / "rgb", root / "pose"
    for d in (rgb_dir, pose_dir):
        if not d.is_dir():
            raise SceneFormatError(d, "folder not found (expected NSVF layout rgb/ pose/ intrinsics.txt)")
    pre = prefixes[split]

    def frame_index(p: Path) -> int:
        try:
            return int(p.stem.rsplit("_", 1)[-1])
        except ValueError:
            raise SceneFormatError(p, f"file name must be {pre}<number>{p.suffix}") from None

    files = sorted(
        (p for p in rgb_dir.iterdir() if p.name.startswith(pre) and p.suffix.lower() in {".png", ".jpg"}),
        key=frame_index,
    )
    if not files:
        raise SceneFormatError(rgb_dir, f"no images with prefix {pre!r} for split {split!r}")
    stems = {p.stem for p in files}
    for pose_file in sorted(pose_dir.glob(f"{pre}*.txt")):
        if pose_file.stem not in stems:
            raise SceneFormatError(pose_file, f"pose without an image {pose_file.stem}.png in {rgb_dir}")
    fx, fy, cx, cy, hw_ref = parse_nsvf_intrinsics(root / "intrinsics.txt")
    h0, w0 = _check_same_sizes(files)
    if hw_ref is not None and hw_ref != (h0, w0):  # intrinsics given for another resolution
        fx, cx = fx * w0 / hw_ref[1], cx * w0 / hw_ref[1]
        fy, cy = fy * h0 / hw_ref[0], cy * h0 / hw_ref[0]
    size = _scaled_size((h0, w0) if target_size is None else (target_size[1], target_size[0]), factor)
    images, poses = [], []
    for p in files:
        pose_file = pose_dir / (p.stem + ".txt")
        if not pose_file.is_file():
            raise SceneFormatError(pose_file, f"pose missing for image {p.name}")
        try:
            m = np.loadtxt(pose_file, ndmin=2)
        except ValueError as err:
            raise SceneFormatError(pose_file, f"not a whitespace-separated matrix ({err})") from err
        m = m.reshape(4, 4) if m.size == 16 else m  # 16 numbers on one line: row-major 4x4
        poses.append(opencv_to_opengl(torch.from_numpy(_check_pose(m, pose_file, "pose"))))
        images.append(_load_rgb(p, size))
    h, w = images[0].shape[:2]
    sx, sy = w / w0, h / h0
    n = len(files)
    return SceneData(
        images=torch.from_numpy(np.stack(images)),
        c2w=torch.stack(poses).float(),
        focal=torch.tensor([[fx * sx, fy * sy]] * n, dtype=torch.float32),
        principal=torch.tensor([[cx * sx, cy * sy]] * n, dtype=torch.float32),
        names=[p.stem for p in files],
    )


def _near_scale(near: float) -> float:
    """The NeRF forward-facing convention: scene units in which the nearest depth is 1 / 0.75."""
    return float(1.0 / (near * 0.75))


def llff_world_scale(root: str | Path) -> float:
    """Scene units per COLMAP unit of an LLFF scene (what load_llff multiplies positions by): clouds
    of the same COLMAP model (points3D) need it to meet the cameras (`prepare_points.py --llff`)."""
    pb_path = Path(root) / "poses_bounds.npy"
    pb = load_npy(pb_path)
    if pb.ndim != 2 or pb.shape[1] != 17 or not np.isfinite(pb[:, 15:]).all() or pb[:, 15:].min() <= 0:
        raise SceneFormatError(pb_path, "expected finite (N, 17) rows with positive near/far bounds")
    return _near_scale(pb[:, 15:].min())


def load_llff(
    root: str | Path,
    split: str = "train",
    factor: int = 8,
    image_dir: str | None = None,
    hold: int = 8,
) -> SceneData:
    """LLFF poses_bounds.npy (N x 17: 3x5 [R|t|hwf] in (down, right, back) axes + near/far).

    Images: `image_dir` when given (then divided by `factor`), else `images_<factor>` when that folder
    exists (as LLFF ships it), else `images` divided by `factor`. Poses are converted to OpenGL (right,
    up, back) and the scene scaled so that the nearest bound is 1/0.75 (the NeRF convention); every
    `hold`-th view (0, hold, 2 hold, ...) is the test split, the others train.
    """
    root = Path(root)
    pb_path = root / "poses_bounds.npy"
    if not pb_path.is_file():
        raise SceneFormatError(pb_path, "not found (expected an LLFF scene folder)")
    try:
        pb = load_npy(pb_path)
    except DataError as err:
        raise SceneFormatError(pb_path, err.why) from err
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise SceneFormatError(pb_path, f"expected shape (N, 17), got {pb.shape}")
    if not np.isfinite(pb).all():
        bad = sorted({int(i) for i in np.nonzero(~np.isfinite(pb))[0]})
        raise SceneFormatError(pb_path, f"NaN or infinite values in the rows of views {bad[:10]}")
    if isinstance(hold, bool) or not isinstance(hold, int) or hold < 2:
        raise SceneFormatError(pb_path, f"hold-out step must be an integer >= 2, got {hold!r}")
    resize = image_dir is not None or not (root / f"images_{factor}").is_dir()
    img_dir = root / (image_dir or (f"images_{factor}" if not resize else "images"))
    if not img_dir.is_dir():
        raise SceneFormatError(
            img_dir, f"image folder not found (data.factor {factor}: images_{factor} or images)"
        )
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if len(files) != pb.shape[0]:
        raise SceneFormatError(img_dir, f"{len(files)} images but {pb.shape[0]} poses in {pb_path.name}")
    size = _scaled_size(_check_same_sizes(files), factor if resize else 1)
    poses = pb[:, :15].reshape(-1, 3, 5)
    bounds = pb[:, 15:]
    h_full, w_full, f_full = poses[0, :, 4]
    rot = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
    scale = _near_scale(bounds.min())
    rot[:, :, 3] *= scale
    idx = np.arange(len(files))
    keep = idx[idx % hold == 0] if split == "test" else idx[idx % hold != 0]
    images = [_load_rgb(files[i], size) for i in keep]
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
        world_scale=float(scale),
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

    common.rays.get_rays with pixel centres at +0.5 and OpenGL axes: x = (i + 0.5 - cx) / fx,
    y = -(j + 0.5 - cy) / fy, direction (x, y, -1) rotated by c2w, then normalised; cx, cy default to
    the image centre (the official behaviour); origins multiplied by coord_scale.
    """
    cx, cy = (w / 2, h / 2) if principal is None else (float(principal[0]), float(principal[1]))
    K = intrinsics_matrix(float(focal[0]), float(focal[1]), cx, cy)
    o, d = get_rays(h, w, K, c2w.float(), pixel_center=True, convention="opengl")
    d = d / d.norm(dim=-1, keepdim=True)
    return (o * coord_scale).contiguous(), d
