"""Deterministic file writers used by the synthetic dataset writers (PNG/JPEG via OpenCV, text
formats by hand) so the same arrays always give byte-identical files."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 with rounding."""
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_image(path: Path, img: np.ndarray, *, jpeg_quality: int = 95) -> Path:
    """Write HxW (grey, uint8/uint16), HxWx3 (RGB) or HxWx4 (RGBA) arrays; float input is taken as
    [0, 1] and stored as 8 bit. The extension (.png/.jpg) picks the codec."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        arr = to_uint8(arr)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    elif arr.ndim != 2:
        raise ValueError(f"write_image {path}: unsupported array shape {arr.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr), params):
        raise OSError(f"write_image: OpenCV could not write {path}")
    return path


def write_json(path: Path, obj: object) -> Path:
    """Pretty, key-order-preserving JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def format_matrix(m: np.ndarray) -> str:
    """Rows of space-separated floats (NSVF/SRN pose files)."""
    return "".join(" ".join(f"{v:.9f}" for v in row) + "\n" for row in np.atleast_2d(m))


def write_point_cloud(path: Path, points: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """ASCII PLY (.ply) or ASCII PCD (.pcd, Open3D-readable) with float xyz and optional uint8 rgb."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"write_point_cloud {path}: points must be (N, 3), got {pts.shape}")
    n = len(pts)
    rgb = None if colors is None else to_uint8(colors) if np.asarray(colors).dtype.kind == "f" else colors
    if path.suffix == ".ply":
        head = [
            "ply",
            "format ascii 1.0",
            f"element vertex {n}",
            "property float x",
            "property float y",
            "property float z",
        ]
        if rgb is not None:
            head += ["property uchar red", "property uchar green", "property uchar blue"]
        head.append("end_header")
        rows = [
            " ".join(f"{v:.6f}" for v in p)
            + ("" if rgb is None else " " + " ".join(str(int(c)) for c in rgb[i]))
            for i, p in enumerate(pts)
        ]
    elif path.suffix == ".pcd":
        head = [
            "# .PCD v0.7 - Point Cloud Data file format",
            "VERSION 0.7",
            "FIELDS x y z",
            "SIZE 4 4 4",
            "TYPE F F F",
            "COUNT 1 1 1",
            f"WIDTH {n}",
            "HEIGHT 1",
            "VIEWPOINT 0 0 0 1 0 0 0",
            f"POINTS {n}",
            "DATA ascii",
        ]
        rows = [" ".join(f"{v:.6f}" for v in p) for p in pts]
    else:
        raise ValueError(f"write_point_cloud {path}: extension must be .ply or .pcd")
    path.write_text("\n".join(head + rows) + "\n")
    return path


def child_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """Independent, reproducible generator for one item (object, scene, view) of a dataset."""
    ints = [int(seed)] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(ints))


def hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """An image size given as one int (square) or (height, width)."""
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def prepare_root(root: str | Path, writer: str, **counts: int) -> Path:
    """Validate a writer's output folder and its item counts (each must be >= 1) before any work."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{writer}: output path {root} exists and is not a folder")
    for name, value in counts.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{writer}: {name} must be a positive integer, got {value!r}")
    root.mkdir(parents=True, exist_ok=True)
    return root
