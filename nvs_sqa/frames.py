"""Reading NSS frames: folder listing (natural sort), explicit 8-bit RGB conversion, size validation.

Fixes spec nvs_sqa.md §6.2 (1)-(3) without changing pixels of valid 8-bit RGB input:
* RGBA -> alpha dropped (as Pillow's convert("RGB")); a warning once when a frame is not opaque, or
  composite over `background` when given. Grey (L) -> replicated. 16-bit -> round(v / 257).
* Frame order: natural sort ("frame2" before "frame10"), identical to lexicographic for zero-padded names.
* Frames smaller than 69 px per side or of mixed sizes are rejected with the file named.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import TriVisionError
from common.image_io import natural_sort_key

FRAME_EXTS = (".png", ".jpg", ".jpeg")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv")
MIN_SIDE = 69


class FrameError(TriVisionError, ValueError):
    """A frame or frame folder cannot be used (names the file and the reason)."""


def list_frames(folder: Path) -> list[Path]:
    """Image files (png/jpg/jpeg, any case) of one NSS folder, naturally sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FrameError(f"{folder}: not a folder")
    frames = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTS]
    return sorted(frames, key=lambda p: natural_sort_key(p.name))


def to_rgb8(img: Image.Image, source: str, background: tuple[int, int, int] | None = None) -> np.ndarray:
    """PIL image of any common mode -> (H, W, 3) uint8 following the module's documented rules."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.float64)
        arr8 = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(arr8[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
        alpha = rgba[..., 3:4]
        if background is not None:
            bg = np.asarray(background, dtype=np.float32)
            out = rgba[..., :3].astype(np.float32) * (alpha / 255.0) + bg * (1.0 - alpha / 255.0)
            return np.clip(np.round(out), 0, 255).astype(np.uint8)
        if (alpha < 255).any():
            warnings.warn(f"{source}: frame has transparent pixels; alpha is dropped", stacklevel=3)
        return np.ascontiguousarray(rgba[..., :3])
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_frame(path: Path, background: tuple[int, int, int] | None = None) -> np.ndarray:
    """One file -> (H, W, 3) uint8; errors name the file."""
    try:
        with Image.open(path) as img:
            img.load()
            arr = to_rgb8(img, str(path), background)
    except (OSError, SyntaxError, ValueError) as err:
        raise FrameError(f"{path}: cannot read image ({err})") from err
    check_size(arr.shape[0], arr.shape[1], str(path))
    return arr


def check_size(h: int, w: int, source: str) -> None:
    """Reject frames the encoder cannot process."""
    if h < MIN_SIDE or w < MIN_SIDE:
        raise FrameError(f"{source}: frame is {w}x{h}; NVS-SQA needs at least {MIN_SIDE}x{MIN_SIDE} pixels")


def check_same_size(shapes: Sequence[tuple[int, ...]], names: Sequence[str]) -> None:
    """All frames of an NSS must have one size."""
    for shape, name in zip(shapes, names):
        if shape[:2] != shapes[0][:2]:
            raise FrameError(
                f"{name}: frame size {shape[1]}x{shape[0]} differs from {names[0]} ({shapes[0][1]}x{shapes[0][0]})"
            )


def read_video(path: Path) -> list[np.ndarray]:
    """Decode every frame of a video file with OpenCV -> list of (H, W, 3) uint8 RGB."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FrameError(f"{path}: OpenCV cannot open the video")
    frames: list[np.ndarray] = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise FrameError(f"{path}: no frames could be decoded")
    check_size(frames[0].shape[0], frames[0].shape[1], str(path))
    check_same_size([f.shape for f in frames], [f"{path}[{i}]" for i in range(len(frames))])
    return frames
