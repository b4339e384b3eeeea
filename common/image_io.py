"""Image reading/writing with explicit bit-depth and channel rules, and natural file ordering.

Conversion rules of :func:`read_image` (OpenCV decodes; arrays come back RGB-ordered, H x W x C):

* bit depth: 8-bit files scale by 1/255, 16-bit by 1/65535 for ``dtype="float32"`` (values in
  [0, 1]); ``dtype="uint8"`` of a 16-bit file rounds v / 257; ``dtype="uint16"`` of an 8-bit file
  multiplies by 257 (so 255 -> 65535).
* ``mode="rgb"``: grey is replicated to 3 channels; RGBA is composited over ``alpha="white"``
  (default) or ``"black"`` with straight (non-premultiplied) alpha, or the alpha is dropped
  (``alpha="drop"``).
* ``mode="rgba"``: grey/RGB get an opaque alpha channel.
* ``mode="gray"``: ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B (after compositing RGBA as above).
* ``mode="unchanged"``: the file's own channels (1, 3 or 4), only the dtype is converted.
* 2-channel (grey + alpha) files are treated as grey composited per ``alpha``; other channel
  counts, floating-point or 32-bit files raise :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from common.errors import TriVisionError

__all__ = ["ImageReadError", "IMAGE_SUFFIXES", "read_image", "write_image", "natural_sort_key", "list_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".exr")
_MODES = ("rgb", "rgba", "gray", "unchanged")
_DTYPES = ("float32", "uint8", "uint16")
_ALPHAS = ("white", "black", "drop")


class ImageReadError(TriVisionError, OSError):
    """An image could not be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = Path(path)
        self.why = why


def _composite(rgb: np.ndarray, a: np.ndarray, alpha: str) -> np.ndarray:
    if alpha == "drop":
        return rgb
    bg = 1.0 if alpha == "white" else 0.0
    return rgb * a + bg * (1.0 - a)


def read_image(
    path: str | Path,
    *,
    mode: str = "rgb",
    dtype: str = "float32",
    alpha: str = "white",
) -> np.ndarray:
    """Read an 8/16-bit grey, grey+alpha, RGB or RGBA image as H x W x C (see the module docstring)."""
    path = Path(path)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if alpha not in _ALPHAS:
        raise ValueError(f"alpha must be one of {_ALPHAS}, got {alpha!r}")
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageReadError(path, "not a readable image (OpenCV could not decode it)")
    if raw.dtype == np.uint8:
        scale = 255.0
    elif raw.dtype == np.uint16:
        scale = 65535.0
    else:
        raise ImageReadError(path, f"unsupported sample type {raw.dtype} (only 8- and 16-bit images)")
    if raw.ndim == 2:
        raw = raw[:, :, None]
    c = raw.shape[2]
    if c not in (1, 2, 3, 4):
        raise ImageReadError(path, f"unsupported channel count {c} (expected 1, 2, 3 or 4)")
    if c == 3:
        raw = raw[:, :, ::-1]
    elif c == 4:
        raw = raw[:, :, [2, 1, 0, 3]]
    x = raw.astype(np.float64) / scale

    if mode == "unchanged":
        out = x
    else:
        colour = x[:, :, : (1 if c <= 2 else 3)]
        a = x[:, :, -1:] if c in (2, 4) else None
        if mode == "rgba":
            rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
            out = np.concatenate([rgb, a if a is not None else np.ones_like(rgb[:, :, :1])], axis=2)
        else:
            if a is not None:
                colour = _composite(colour, a, alpha)
            if mode == "rgb":
                out = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
            elif colour.shape[2] == 1:
                out = colour
            else:
                out = colour @ np.array([0.299, 0.587, 0.114])[:, None]

    if dtype == "float32":
        return np.ascontiguousarray(out, dtype=np.float32)
    top = 255.0 if dtype == "uint8" else 65535.0
    return np.ascontiguousarray(np.clip(np.rint(out * top), 0, top).astype(dtype))


def write_image(path: str | Path, array: np.ndarray) -> None:
    """Write H x W (x 1/3/4) RGB(A): uint8/uint16 as is, floats in [0, 1] clipped and saved as 8-bit."""
    path = Path(path)
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"{path}: cannot write an array of shape {a.shape} (need H x W x 1/3/4)")
    if a.dtype.kind == "f":
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    elif a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: unsupported dtype {a.dtype} (uint8, uint16 or float in [0, 1])")
    if a.ndim == 3:
        a = a[:, :, [2, 1, 0]] if a.shape[2] == 3 else a[:, :, [2, 1, 0, 3]]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(a)):
        raise OSError(f"{path}: OpenCV could not write the image (unsupported suffix?)")


def natural_sort_key(name: str | Path) -> tuple:
    """Key that orders 'img2' before 'img10' (digit runs compare as integers, text case-insensitively)."""
    parts = re.split(r"(\d+)", str(name))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts)


def list_images(folder: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix, case-insensitive), naturally sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes]
    return sorted(files, key=lambda p: natural_sort_key(p.name))
