"""SRN object loader with pixelNeRF's conventions (spec smcl.md 4.2): <root>/<name>_<split>/<instance>/.

Per instance: intrinsics.txt (first line "f cx cy 0", last line "H W"), rgb/*.png, pose/*.txt (4x4
camera->world, OpenCV axes, turned into OpenGL axes by right-multiplying diag(1,-1,-1,1)).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from common.cameras import opencv_to_opengl
from common.errors import DataError
from common.image_io import resize_image
from smcl.object.data.nmr import load_rgb, mask_bbox


@dataclass(frozen=True)
class SRNDatasetConfig:
    root: str = ""
    name: str = "cars"  # category; "chairs" selects bounds 1.25-2.75, others 0.8-1.8
    split: str = "train"
    # pixelNeRF resizes SRN views with area interpolation (focal, centre and bbox scaled by the same factor,
    # taken from the actual image width); SMCL's latent head (Linear 2048 -> 128) needs 64x64 inputs, so 64
    # is the default here (pixelNeRF's own SRN setting is 128).
    image_size: int = 64


def read_srn_intrinsics(path: Path) -> tuple[float, float, float, int, int]:
    """(f, cx, cy, H, W) from an SRN/NSVF multi-line intrinsics file."""
    if not path.is_file():
        raise DataError(path, "intrinsics file is missing")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        f, cx, cy = (float(v) for v in lines[0][:3])
        h, w = (int(float(v)) for v in lines[-1][:2])
    except (ValueError, IndexError) as e:
        raise DataError(path, "expected 'f cx cy 0' on line 1 and 'H W' on the last line") from e
    return f, cx, cy, h, w


class SRNDataset(Dataset):
    """One item per instance, same keys as NMRDataset (images in [0,1], OpenGL camera->world poses)."""

    def __init__(self, cfg: SRNDatasetConfig) -> None:
        self.cfg = cfg
        base = Path(cfg.root) / f"{cfg.name}_{cfg.split}"
        if cfg.name == "chairs" and cfg.split == "train" and (base / "chairs_2.0_train").is_dir():
            base = base / "chairs_2.0_train"
        if not base.is_dir():
            raise DataError(base, "SRN split folder does not exist")
        self.instances = sorted(p for p in base.iterdir() if (p / "intrinsics.txt").is_file())
        if not self.instances:
            raise DataError(base, "no instances with intrinsics.txt")
        self.near, self.far = (1.25, 2.75) if cfg.name == "chairs" else (0.8, 1.8)

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        d = self.instances[index]
        f, cx, cy, _, _ = read_srn_intrinsics(d / "intrinsics.txt")
        rgbs = sorted((d / "rgb").glob("*.png"))
        poses_p = sorted((d / "pose").glob("*.txt"))
        if not rgbs or len(rgbs) != len(poses_p):
            raise DataError(d, f"{len(rgbs)} images in rgb/ but {len(poses_p)} poses in pose/")
        s = self.cfg.image_size
        images, poses, bboxes, width = [], [], [], None
        for ip, pp in zip(rgbs, poses_p):
            raw = load_rgb(ip)
            if raw.shape[0] != raw.shape[1]:
                raise DataError(ip, f"SRN views must be square, got {raw.shape[1]}x{raw.shape[0]}")
            if width is not None and raw.shape[1] != width:
                raise DataError(ip, f"image size {raw.shape[1]} differs from the first view's {width}")
            width = raw.shape[1]
            mask = np.any(raw < 1.0, axis=-1)  # not pure white
            img = resize_image(raw, (s, s), interpolation="area")  # unchanged when already s x s
            try:
                pose = np.loadtxt(pp, dtype=np.float64).reshape(4, 4)
            except ValueError as e:
                raise DataError(pp, "expected 16 numbers (4x4 camera->world)") from e
            if not np.isfinite(pose).all():
                raise DataError(pp, "pose has non-finite values (NaN or inf)")
            images.append(img)
            poses.append(opencv_to_opengl(torch.from_numpy(pose)))
            bboxes.append(mask_bbox(mask, ip) * (s / raw.shape[1]))
        scale = s / width  # the actual image width, as pixelNeRF (intrinsics may describe another size)
        return {
            "images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            "poses": torch.stack(poses).float(),
            "focal": torch.tensor(f * scale),
            "c": torch.tensor([cx * scale, cy * scale]),
            "near": torch.tensor(self.near),
            "far": torch.tensor(self.far),
            "bbox": torch.from_numpy(np.stack(bboxes)).float(),
            "index": torch.tensor(index),
        }
