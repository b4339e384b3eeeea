"""One RGB-X dataset for the CMX folder layouts (LLRGBD, MFNet, NYU Depth v2), spec section 4.

Fixes over the official loader (spec 9.1): proper RGB order by default (`legacy_bgr` reproduces the official
BGR feed), 16-bit depth/thermal at full precision (`legacy_8bit` reproduces the high-byte read), float
resizing and in-range crop offsets (`legacy_augment` reproduces the official 8-bit resize and inclusive
offset draw), files validated at construction, float32 normalisation, augmentation randomness from torch's
RNG. conf/smmcl/llrgbd.yaml (the official recipe) sets all three legacy flags.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from common.errors import DataError
from common.image_io import read_image, read_label, resize_image


class MissingDataError(DataError, FileNotFoundError):
    """A list file or a file it names does not exist (a DataError that is also a FileNotFoundError)."""


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class RGBXDatasetConfig:
    """Where the files are and how to read them; defaults fit a CMX-style RGB-D folder."""

    root: str = "data/rgbx"
    rgb_dir: str = "RGB"
    aux_dir: str = "Depth"  # "" when the aux channel is packed as channel 4 of the RGB PNG (MFNet release)
    label_dir: str = "Label"
    rgb_ext: str = ".png"
    aux_ext: str = ".png"
    label_ext: str = ".png"
    train_list: str = "train.txt"
    test_list: str = "test.txt"
    aux_channels: int = 1  # 1: depth/thermal replicated to 3; 3: HHA
    label_offset: int = 0  # -1 for NYU: 0 (unlabelled) wraps to 255 = ignore
    num_classes: int = 14
    ignore_index: int = 255
    legacy_bgr: bool = False  # True: feed BGR like the official cv2.imread(path, COLOR_BGR2RGB) misuse
    legacy_8bit: bool = False  # True: 16-bit aux reduced to its high byte like IMREAD_GRAYSCALE
    # True: the official augmentation arithmetic: images resized as 8-bit (OpenCV's uint8 rounding; the
    # official loader never sees more than 8 bits) and crop offsets drawn in [0, H - h + 1] (its inclusive
    # `random.randint(0, H - h + 1)`: the last offset crops one row/column short, padded like a small image)
    legacy_augment: bool = False
    crop: tuple[int, int] = (480, 640)
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    flip: bool = True
    # >0: the official training-epoch length batch * (N // batch + 1) (LLRGBD, batch 16: 1418 -> 1424 items);
    # the extra items are uniformly random files, drawn per item in O(1) (the official code rebuilds an O(N)
    # permutation per item to the same effect). 0: one pass over the list.
    epoch_padding_batch: int = 0


def parse_list(path: Path) -> list[str]:
    """Stems from a list file: bare stems or SA-Gate lines ("RGB/0001.jpg<TAB>Label/0001.png")."""
    if not path.is_file():
        raise MissingDataError(path, "list file not found")
    stems = []
    for line in path.read_text().splitlines():
        if line.strip():
            stems.append(Path(line.split()[0]).stem)
    if not stems:
        raise DataError(path, "list file is empty")
    return stems


def read_aux_plane(path: Path, legacy_8bit: bool, channel: int | None = None) -> np.ndarray:
    """Single-channel aux (H,W) as float32 in [0,1] (common.image_io), full 16-bit precision.

    legacy_8bit: the official IMREAD_GRAYSCALE read, i.e. the high byte of a 16-bit value (an 8-bit
    value is its own high byte of the exact 8 -> 16 bit conversion v * 257). channel: take this channel
    of a multi-channel file (the MFNet release packs thermal as channel 4 of the RGBA PNG).
    """
    img = read_image(path, mode="unchanged", dtype="uint16" if legacy_8bit else "float32")
    if channel is None and img.shape[2] != 1:
        raise DataError(path, f"expected a single-channel aux image, got {img.shape[2]} channels")
    plane = img[..., channel or 0]
    if legacy_8bit:
        return (plane >> 8).astype(np.float32) / 255.0
    return plane


@functools.lru_cache(maxsize=4)
def _offset_remap(offset: int) -> Mapping[int, int]:
    """File value -> class id for `label_offset` over every 16-bit value (the official uint8 `gt + offset`,
    in which 0 - 1 wraps to 255 = ignore)."""
    return {v: (v + offset) % 256 if v + offset < 0 else v + offset for v in range(65536)}


def read_label_map(path: Path, cfg: RGBXDatasetConfig) -> np.ndarray:
    """Label map (H,W) after `label_offset`; every value in [0, num_classes) or the ignore index.

    common.image_io.read_label checks the file's own integers whatever the bit depth, so a 16-bit 256 never
    wraps into class 0. label_offset -1 (NYU) maps 0 (unlabelled) to 255 = ignore, as the official uint8
    `gt - 1` does. A value outside the valid set raises DataError naming the file and the values.
    """
    k, ignore = cfg.num_classes, cfg.ignore_index
    remap = _offset_remap(cfg.label_offset) if cfg.label_offset else None
    try:
        label = read_label(path, num_classes=k, ignore_index=ignore, remap=remap)
    except DataError as err:
        if not cfg.label_offset:
            raise
        raise DataError(path, f"{err.why}, after label_offset {cfg.label_offset}") from None
    return label.astype(np.uint8 if max(k - 1, ignore) <= 255 else np.int32)  # OpenCV resize needs <= 32 bit


def read_sample(
    rgb_path: Path, aux_path: Path | None, label_path: Path | None, cfg: RGBXDatasetConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb HxWx3 float32 [0,1], aux HxWx3 float32 [0,1], label HxW) read by the dataset's rules.

    aux_path None: the aux is channel 4 of the RGB file (MFNet release). label_path None: an all-ignore
    label (prediction on user images). All reads go through common.image_io; errors name the given files.
    """
    c = cfg
    raw = read_image(rgb_path, mode="unchanged", dtype="float32")  # RGB(A) order, v / 255 or v / 65535
    if raw.shape[2] not in (3, 4):
        raise DataError(rgb_path, f"expected a 3- or 4-channel image, got {raw.shape[2]} channel(s)")
    if aux_path is not None:
        if c.aux_channels == 3:
            aux = read_image(aux_path, mode="rgb", dtype="float32", alpha="drop")
            aux = aux[..., ::-1] if c.legacy_bgr else aux
        else:
            aux = read_aux_plane(aux_path, c.legacy_8bit)
    else:
        if raw.shape[2] != 4:
            raise DataError(
                rgb_path, "no aux file given, so the aux must be channel 4, but it has 3 channels"
            )
        aux = read_aux_plane(rgb_path, c.legacy_8bit, channel=3)
    if aux.ndim == 2:
        aux = np.repeat(aux[..., None], 3, axis=2)
    rgb = raw[..., 2::-1] if c.legacy_bgr else raw[..., :3]
    if label_path is None:
        label = np.full(rgb.shape[:2], c.ignore_index, np.uint8 if c.ignore_index <= 255 else np.int32)
    else:
        label = read_label_map(label_path, c)
    if rgb.shape[:2] != aux.shape[:2] or rgb.shape[:2] != label.shape:
        names = f"{rgb_path}, {aux_path or rgb_path}" + (f", {label_path}" if label_path else "")
        raise DataError(
            rgb_path,
            f"sizes differ: rgb {rgb.shape[:2]}, aux {aux.shape[:2]}, label {label.shape} ({names})",
        )
    return np.ascontiguousarray(rgb), np.ascontiguousarray(aux), label


class RGBXDataset(Dataset):
    """Items: {"rgb": (3,H,W) float32 normalised, "aux": (3,H,W) float32 normalised, "label": (H,W) long
    with ignore 255}. `train=True` applies the official flip / scale / crop-pad augmentation."""

    def __init__(self, cfg: RGBXDatasetConfig, split: str = "train", train: bool | None = None) -> None:
        self.cfg = cfg
        self.root = Path(cfg.root)
        self.train = (split == "train") if train is None else train
        list_file = self.root / (cfg.train_list if split == "train" else cfg.test_list)
        self.names = parse_list(list_file)
        missing = [p for n in self.names for p in self.paths(n).values() if not p.is_file()]
        if missing:
            shown = ", ".join(str(m) for m in missing[:3])
            raise MissingDataError(list_file, f"{len(missing)} listed files are missing, e.g. {shown}")

    def paths(self, name: str) -> dict[str, Path]:
        c = self.cfg
        out = {
            "rgb": self.root / c.rgb_dir / f"{name}{c.rgb_ext}",
            "label": self.root / c.label_dir / f"{name}{c.label_ext}",
        }
        if c.aux_dir:
            out["aux"] = self.root / c.aux_dir / f"{name}{c.aux_ext}"
        return out

    def __len__(self) -> int:
        n, b = len(self.names), self.cfg.epoch_padding_batch
        return b * (n // b + 1) if self.train and b > 0 else n

    def name_for(self, idx: int) -> str:
        """File stem of item `idx`; indices past the list (epoch padding) pick a uniformly random file."""
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} items")
        if idx < len(self.names):
            return self.names[idx]
        return self.names[int(torch.randint(len(self.names), ()))]

    def read(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw (rgb HxWx3 float32 [0,1], aux HxWx3 float32 [0,1], label HxW) before augmentation."""
        p = self.paths(name)
        return read_sample(p["rgb"], p.get("aux"), p["label"], self.cfg)

    def __getitem__(self, idx: int) -> dict[str, Tensor]:
        rgb, aux, label = self.read(self.name_for(idx))
        if self.train:
            rgb, aux, label = augment(rgb, aux, label, self.cfg)
        return to_tensors(rgb, aux, label)


def normalise(img: np.ndarray) -> np.ndarray:
    """ImageNet mean/std per channel (used for RGB and aux alike, as in the official code)."""
    return (img - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)


def to_tensors(rgb: np.ndarray, aux: np.ndarray, label: np.ndarray) -> dict[str, Tensor]:
    """Normalise and convert HWC arrays to the item dict (rgb/aux normalised unless already padded)."""
    return {
        "rgb": torch.from_numpy(np.ascontiguousarray(normalise(rgb).transpose(2, 0, 1))),
        "aux": torch.from_numpy(np.ascontiguousarray(normalise(aux).transpose(2, 0, 1))),
        "label": torch.from_numpy(label.astype(np.int64)),
    }


@dataclass(frozen=True)
class AugmentDraws:
    """The random draws of one training augmentation, in the official order (flip, scale, crop y, x)."""

    flip: bool
    scale: float
    y0: int
    x0: int


def scaled_size(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) after the random scale: int(H * s), int(W * s), as the official loader."""
    return int(shape[0] * scale), int(shape[1] * scale)


def draw_augmentation(shape: tuple[int, int], cfg: RGBXDatasetConfig) -> AugmentDraws:
    """Draw flip (p 0.5), scale (uniform over cfg.scales) and crop offsets from torch's RNG.

    Offsets are drawn only along sides longer than the crop; their range is [0, H - h], or [0, H - h + 1]
    with `legacy_augment` (the official inclusive randint)."""
    flip = bool(cfg.flip and torch.rand(()) < 0.5)
    scale = cfg.scales[int(torch.randint(len(cfg.scales), ()))]
    (h, w), (ch, cw) = scaled_size(shape, scale), cfg.crop
    extra = 2 if cfg.legacy_augment else 1
    y0 = int(torch.randint(h - ch + extra, ())) if h > ch else 0
    x0 = int(torch.randint(w - cw + extra, ())) if w > cw else 0
    return AugmentDraws(flip, scale, y0, x0)


def _resize_8bit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV's bilinear on the 8-bit values (the official arithmetic), back to float32 in [0, 1]."""
    u8 = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return resize_image(u8, size, "linear").astype(np.float32) / np.float32(255.0)


def augment(
    rgb: np.ndarray,
    aux: np.ndarray,
    label: np.ndarray,
    cfg: RGBXDatasetConfig,
    draws: AugmentDraws | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Official order: flip, scale (bilinear images, nearest labels), crop/pad to cfg.crop (pad value: the
    ImageNet mean for images, i.e. 0 after normalisation; 255 for labels). `draws`: given instead of drawn
    (tests pin them)."""
    d = draws or draw_augmentation(label.shape, cfg)
    if d.flip:
        rgb, aux, label = rgb[:, ::-1], aux[:, ::-1], label[:, ::-1]
    size = scaled_size(label.shape, d.scale)
    resize = _resize_8bit if cfg.legacy_augment else lambda img, hw: resize_image(img, hw, "linear")
    rgb, aux = resize(rgb, size), resize(aux, size)
    label = resize_image(label, size, "nearest")
    ch, cw = cfg.crop
    y0, x0 = d.y0, d.x0
    rgb, aux, label = (
        rgb[y0 : y0 + ch, x0 : x0 + cw],
        aux[y0 : y0 + ch, x0 : x0 + cw],
        label[y0 : y0 + ch, x0 : x0 + cw],
    )
    ph, pw = ch - label.shape[0], cw - label.shape[1]
    if ph or pw:
        pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        mean = np.asarray(IMAGENET_MEAN, np.float32)
        rgb = np.stack([np.pad(rgb[..., i], pads, constant_values=mean[i]) for i in range(3)], axis=2)
        aux = np.stack([np.pad(aux[..., i], pads, constant_values=mean[i]) for i in range(3)], axis=2)
        label = np.pad(label, pads, constant_values=255)
    return rgb, aux, label
