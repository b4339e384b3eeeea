"""Image, label, depth, mask and video reading with explicit bit-depth and channel rules; atomic writes.

Every read in the packages goes through this module. Conversion rules of :func:`read_image` (arrays
come back RGB-ordered, H x W x C):

* decoding: ``backend="cv2"`` (default; OpenCV ``IMREAD_UNCHANGED``, 8/16-bit, 1-4 channels) or
  ``backend="pil"`` (Pillow, for parity with code that decoded with PIL: palette images become RGB, or
  RGBA when the palette has transparency; "1" becomes 0/255 grey; 16-bit grey ("I;16", "I") keeps its
  16 bits; Pillow itself reduces 16-bit RGB files to 8 bits, so read those with cv2).
* bit depth: integer outputs are converted exactly: 8 -> 16 bit multiplies by 257, 16 -> 8 bit is
  round(v / 257) (never a tie). ``dtype="float32"`` gives v / 255 or v / 65535 computed in float32
  (identical to ``arr.astype(np.float32) / 255.0``).
* ``mode="rgb"``: grey is replicated to 3 channels; RGBA is composited over ``alpha="white"`` (default)
  or ``"black"`` with straight (non-premultiplied) alpha in float32 as ``c * a + bg * (1 - a)``, or the
  alpha is dropped (``alpha="drop"``; integer outputs then stay exact).
* ``mode="rgba"``: grey/RGB get an opaque alpha channel.
* ``mode="gray"``: ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B (after compositing RGBA as above).
* ``mode="unchanged"``: the file's own channels (1, 2, 3 or 4), only the dtype is converted.
* ``size=(H, W)``: resize when the file has another size. With cv2 the converted (composited) float
  image is resized with OpenCV's ``interpolation`` ("area", "linear", "nearest", "cubic", "lanczos");
  with pil the decoded Pillow image is resized in its own mode before conversion with the matching
  Pillow filter ("area" -> BOX, "linear" -> BILINEAR, "cubic" -> BICUBIC, ...), exactly as
  ``Image.open(p).resize((W, H), Image.BICUBIC)`` (Pillow resizes RGBA premultiplied).
* other channel counts, floating-point or 32-bit files raise :class:`ImageReadError` naming the file.

Labels (:func:`read_label`), depth (:func:`read_depth`) and masks (:func:`read_mask`) have their own
readers with range checks; videos are decoded by :func:`iter_video_frames` (PyAV). :func:`write_image` writes
atomically (encode in memory, then :func:`common.io.atomic_write_bytes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import cv2
import numpy as np

from common.errors import DataError
from common.io import atomic_write_bytes

__all__ = [
    "ImageReadError",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "INTERPOLATIONS",
    "read_image",
    "image_size",
    "resize_image",
    "read_label",
    "read_depth",
    "read_mask",
    "iter_video_frames",
    "count_video_frames",
    "write_image",
    "natural_sort_key",
    "list_images",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".exr")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
_MODES = ("rgb", "rgba", "gray", "unchanged")
_DTYPES = ("float32", "uint8", "uint16")
_ALPHAS = ("white", "black", "drop")
_BACKENDS = ("cv2", "pil")
INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
_PIL_FILTERS = {
    "area": "BOX",
    "linear": "BILINEAR",
    "nearest": "NEAREST",
    "cubic": "BICUBIC",
    "lanczos": "LANCZOS",
}
_PIL_16BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageReadError(DataError, OSError):
    """An image could not be read; the message names the file and the reason."""


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
        raise ValueError(f"size must be (H, W) with positive sides, got {size!r}")
    return int(size[0]), int(size[1])


def _decode_cv2(path: Path) -> np.ndarray:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageReadError(path, "not a readable image (OpenCV could not decode it)")
    if raw.dtype not in (np.uint8, np.uint16):
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
    return raw


def _open_pil(path: Path):
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise ImageReadError(path, f"not a readable image (Pillow: {err})") from err
    return img


def _pil_to_raw(img, path: Path) -> np.ndarray:
    """Pillow image -> H x W x C uint8/uint16 array in RGB(A) order, like the cv2 decoder gives."""
    mode = img.mode
    if mode in _PIL_16BIT:
        arr = np.asarray(img)
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() > 65535)):
            raise ImageReadError(path, f"Pillow mode {mode} values do not fit 16 bits")
        return arr.astype(np.uint16)[:, :, None]
    if mode == "F":
        raise ImageReadError(path, "unsupported sample type float32 (only 8- and 16-bit images)")
    if mode in ("L", "LA", "RGB", "RGBA"):
        conv = img
    elif mode == "1":
        conv = img.convert("L")
    elif mode == "La":
        conv = img.convert("LA")
    elif mode in ("PA", "RGBa") or (
        mode == "P" and ("transparency" in img.info or img.palette.mode == "RGBA")
    ):
        conv = img.convert("RGBA")
    else:  # P without transparency, CMYK, YCbCr, LAB, HSV, RGBX, ...
        conv = img.convert("RGB")
    arr = np.asarray(conv)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _resize_pil(img, size: tuple[int, int], interpolation: str):
    from PIL import Image

    if img.size == (size[1], size[0]):
        return img
    resample = getattr(Image.Resampling, _PIL_FILTERS[interpolation])
    if img.mode in _PIL_16BIT:  # Pillow resamples 32-bit integer images; keep the 16-bit values
        return img.convert("I").resize((size[1], size[0]), resample)
    return img.resize((size[1], size[0]), resample)


def resize_image(array: np.ndarray, size: tuple[int, int], interpolation: str = "area") -> np.ndarray:
    """Resize an H x W (x C) array to ``size=(H, W)`` with OpenCV (``INTERPOLATIONS`` names); same dtype.

    Returns the input unchanged when it already has that size; a trailing channel axis is kept.
    """
    _check_choice("interpolation", interpolation, INTERPOLATIONS)
    h, w = _check_size(size)
    a = np.asarray(array)
    if a.shape[:2] == (h, w):
        return a
    out = cv2.resize(np.ascontiguousarray(a), (w, h), interpolation=INTERPOLATIONS[interpolation])
    if a.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def _composite(rgb: np.ndarray, a: np.ndarray, alpha: str) -> np.ndarray:
    bg = 1.0 if alpha == "white" else 0.0
    return rgb * a + bg * (1.0 - a)


def _to_int(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Exact integer bit-depth conversion of an integer array."""
    if raw.dtype == np.dtype(dtype):
        return raw
    if dtype == "uint16":  # 8 -> 16 bit: 255 -> 65535
        return raw.astype(np.uint16) * np.uint16(257)
    return ((raw.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)  # round(v / 257)


def read_image(
    path: str | Path,
    *,
    mode: str = "rgb",
    dtype: str = "float32",
    alpha: str = "white",
    size: tuple[int, int] | None = None,
    interpolation: str = "area",
    backend: str = "cv2",
) -> np.ndarray:
    """Read an 8/16-bit grey, grey+alpha, RGB or RGBA image as H x W x C (see the module docstring)."""
    path = Path(path)
    _check_choice("mode", mode, _MODES)
    _check_choice("dtype", dtype, _DTYPES)
    _check_choice("alpha", alpha, _ALPHAS)
    _check_choice("interpolation", interpolation, INTERPOLATIONS)
    _check_choice("backend", backend, _BACKENDS)
    size = _check_size(size)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    if backend == "pil":
        img = _open_pil(path)
        if size is not None:
            img = _resize_pil(img, size, interpolation)
        raw = _pil_to_raw(img, path)
        size = None  # already resized
    else:
        raw = _decode_cv2(path)
    c = raw.shape[2]
    has_alpha = c in (2, 4)
    colour = raw[:, :, : (1 if c <= 2 else 3)]

    # integer-exact paths: nothing needs blending
    out_int = None
    if mode == "unchanged":
        out_int = raw
    elif mode == "rgba":
        rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
        a = raw[:, :, -1:] if has_alpha else np.full_like(rgb[:, :, :1], np.iinfo(raw.dtype).max)
        out_int = np.concatenate([rgb, a], axis=2)
    elif (not has_alpha or alpha == "drop") and (mode == "rgb" or colour.shape[2] == 1):
        out_int = np.repeat(colour, 3, axis=2) if mode == "rgb" and colour.shape[2] == 1 else colour

    scale = np.float32(255.0 if raw.dtype == np.uint8 else 65535.0)
    if out_int is not None:
        if size is None:
            if dtype == "float32":
                return np.ascontiguousarray(out_int.astype(np.float32) / scale)
            return np.ascontiguousarray(_to_int(out_int, dtype))
        out = out_int.astype(np.float32) / scale
    else:
        x = colour.astype(np.float32) / scale
        if has_alpha and alpha != "drop":
            x = _composite(x, raw[:, :, -1:].astype(np.float32) / scale, alpha)
        if mode == "rgb":
            out = np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x
        elif x.shape[2] == 1:
            out = x
        else:
            luma = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])[:, None]
            out = luma.astype(np.float32)
    if size is not None:
        out = resize_image(out, size, interpolation)
    if dtype == "float32":
        return np.ascontiguousarray(out, dtype=np.float32)
    top = 255.0 if dtype == "uint8" else 65535.0
    return np.ascontiguousarray(np.clip(np.rint(out.astype(np.float64) * top), 0, top).astype(dtype))


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file from its header (Pillow; the pixels are not decoded)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception as err:  # Pillow raises many types
        raise ImageReadError(path, f"not a readable image (Pillow: {err})") from err
    return h, w


def _decode_indexed(path: Path, what: str) -> np.ndarray:
    """Decode a label/mask-like file: palette indices (H x W) for "P" PNGs, else the cv2 decoder's array."""
    if not path.is_file():
        raise DataError(path, f"{what} file not found")
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode == "P":
                img.load()
                return np.asarray(img).copy()
    except Exception:  # noqa: BLE001 - undecodable files are reported by the cv2 decoder below
        pass
    return _decode_cv2(path)


def _single_channel(raw: np.ndarray, path: Path, what: str) -> np.ndarray:
    if raw.ndim == 2:
        return raw
    if raw.shape[2] == 1:
        return raw[:, :, 0]
    if raw.shape[2] == 3 and (raw[:, :, 0] == raw[:, :, 1]).all() and (raw[:, :, 0] == raw[:, :, 2]).all():
        return raw[:, :, 0]
    raise DataError(path, f"{what} must be single-channel (or 3-channel grey), got {raw.shape[2]} channels")


def read_label(
    path: str | Path,
    *,
    num_classes: int,
    ignore_index: int = 255,
    size: tuple[int, int] | None = None,
    remap: Mapping[int, int] | None = None,
) -> np.ndarray:
    """Class-id map as H x W int64; every value must be in [0, num_classes) or equal ``ignore_index``.

    8- or 16-bit single-channel PNGs (palette PNGs give their indices; 3-channel grey is accepted).
    ``remap`` maps file values to class ids before the check (values it does not name stay as they
    are); ``size=(H, W)`` resizes with nearest neighbour (no new values). Any other value raises
    :class:`DataError` naming the file and the offending values, whatever the bit depth: a 16-bit 256
    never wraps to class 0.
    """
    path = Path(path)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    size = _check_size(size)
    raw = _single_channel(_decode_indexed(path, "label"), path, "label")
    if size is not None:
        raw = resize_image(raw, size, "nearest")
    lab = raw.astype(np.int64)
    if remap:
        values, inverse = np.unique(lab, return_inverse=True)
        mapped = np.array([remap.get(int(v), int(v)) for v in values], dtype=np.int64)
        lab = mapped[inverse].reshape(lab.shape)
    bad = (lab < 0) | (lab >= num_classes)
    bad &= lab != ignore_index
    if bad.any():
        vals, counts = np.unique(lab[bad], return_counts=True)
        shown = ", ".join(f"{v} ({n} px)" for v, n in zip(vals[:10].tolist(), counts[:10].tolist()))
        more = f" and {len(vals) - 10} more" if len(vals) > 10 else ""
        raise DataError(
            path,
            f"label values outside [0, {num_classes}) that are not the ignore index {ignore_index}: "
            f"{shown}{more} ({raw.dtype.itemsize * 8}-bit file)",
        )
    return lab


def read_depth(path: str | Path, *, allow_8bit: bool = False, allow_zero: bool = False) -> np.ndarray:
    """Raw depth values as H x W float32 (16-bit PNG values as they are; float TIFF/EXR as stored).

    An 8-bit file (quantised depth, usually a visualisation) or an all-zero map is refused with
    :class:`DataError` unless ``allow_8bit`` / ``allow_zero``; non-finite float depth is refused.
    Converting to metres (``/ depth_scale``) is the caller's business.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "depth file not found")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(path, "not a readable depth image")
    if raw.ndim == 3:
        if raw.shape[2] != 1:
            raise DataError(path, f"depth must be single-channel, got {raw.shape[2]} channels")
        raw = raw[:, :, 0]
    if raw.dtype == np.uint8 and not allow_8bit:
        raise DataError(
            path, "depth is 8-bit (a quantised visualisation?); expected 16-bit values (allow_8bit to accept)"
        )
    if raw.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise DataError(path, f"unsupported depth sample type {raw.dtype}")
    depth = raw.astype(np.float32)
    if raw.dtype.kind == "f" and not np.isfinite(depth).all():
        raise DataError(path, f"depth has {int((~np.isfinite(depth)).sum())} non-finite values")
    if not allow_zero and not depth.any():
        raise DataError(path, "depth is zero everywhere (missing data?); allow_zero to accept")
    return depth


def read_mask(
    path: str | Path,
    *,
    size: tuple[int, int] | None = None,
    threshold: float = 0.5,
    channel: int = 0,
    backend: str = "cv2",
) -> np.ndarray:
    """Binary mask as H x W bool: ``value > threshold * full_scale`` (default half range; 0.0: any non-zero).

    Multi-channel files use ``channel`` (in RGB(A) order); palette PNGs compare their indices. With
    ``backend="pil"`` the file is decoded as ``np.asarray(Image.open(path))`` (parity with PIL code).
    ``size=(H, W)`` resizes the values with nearest neighbour before thresholding.
    """
    path = Path(path)
    _check_choice("backend", backend, _BACKENDS)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
    size = _check_size(size)
    if not path.is_file():
        raise DataError(path, "mask file not found")
    if backend == "pil":
        img = _open_pil(path)
        arr = np.asarray(img)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
            top = 1.0
        elif img.mode in _PIL_16BIT:
            top = 65535.0
        else:
            top = 255.0
    else:
        arr = _decode_indexed(path, "mask")
        top = 255.0 if arr.dtype == np.uint8 else 65535.0
    if arr.ndim == 3:
        if not 0 <= channel < arr.shape[2]:
            raise DataError(path, f"mask has {arr.shape[2]} channels; channel {channel} does not exist")
        arr = arr[:, :, channel]
    if size is not None:
        arr = resize_image(arr, size, "nearest")
    return arr > threshold * top


def _open_video(path: Path):
    """PyAV container of an existing video file (the library that writes them: common.viz.save_video)."""
    import av  # lazy: only video readers pay for FFmpeg

    if not path.is_file():
        raise DataError(path, "video file not found")
    try:
        return av.open(str(path))
    except av.FFmpegError as err:
        raise DataError(path, f"cannot open the video ({err})") from err


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video with PyAV (FFmpeg), yielding H x W x 3 uint8 RGB frames; errors name the file."""
    import av

    path = Path(path)
    n = 0
    with _open_video(path) as container:
        try:
            for frame in container.decode(video=0):
                n += 1
                yield frame.to_ndarray(format="rgb24")
        except (av.FFmpegError, IndexError) as err:  # IndexError: no video stream
            raise DataError(path, f"cannot decode frame {n} ({err})") from err
    if n == 0:
        raise DataError(path, "no frames could be decoded")


def count_video_frames(path: str | Path) -> int:
    """Number of decodable frames (each decoded; the container's frame count can be wrong)."""
    return sum(1 for _ in iter_video_frames(path))


def write_image(path: str | Path, array: np.ndarray) -> Path:
    """Write H x W (x 1/3/4) RGB(A) atomically: uint8/uint16 as is, floats in [0, 1] clipped and saved as 8-bit.

    The format follows the suffix (OpenCV encoders); the file appears complete or not at all.
    """
    path = Path(path)
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"{path}: cannot write an array of shape {a.shape} (need H x W x 1/3/4)")
    if a.dtype == bool:
        a = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype.kind == "f":
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    elif a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: unsupported dtype {a.dtype} (uint8, uint16, bool or float in [0, 1])")
    if a.ndim == 3:
        a = a[:, :, [2, 1, 0]] if a.shape[2] == 3 else a[:, :, [2, 1, 0, 3]]
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(a))
    except cv2.error as err:
        raise ValueError(f"{path}: OpenCV cannot encode this image ({err})") from err
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode the image (unsupported suffix?)")
    return atomic_write_bytes(path, buf.tobytes())


def natural_sort_key(name: str | Path) -> tuple:
    """Key that orders 'img2' before 'img10' (digit runs compare as integers, text case-insensitively)."""
    parts = re.split(r"(\d+)", str(name))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts)


def list_images(folder: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix, case-insensitive), naturally sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    suffixes = tuple(s.lower() for s in suffixes)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes]
    return sorted(files, key=lambda p: natural_sort_key(p.name))
