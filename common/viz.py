"""Figures for reports: GIFs, H.264 videos, contact sheets, label colouring and overlays, bar and line
plots, confusion matrices (matplotlib Agg, no display needed).

Images are H x W x 3 arrays (or torch tensors), uint8 or float in [0, 1]; outputs are uint8. Every file
is written atomically (``common.io``): a figure is rendered in memory and then moved into place.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from common.io import atomic_write_bytes, temp_path

__all__ = [
    "to_uint8",
    "default_palette",
    "legend",
    "save_gif",
    "save_video",
    "contact_sheet",
    "colorize_labels",
    "overlay",
    "bar_chart",
    "line_plot",
    "confusion_matrix_plot",
]

_ROUNDINGS = ("nearest", "half_up", "floor")


def to_uint8(image, *, rounding: str = "nearest", chw: bool = False) -> np.ndarray:
    """The one float -> uint8 image conversion: H x W (x 1|3) -> H x W x 3 uint8 (RGBA stays 4 channels).

    uint8 passes unchanged; floats are clipped to [0, 1] and scaled by 255 in their own precision, then
    ``rounding="nearest"`` (np.rint, ties to even; default), ``"half_up"`` (``(x * 255 + 0.5)`` truncated,
    as several writers did) or ``"floor"`` (``(x * 255).astype(uint8)``, the truncation of pixelNeRF's
    official eval.py, which SMCL's metrics keep). torch tensors are detached and moved to the CPU;
    ``chw=True`` takes a (C, H, W) tensor/array (C = 1 or 3).
    """
    if rounding not in _ROUNDINGS:
        raise ValueError(f"rounding must be one of {_ROUNDINGS}, got {rounding!r}")
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if chw:
        if a.ndim != 3:
            raise ValueError(f"chw=True expects a (C, H, W) image, got shape {a.shape}")
        a = a.transpose(1, 2, 0)
    if a.dtype.kind == "f":
        x = np.clip(a, 0, 1) * 255
        if rounding == "nearest":
            x = np.rint(x)
        elif rounding == "half_up":
            x = x + 0.5
        a = x.astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"expected uint8 or float images, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an H x W (x 1|3|4) image, got shape {a.shape}")
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def default_palette(n: int, *, background: bool = True) -> np.ndarray:
    """n distinct colours (n x 3 uint8) from the PASCAL-VOC bit-interleaving scheme.

    ``background=True``: class 0 is black (VOC's background). ``False`` (class 0 is a real class, which
    should not look like "nothing"): the colours of VOC ids 1..n, so no class is black.
    """
    first = 0 if background else 1
    pal = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        v, r, g, b = c + first, 0, 0, 0
        for k in range(8):
            r |= ((v >> 0) & 1) << (7 - k)
            g |= ((v >> 1) & 1) << (7 - k)
            b |= ((v >> 2) & 1) << (7 - k)
            v >>= 3
        pal[c] = (r, g, b)
    return pal


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Write frames as a looping GIF (PIL)."""
    from PIL import Image

    if len(frames) == 0:
        raise ValueError(f"{path}: no frames to write")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    imgs = [Image.fromarray(to_uint8(f)[:, :, :3]) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=round(1000 / fps), loop=0)
    return atomic_write_bytes(path, buf.getvalue())


def save_video(frames: Sequence[np.ndarray], path: str | Path, fps: float = 24.0, *, crf: int = 18) -> Path:
    """Write frames (equal-sized H x W x 3 RGB, uint8 or float) as H.264 (libx264, yuv420p) with PyAV:
    the video browsers play. ``crf`` 18 is x264's "visually lossless" level (scores of the decoded file
    stay close to those of the frames). yuv420p needs even sides: an odd last row/column is repeated.

    The container follows the suffix (.mp4, .mkv, .mov, .avi); the file is written into a temp folder
    beside ``path`` and moved into place when complete.
    """
    import av  # lazy: only video writers pay for FFmpeg

    if len(frames) == 0:
        raise ValueError(f"{path}: no frames to write")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    h, w = to_uint8(frames[0]).shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = temp_path(path)
    tmp_dir.mkdir()
    try:
        tmp = tmp_dir / f"video{path.suffix or '.mp4'}"
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = w + w % 2, h + h % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(int(crf))}
            for k, f in enumerate(frames):
                u8 = to_uint8(f)[:, :, :3]
                if u8.shape[:2] != (h, w):
                    raise ValueError(f"{path}: frame {k} is {u8.shape[:2]}, expected {(h, w)} like frame 0")
                u8 = np.pad(u8, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                out.mux(stream.encode(av.VideoFrame.from_ndarray(u8, format="rgb24")))
            out.mux(stream.encode())  # flush the encoder
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def contact_sheet(images: Sequence[np.ndarray], ncols: int, pad: int = 0, pad_value: int = 255) -> np.ndarray:
    """Tile equally sized images row-major into one uint8 array; empty cells get ``pad_value``."""
    if len(images) == 0:
        raise ValueError("contact_sheet needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    tiles = [to_uint8(im)[:, :, :3] for im in images]
    h, w, _ = tiles[0].shape
    for k, t in enumerate(tiles):
        if t.shape[:2] != (h, w):
            raise ValueError(f"image {k} is {t.shape[:2]}, expected {(h, w)} like image 0")
    nrows = -(-len(tiles) // ncols)
    sheet = np.full((nrows * h + (nrows - 1) * pad, ncols * w + (ncols - 1) * pad, 3), pad_value, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, ncols)
        sheet[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = t
    return sheet


def colorize_labels(
    label: np.ndarray, palette: np.ndarray | None = None, ignore_index: int = 255
) -> np.ndarray:
    """H x W class ids -> H x W x 3 uint8 colours; ``ignore_index`` pixels are white."""
    lab = np.asarray(label)
    if lab.ndim != 2 or lab.dtype.kind not in "iu":
        raise ValueError(f"expected an H x W integer label map, got shape {lab.shape} dtype {lab.dtype}")
    ids = lab[lab != ignore_index]
    if palette is None:
        palette = default_palette(int(ids.max()) + 1 if ids.size else 1)
    palette = np.asarray(palette, dtype=np.uint8)
    if ids.size and (ids.min() < 0 or ids.max() >= len(palette)):
        raise ValueError(
            f"label ids span [{ids.min()}, {ids.max()}] but the palette has {len(palette)} colours"
        )
    out = np.full(lab.shape + (3,), 255, dtype=np.uint8)
    mask = lab != ignore_index
    out[mask] = palette[lab[mask]]
    return out


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray | None = None,
    alpha: float = 0.5,
    ignore_index: int = 255,
) -> np.ndarray:
    """Blend label colours over an image: (1 - alpha) image + alpha colour; ignored pixels untouched."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    img = to_uint8(image)[:, :, :3].astype(np.float64)
    if img.shape[:2] != np.asarray(labels).shape:
        raise ValueError(f"image {img.shape[:2]} and labels {np.asarray(labels).shape} differ in size")
    col = colorize_labels(labels, palette, ignore_index).astype(np.float64)
    mask = (np.asarray(labels) != ignore_index)[:, :, None]
    out = np.where(mask, (1 - alpha) * img + alpha * col, img)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def legend(
    names: Sequence[str],
    palette: np.ndarray,
    height: int,
    *,
    ids: Sequence[int] | None = None,
    row: int = 14,
) -> np.ndarray:
    """A white ``height`` x W x 3 uint8 panel: one colour swatch and name per class id (all, or ``ids``),
    in as many columns as the height needs, to sit beside an overlay of the same height."""
    import cv2

    ids = list(range(len(names))) if ids is None else [int(i) for i in ids]
    if any(not 0 <= i < min(len(names), len(palette)) for i in ids):
        raise ValueError(f"legend ids {ids} outside the {len(names)} names / {len(palette)} colours")
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, row / 35.0
    per_col = max(1, (height - 4) // row)
    text_w = max([cv2.getTextSize(str(names[i]), font, scale, 1)[0][0] for i in ids] or [0])
    col_w = row + 6 + text_w + 8
    panel = np.full((height, 4 + col_w * max(1, -(-len(ids) // per_col)), 3), 255, np.uint8)
    for k, i in enumerate(ids):
        c, r = divmod(k, per_col)
        x, y = 4 + c * col_w, 4 + r * row
        panel[y : y + row - 3, x : x + row - 3] = palette[i]
        cv2.putText(panel, str(names[i]), (x + row + 2, y + row - 5), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return panel


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path, dpi: float | None) -> Path:
    """Render a figure in memory (format from the suffix) and write it atomically; closes the figure."""
    plt = _pyplot()
    try:
        buf = io.BytesIO()
        fmt = path.suffix.lstrip(".").lower() or "png"
        fig.savefig(buf, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def bar_chart(
    names: Sequence[str],
    values: Sequence[float],
    path: str | Path,
    *,
    title: str = "",
    ylabel: str = "",
    errors: Sequence[float] | None = None,
    color: str | None = None,
    dpi: float | None = None,
) -> Path:
    """Save a labelled bar chart (PNG/PDF/SVG by suffix); returns the path."""
    if len(names) != len(values) or (errors is not None and len(errors) != len(values)):
        raise ValueError(f"names ({len(names)}), values ({len(values)}) and errors must have equal length")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 3.5))
    try:
        ax.bar(range(len(values)), values, yerr=errors, capsize=3 if errors is not None else 0, color=color)
        ax.set_xticks(range(len(names)), list(names), rotation=45, ha="right")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save_figure(fig, Path(path), dpi)


def line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    *,
    hlines: Mapping[str, float] | None = None,
    marker: str | None = "o",
    logx: bool = False,
    figsize: tuple[float, float] = (7.5, 4.5),
    legend_cols: int = 3,
    dpi: float | None = 110,
) -> Path:
    """One line per named (x, y) series (legend in insertion order); optional dashed reference lines."""
    if not series:
        raise ValueError(f"{path}: no series to plot")
    for name, (x, y) in series.items():
        if len(x) != len(y):
            raise ValueError(f"series {name!r}: x has {len(x)} values, y has {len(y)}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    try:
        for name, (x, y) in series.items():
            ax.plot(list(x), list(y), marker=marker, label=name)
        for name, v in (hlines or {}).items():
            ax.axhline(v, color="grey", lw=0.8, ls="--", label=name)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8, ncol=legend_cols)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save_figure(fig, Path(path), dpi)


def confusion_matrix_plot(
    matrix,
    class_names: Sequence[str],
    path: str | Path,
    *,
    normalize: bool = True,
    title: str = "",
    annotate: bool | None = None,
    dpi: float | None = 110,
) -> Path:
    """Heat map of a K x K confusion matrix (rows: ground truth, columns: prediction).

    ``normalize`` divides each row by its total (recall per class; empty rows stay 0). Cells are
    annotated with their value when ``annotate`` (default: K <= 20).
    """
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    m = np.asarray(matrix, dtype=np.float64)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {m.shape}, expected ({k}, {k}) for {k} class names")
    if normalize:
        rows = m.sum(axis=1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    annotate = k <= 20 if annotate is None else annotate
    plt = _pyplot()
    side = max(4.0, 0.45 * k + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    try:
        im = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(k), list(class_names), rotation=45, ha="right")
        ax.set_yticks(range(k), list(class_names))
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        ax.set_title(title)
        if annotate:
            top = m.max() if m.size else 0.0
            for i in range(k):
                for j in range(k):
                    text = f"{m[i, j]:.2f}" if normalize else f"{m[i, j]:.0f}"
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if m[i, j] > 0.5 * top else "black",
                    )
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save_figure(fig, Path(path), dpi)
