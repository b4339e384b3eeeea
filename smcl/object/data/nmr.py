"""DVR/NMR object loader with pixelNeRF's conventions (spec smcl.md 4.1, 4.6) and an NMR-layout writer.

Layout: <root>/<synset>/<obj>/{image/*.png, mask/*.png, cameras.npz}, <root>/<synset>/softras_<split>.lst,
optional <root>/metadata.yaml (JSON text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from common.errors import TriVisionError
from common.rays import get_rays

# OpenCV -> OpenGL camera axes, and DVR's y-up world -> z-up world (x, y, z) -> (x, -z, y).
T_CAM = np.diag([1.0, -1.0, -1.0, 1.0])
T_WORLD = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
NMR_NEAR, NMR_FAR = 1.2, 4.0


class DatasetFormatError(TriVisionError, ValueError):
    """A dataset file is missing or malformed; the message names the file."""


def _load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DatasetFormatError(f"{path}: cannot read image ({e})") from e
    return arr[..., :3].astype(np.float32) / 255.0  # first 3 channels, as the official loader


def _load_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, ValueError) as e:
        raise DatasetFormatError(f"{path}: cannot read mask ({e})") from e
    return (arr[..., 0] if arr.ndim == 3 else arr) > 0


def mask_bbox(mask: np.ndarray, path: Path | str = "<mask>") -> np.ndarray:
    """Tight [cmin, rmin, cmax, rmax] of non-zero pixels; raises on an empty mask (as the official code)."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        raise DatasetFormatError(f"{path}: mask is empty, no bounding box")
    r = np.where(rows)[0]
    c = np.where(cols)[0]
    return np.array([c[0], r[0], c[-1], r[-1]], dtype=np.float32)


def read_object_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetFormatError(f"{path}: object list is missing")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


@dataclass(frozen=True)
class NMRDatasetConfig:
    root: str = ""
    split: str = "train"  # train | val | test -> softras_<split>.lst
    synsets: tuple[str, ...] = ()  # empty: every synset folder with a list file
    list_prefix: str = "softras_"
    z_near: float = NMR_NEAR
    z_far: float = NMR_FAR
    # pixelNeRF casts rays through integer pixel coordinates with the principal point at (W/2, H/2), i.e.
    # half a pixel off the pixel centres (official behaviour, default). Data rendered through pixel centres
    # (common.synthetic's writer, most renderers) needs pixel_centers=True: the principal point is moved
    # to (W/2 - 0.5, H/2 - 0.5) so that the integer-pixel rays go through the centres the writer used.
    pixel_centers: bool = False


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
            raise DatasetFormatError(f"{root}: dataset root does not exist")
        synsets = cfg.synsets or tuple(
            sorted(p.name for p in root.iterdir() if (p / f"{cfg.list_prefix}{cfg.split}.lst").is_file())
        )
        self.objects: list[tuple[str, str]] = []
        for s in synsets:
            for o in read_object_list(root / s / f"{cfg.list_prefix}{cfg.split}.lst"):
                if not (root / s / o).is_dir():
                    raise DatasetFormatError(f"{root / s / o}: listed object folder is missing")
                self.objects.append((s, o))
        if not self.objects:
            raise DatasetFormatError(f"{root}: no objects for split {cfg.split!r}")
        self.root = root

    def __len__(self) -> int:
        return len(self.objects)

    def object_dir(self, index: int) -> Path:
        s, o = self.objects[index]
        return self.root / s / o

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        d = self.object_dir(index)
        img_paths = sorted(p for p in (d / "image").glob("*") if p.suffix.lower() in (".png", ".jpg"))
        if not img_paths:
            raise DatasetFormatError(f"{d / 'image'}: no images")
        mask_paths = sorted((d / "mask").glob("*.png")) if (d / "mask").is_dir() else []
        cam_path = d / "cameras.npz"
        if not cam_path.is_file():
            raise DatasetFormatError(f"{cam_path}: cameras file is missing")
        cams = np.load(cam_path)
        images, poses, bboxes, focal = [], [], [], None
        for i, p in enumerate(img_paths):
            img = _load_rgb(p)
            h, w = img.shape[:2]
            try:
                wm = np.asarray(cams[f"world_mat_{i}"], dtype=np.float64)
                cm = np.asarray(cams[f"camera_mat_{i}"], dtype=np.float64)
            except KeyError as e:
                raise DatasetFormatError(f"{cam_path}: missing key {e.args[0]}") from e
            w2c = np.eye(4)
            w2c[: wm.shape[0], :4] = wm[:, :4]
            c2w = (
                np.asarray(cams[f"world_mat_inv_{i}"]) if f"world_mat_inv_{i}" in cams else np.linalg.inv(w2c)
            )
            poses.append(T_WORLD @ c2w @ T_CAM)
            fx, fy = cm[0, 0], cm[1, 1]
            if not np.isclose(abs(fx), abs(fy)):
                raise DatasetFormatError(f"{cam_path}: camera_mat_{i} has fx {fx} != fy {fy}")
            f_i = fx * w / 2.0
            if focal is not None and not np.isclose(focal, f_i, rtol=1e-4):
                raise DatasetFormatError(f"{cam_path}: focal differs across views ({focal} vs {f_i})")
            focal = f_i
            images.append(img)
            if mask_paths:
                bboxes.append(mask_bbox(_load_mask(mask_paths[i]), mask_paths[i]))
        out = {
            "images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            "poses": torch.from_numpy(np.stack(poses)).float(),
            "focal": torch.tensor(float(focal)),
            "c": torch.tensor([w / 2.0, h / 2.0]) - (0.5 if self.cfg.pixel_centers else 0.0),
            "near": torch.tensor(self.cfg.z_near),
            "far": torch.tensor(self.cfg.z_far),
            "index": torch.tensor(index),
        }
        if bboxes:
            out["bbox"] = torch.from_numpy(np.stack(bboxes))
        return out


def write_nmr_object(
    obj_dir: Path, images: np.ndarray, poses_gl_zup: np.ndarray, focal: float, masks: np.ndarray | None = None
) -> None:
    """Write one object in NMR layout from model-convention cameras (inverse of the loader's conversion).

    images (NV,H,W,3) float in [0,1] or uint8; poses (NV,4,4) camera->world in the loader's convention;
    focal in pixels; masks (NV,H,W) bool (optional).
    """
    obj_dir = Path(obj_dir)
    (obj_dir / "image").mkdir(parents=True, exist_ok=True)
    cams = {}
    for i, (img, pose) in enumerate(zip(images, poses_gl_zup)):
        h, w = img.shape[:2]
        u8 = img if img.dtype == np.uint8 else (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        Image.fromarray(u8[..., :3]).save(obj_dir / "image" / f"{i:04d}.png")
        c2w_dvr = T_WORLD.T @ np.asarray(pose, dtype=np.float64) @ T_CAM
        cams[f"world_mat_{i}"] = np.linalg.inv(c2w_dvr)[:3, :4]
        cams[f"world_mat_inv_{i}"] = c2w_dvr
        cm = np.eye(4)
        cm[0, 0] = cm[1, 1] = 2.0 * focal / w
        cams[f"camera_mat_{i}"] = cm
        if masks is not None:
            (obj_dir / "mask").mkdir(exist_ok=True)
            Image.fromarray((masks[i] > 0).astype(np.uint8) * 255).save(obj_dir / "mask" / f"{i:04d}.png")
    np.savez(obj_dir / "cameras.npz", **cams)


def write_metadata(root: Path, names: dict[str, str]) -> Path:
    """`metadata.yaml` with JSON content {synset: {"name": ...}} (the official per-category table)."""
    path = Path(root) / "metadata.yaml"
    path.write_text(json.dumps({s: {"name": n} for s, n in names.items()}, indent=1))
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
