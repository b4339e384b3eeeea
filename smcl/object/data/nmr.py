"""DVR/NMR object loader with pixelNeRF's conventions (spec smcl.md 4.1, 4.6) and an NMR-layout writer.

Layout: <root>/<synset>/<obj>/{image/*.png, mask/*.png, cameras.npz}, <root>/<synset>/softras_<split>.lst,
optional <root>/metadata.yaml (JSON text).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from common.cameras import change_world_axes, opencv_to_opengl, opengl_to_opencv
from common.errors import DataError
from common.image_io import list_images, read_image, write_image
from common.io import atomic_savez, atomic_write_text, load_npz, path_inside
from common.rays import get_rays
from common.viz import to_uint8

# DVR's y-up world -> our z-up world: (x, y, z) -> (x, -z, y). Camera axes: OpenCV -> OpenGL (common.cameras).
R_WORLD = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
NMR_NEAR, NMR_FAR = 1.2, 4.0


def load_rgb(path: Path) -> np.ndarray:
    """HxWx3 float32 in [0,1]: the first three channels (alpha dropped, not composited, as the official loader)."""
    return read_image(path, mode="rgb", alpha="drop")


def load_mask(path: Path) -> np.ndarray:
    """HxW bool: channel 0 > 0 (any non-zero value, as pixelNeRF's bbox)."""
    return read_image(path, mode="unchanged", dtype="uint16")[..., 0] > 0


def mask_bbox(mask: np.ndarray, path: Path | str = "<mask>") -> np.ndarray:
    """Tight [cmin, rmin, cmax, rmax] of non-zero pixels; raises on an empty mask (as the official code)."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        raise DataError(path, "mask is empty, no bounding box")
    r = np.where(rows)[0]
    c = np.where(cols)[0]
    return np.array([c[0], r[0], c[-1], r[-1]], dtype=np.float32)


def read_object_list(path: Path) -> list[str]:
    """Object names of a softras_<split>.lst; a name that would lead out of the synset folder is refused."""
    if not path.is_file():
        raise DataError(path, "object list is missing")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    for n in names:  # they become <root>/<synset>/<name> and <renders>/<synset>_<name>
        path_inside(path.parent, n, source=path)
    return names


@dataclass(frozen=True)
class NMRDatasetConfig:
    root: str = ""
    split: Literal["train", "val", "test"] = "train"  # -> softras_<split>.lst
    synsets: tuple[str, ...] = ()  # empty: every synset folder with a list file
    list_prefix: str = "softras_"
    z_near: float = NMR_NEAR
    z_far: float = NMR_FAR
    # pixelNeRF casts rays through integer pixel coordinates with the principal point at (W/2, H/2), i.e.
    # half a pixel off the pixel centres (official behaviour, default). Data rendered through pixel centres
    # (common.synthetic's writer, most renderers) needs pixel_centers=True: the principal point is moved
    # to (W/2 - 0.5, H/2 - 0.5) so that the integer-pixel rays go through the centres the writer used.
    pixel_centers: bool = False
    # check every object's cameras.npz and image/mask file names when the dataset is built (no image is
    # decoded; ~1 ms per object), so a broken object stops the run at start-up, not at the step that draws it
    validate: bool = True


class NMRDataset(Dataset):
    """One item per object: dict with
    images (NV,3,H,W) float in [0,1]; poses (NV,4,4) camera->world, OpenGL camera, z-up world;
    focal (scalar, pixels); c (2,) principal point; bbox (NV,4) [cmin,rmin,cmax,rmax] (only with masks);
    near/far scalars; index. `objects[i]` gives (synset, object id).
    """

    def __init__(self, cfg: NMRDatasetConfig) -> None:
        self.cfg = cfg
        root = Path(cfg.root)
        if not root.is_dir():
            raise DataError(root, "dataset root does not exist")
        synsets = cfg.synsets or tuple(
            sorted(p.name for p in root.iterdir() if (p / f"{cfg.list_prefix}{cfg.split}.lst").is_file())
        )
        self.objects: list[tuple[str, str]] = []
        for s in synsets:
            for o in read_object_list(root / s / f"{cfg.list_prefix}{cfg.split}.lst"):
                if not (root / s / o).is_dir():
                    raise DataError(root / s / o, "listed object folder is missing")
                self.objects.append((s, o))
        if not self.objects:
            raise DataError(root, f"no objects for split {cfg.split!r}")
        self.root = root
        if cfg.validate:
            for i in range(len(self.objects)):
                d = self.object_dir(i)
                n = len(read_cameras(d / "cameras.npz"))
                view_files(d / "image", n, "image")
                if (d / "mask").is_dir():
                    view_files(d / "mask", n, "mask")

    def __len__(self) -> int:
        return len(self.objects)

    def object_dir(self, index: int) -> Path:
        s, o = self.objects[index]
        return self.root / s / o

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        d = self.object_dir(index)
        cams = read_cameras(d / "cameras.npz")
        n = len(cams)
        img_paths = view_files(d / "image", n, "image")
        mask_paths = view_files(d / "mask", n, "mask") if (d / "mask").is_dir() else []
        images, bboxes = [], []
        for i, p in enumerate(img_paths):
            img = load_rgb(p)
            if images and img.shape != images[0].shape:
                raise DataError(p, f"size {img.shape[1]}x{img.shape[0]} differs from {img_paths[0].name}'s "
                                f"{images[0].shape[1]}x{images[0].shape[0]} (all views of an object share one size)")  # fmt: skip
            images.append(img)
            if mask_paths:
                mask = load_mask(mask_paths[i])
                if mask.shape != img.shape[:2]:
                    raise DataError(mask_paths[i], f"mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                                    f"its image's {img.shape[1]}x{img.shape[0]}")  # fmt: skip
                bboxes.append(mask_bbox(mask, mask_paths[i]))
        h, w = images[0].shape[:2]
        focal = None
        for i, (_, cm) in enumerate(cams):
            fx, fy = cm[0, 0], cm[1, 1]
            if not np.isclose(abs(fx), abs(fy)):
                raise DataError(d / "cameras.npz", f"camera_mat_{i} has fx {fx} != fy {fy}")
            f_i = fx * w / 2.0
            if focal is not None and not np.isclose(focal, f_i, rtol=1e-4):
                raise DataError(
                    d / "cameras.npz", f"focal differs across views ({focal} vs {f_i} at view {i})"
                )
            focal = f_i
        c2w = torch.from_numpy(np.stack([c for c, _ in cams]))  # DVR: OpenCV camera, y-up world (float64)
        poses = change_world_axes(opencv_to_opengl(c2w), R_WORLD)
        out = {
            "images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            "poses": poses.float(),
            "focal": torch.tensor(float(focal)),
            "c": torch.tensor([w / 2.0, h / 2.0]) - (0.5 if self.cfg.pixel_centers else 0.0),
            "near": torch.tensor(self.cfg.z_near),
            "far": torch.tensor(self.cfg.z_far),
            "index": torch.tensor(index),
        }
        if bboxes:
            out["bbox"] = torch.from_numpy(np.stack(bboxes))
        return out


def _matrix(cams, key: str, path: Path, shapes: tuple[tuple[int, int], ...]) -> np.ndarray:
    m = np.asarray(cams[key])
    if m.dtype.kind not in "fiu" or tuple(m.shape) not in shapes:
        want = " or ".join(f"{a}x{b}" for a, b in shapes)
        raise DataError(path, f"{key} has shape {'x'.join(map(str, m.shape))} {m.dtype}, expected {want}")
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise DataError(path, f"{key} has non-finite values (NaN or inf)")
    if m.shape == (4, 4) and shapes[-1] == (4, 4) and not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise DataError(path, f"{key} is 4x4 but its last row is {m[3].tolist()}, not [0, 0, 0, 1]")
    return m


def read_cameras(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """DVR `cameras.npz` -> per view (camera->world 4x4 float64, OpenCV camera; camera_mat).

    View i is `world_mat_i` (world->camera, 3x4 as DVR writes it or 4x4 with last row 0 0 0 1), optionally
    `world_mat_inv_i` (4x4 camera->world, used when present) and `camera_mat_i` (3x3 or 4x4). The views are
    numbered 0..N-1 without gaps. Any malformed entry raises DataError naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "cameras file is missing")
    cams = load_npz(path)  # no pickles; a corrupt archive is a DataError naming the file
    ids = sorted(int(k.removeprefix("world_mat_")) for k in cams if re.fullmatch(r"world_mat_\d+", k))
    if not ids:
        raise DataError(path, "no world_mat_<i> entries")
    if ids != list(range(len(ids))):
        gap = next(i for i in range(len(ids) + 1) if i not in ids)
        raise DataError(path, f"views are not numbered 0..{len(ids) - 1}: world_mat_{gap} is missing")
    out = []
    for i in ids:
        if f"camera_mat_{i}" not in cams:
            raise DataError(path, f"camera_mat_{i} is missing")
        wm = _matrix(cams, f"world_mat_{i}", path, ((3, 4), (4, 4)))
        cm = _matrix(cams, f"camera_mat_{i}", path, ((3, 3), (4, 4)))
        if f"world_mat_inv_{i}" in cams:
            c2w = _matrix(cams, f"world_mat_inv_{i}", path, ((4, 4),))
        else:
            w2c = np.eye(4)
            w2c[:3] = wm[:3]
            if abs(np.linalg.det(w2c[:3, :3])) < 1e-12:
                raise DataError(path, f"world_mat_{i} is singular (no camera pose)")
            c2w = np.linalg.inv(w2c)
        out.append((c2w, cm))
    return out


def view_files(folder: Path, n: int, kind: str) -> list[Path]:
    """The files `folder/<i>.<ext>` for views 0..n-1 (any zero padding), matched to cameras by their number.

    A missing view, a file whose number has no camera, two files for one view, or a name that is not a view
    number raise DataError naming the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, f"{kind} folder is missing")
    by_view: dict[int, Path] = {}
    for p in list_images(folder):
        if not p.stem.isdigit():
            raise DataError(p, f"{kind} file name is not a view number (expected e.g. 0003{p.suffix})")
        i = int(p.stem)
        if i >= n:
            raise DataError(p, f"{kind} of view {i} has no camera (cameras.npz holds views 0..{n - 1})")
        if i in by_view:
            raise DataError(p, f"two {kind} files for view {i} ({by_view[i].name} and {p.name})")
        by_view[i] = p
    for i in range(n):
        if i not in by_view:
            raise DataError(
                folder / f"{i:04d}.png", f"{kind} of view {i} is missing ({n} cameras in cameras.npz)"
            )
    return [by_view[i] for i in range(n)]


def write_nmr_object(
    obj_dir: Path, images: np.ndarray, poses_gl_zup: np.ndarray, focal: float, masks: np.ndarray | None = None
) -> None:
    """Write one object in NMR layout from model-convention cameras (inverse of the loader's conversion).

    images (NV,H,W,3) float in [0,1] or uint8; poses (NV,4,4) camera->world in the loader's convention;
    focal in pixels; masks (NV,H,W) bool (optional).
    """
    obj_dir = Path(obj_dir)
    cams = {}
    c2w_dvr = opengl_to_opencv(
        change_world_axes(torch.as_tensor(np.asarray(poses_gl_zup, np.float64)), R_WORLD.T)
    )
    for i, (img, pose) in enumerate(zip(images, c2w_dvr.numpy())):
        h, w = img.shape[:2]
        write_image(obj_dir / "image" / f"{i:04d}.png", to_uint8(img, rounding="half_up")[..., :3])
        cams[f"world_mat_{i}"] = np.linalg.inv(pose)[:3, :4]
        cams[f"world_mat_inv_{i}"] = pose
        cm = np.eye(4)
        cm[0, 0] = cm[1, 1] = 2.0 * focal / w
        cams[f"camera_mat_{i}"] = cm
        if masks is not None:
            write_image(obj_dir / "mask" / f"{i:04d}.png", (masks[i] > 0).astype(np.uint8) * 255)
    atomic_savez(obj_dir / "cameras.npz", **cams)


def write_metadata(root: Path, names: dict[str, str]) -> Path:
    """`metadata.yaml` with JSON content {synset: {"name": ...}} (the official per-category table)."""
    path = Path(root) / "metadata.yaml"
    atomic_write_text(path, json.dumps({s: {"name": n} for s, n in names.items()}, indent=1))
    return path


def pixelnerf_rays(
    poses: Tensor, focal: Tensor | float, c: Tensor, height: int, width: int, near: float, far: float
) -> Tensor:
    """pixelNeRF rays at integer pixels: dir_cam = ((i-cx)/f, -(j-cy)/f, -1), normalised, rotated.

    poses (..., 4, 4) camera->world -> rays (..., H, W, 8) = [origin, unit dir, near, far]. Built on
    common.rays.get_rays (OpenGL axes, pixel_center=False: pixelNeRF's integer-pixel convention; the
    loaders' pixel_centers option moves c instead).
    """
    f = torch.as_tensor(focal, dtype=poses.dtype)
    c = torch.as_tensor(c, dtype=poses.dtype)
    K = torch.stack(
        [torch.stack([f, f * 0, c[0]]), torch.stack([f * 0, f, c[1]]), c.new_tensor([0.0, 0.0, 1.0])]
    )
    origins, dirs = get_rays(height, width, K, poses, pixel_center=False, convention="opengl")
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    nf = torch.tensor([near, far], dtype=poses.dtype).expand(*dirs.shape[:-1], 2)
    return torch.cat([origins, dirs, nf], dim=-1)


def pixelnerf_rays_at(
    poses: Tensor, focal: Tensor | float, c: Tensor, rows: Tensor, cols: Tensor, near: float, far: float
) -> Tensor:
    """pixelnerf_rays for chosen pixels only: poses (N, 4, 4), rows/cols (N,) integer -> rays (N, 8)."""
    f = torch.as_tensor(focal, dtype=poses.dtype)
    i, j = cols.to(poses.dtype), rows.to(poses.dtype)
    d = torch.stack([(i - c[0]) / f, -(j - c[1]) / f, -torch.ones_like(i)], dim=-1)
    d = d / d.norm(dim=-1, keepdim=True)
    dirs = (poses[:, :3, :3] @ d[..., None]).squeeze(-1)
    nf = torch.tensor([near, far], dtype=poses.dtype).expand(len(dirs), 2)
    return torch.cat([poses[:, :3, 3], dirs, nf], dim=-1)
