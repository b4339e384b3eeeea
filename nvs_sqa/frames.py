"""Reading NSS frames: folder listing (natural sort), explicit 8-bit RGB conversion, size validation.

Fixes spec nvs_sqa.md §6.2 (1)-(3) without changing pixels of valid 8-bit RGB input:
* Decoding by common.image_io (Pillow backend, as the official code). RGBA -> alpha dropped (as Pillow's
  convert("RGB")); a warning once when a frame is not opaque, or
  composite over `background` when given. Grey (L) -> replicated. 16-bit -> round(v / 257).
* Frame order: natural sort ("frame2" before "frame10"), identical to lexicographic for zero-padded names.
* Frames smaller than 69 px per side or of mixed sizes are rejected with the file named.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from common.errors import DataError, TriVisionError
from common.image_io import ImageReadError, iter_video_frames, natural_sort_key, read_image

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


def read_frame(path: Path, background: tuple[int, int, int] | None = None) -> np.ndarray:
    """One file -> (H, W, 3) uint8 (decoded by common.image_io with Pillow); errors name the file."""
    try:
        rgba = read_image(path, mode="rgba", dtype="uint8", backend="pil")
    except ImageReadError as err:
        raise FrameError(f"{path}: cannot read image ({err.why})") from err
    alpha = rgba[..., 3:4]
    if background is not None:
        bg = np.asarray(background, dtype=np.float32)
        out = rgba[..., :3].astype(np.float32) * (alpha / 255.0) + bg * (1.0 - alpha / 255.0)
        arr = np.clip(np.round(out), 0, 255).astype(np.uint8)
    else:
        if (alpha < 255).any():
            warnings.warn(f"{path}: frame has transparent pixels; alpha is dropped", stacklevel=2)
        arr = np.ascontiguousarray(rgba[..., :3])
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


def iter_video(path: Path) -> Iterator[np.ndarray]:
    """Stream the frames of a video file (common.image_io.iter_video_frames) -> (H, W, 3) uint8 RGB,
    checking the minimum size and that every frame has the first one's size."""
    first: tuple[int, ...] | None = None
    try:
        for i, frame in enumerate(iter_video_frames(path)):
            if first is None:
                first = frame.shape
                check_size(first[0], first[1], str(path))
            else:
                check_same_size([first, frame.shape], [f"{path}[0]", f"{path}[{i}]"])
            yield frame
    except DataError as err:
        raise FrameError(str(err)) from err


def as_sequences(frames, where: str) -> torch.Tensor:
    """What `NSSQuality.update` and `QualityAssessor.score_frames` accept -> (B, T, 3, H, W), uint8 or float
    in [0, 1] (one check, one set of messages, prefixed by `where`).

    Tensors are channels-first: one sequence (T, 3, H, W) or a batch (B, T, 3, H, W). NumPy arrays are
    channels-last as decoded from files: (T, H, W, 3), or a list of (H, W, 3) frames. uint8 is read as
    v / 255 (as 8-bit files are); float must lie in [0, 1] (never rescaled or clipped silently).
    """
    if isinstance(frames, np.ndarray) or (
        isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], np.ndarray)
    ):
        arrays = list(frames)
        for i, f in enumerate(arrays):
            if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3:
                got = f"{f.shape} {f.dtype}" if isinstance(f, np.ndarray) else type(f).__name__
                raise FrameError(f"{where}[{i}]: expected an (H, W, 3) frame, got {got}")
        if arrays:
            check_same_size([f.shape for f in arrays], [f"{where}[{i}]" for i in range(len(arrays))])
        frames = torch.from_numpy(np.stack(arrays) if arrays else np.zeros((0, 0, 0, 3), np.uint8))
        frames = frames.permute(0, 3, 1, 2)  # a channels-last view: no copy
    elif isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], torch.Tensor):
        frames = torch.stack(list(frames))
    if not isinstance(frames, torch.Tensor):
        raise FrameError(f"{where}: frames must be a tensor or NumPy frames, got {type(frames).__name__}")
    if frames.ndim == 4:
        frames = frames.unsqueeze(0)
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise FrameError(f"{where}: expected (T, 3, H, W) or (B, T, 3, H, W), got {tuple(frames.shape)}")
    b, t, _, h, w = frames.shape
    if b == 0 or t == 0:
        raise FrameError(f"{where}: no frames ({tuple(frames.shape)})")
    check_size(h, w, where)
    if frames.dtype == torch.uint8:
        return frames
    if not frames.is_floating_point():
        raise FrameError(f"{where}: frames must be float in [0, 1] or uint8, got {frames.dtype}")
    lo, hi = float(frames.amin()), float(frames.amax())
    if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
        raise FrameError(f"{where}: float frames must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return frames


def nss_sha256(path: Path) -> str:
    """sha256 of what an NSS's score is computed from: a video's bytes, or each frame's name and bytes (the
    one content digest of resumed app runs and of the evaluation's feature cache)."""
    path = Path(path)
    h = hashlib.sha256()
    for f in [path] if path.is_file() else list_frames(path):
        h.update(f"{f.name}\n".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def source_format(path: Path) -> str:
    """How an NSS is stored: a video's codec ("h264", "mpeg4", ...) or its frames' file types ("png")."""
    path = Path(path)
    if path.is_dir():
        return "+".join(
            sorted({f.suffix.lower().lstrip(".").replace("jpeg", "jpg") for f in list_frames(path)})
        )
    import av  # lazy: only banks with videos pay for FFmpeg

    try:
        with av.open(str(path)) as c:
            return c.streams.video[0].codec_context.name
    except (av.FFmpegError, IndexError):
        return "unreadable"
