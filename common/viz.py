"""Figures for reports: GIFs, contact sheets, label colouring and overlays, bar charts (matplotlib Agg).

Images are H x W x 3 arrays, uint8 or float in [0, 1]; outputs are uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "to_uint8",
    "default_palette",
    "save_gif",
    "contact_sheet",
    "colorize_labels",
    "overlay",
    "bar_chart",
]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 unchanged; floats in [0, 1] clipped, scaled and rounded; grey H x W -> H x W x 3."""
    a = np.asarray(image)
    if a.dtype.kind == "f":
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"expected uint8 or float images, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an H x W (x 1|3) image, got shape {a.shape}")
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def default_palette(n: int) -> np.ndarray:
    """n distinct colours (n x 3 uint8) from the PASCAL-VOC bit-interleaving scheme; class 0 black."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        v, r, g, b = c, 0, 0, 0
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imgs = [Image.fromarray(to_uint8(f)) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=round(1000 / fps), loop=0)
    return path


def contact_sheet(images: Sequence[np.ndarray], ncols: int, pad: int = 0, pad_value: int = 255) -> np.ndarray:
    """Tile equally sized images row-major into one uint8 array; empty cells get ``pad_value``."""
    if len(images) == 0:
        raise ValueError("contact_sheet needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    tiles = [to_uint8(im) for im in images]
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
    img = to_uint8(image).astype(np.float64)
    if img.shape[:2] != np.asarray(labels).shape:
        raise ValueError(f"image {img.shape[:2]} and labels {np.asarray(labels).shape} differ in size")
    col = colorize_labels(labels, palette, ignore_index).astype(np.float64)
    mask = (np.asarray(labels) != ignore_index)[:, :, None]
    out = np.where(mask, (1 - alpha) * img + alpha * col, img)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def bar_chart(
    names: Sequence[str],
    values: Sequence[float],
    path: str | Path,
    *,
    title: str = "",
    ylabel: str = "",
    errors: Sequence[float] | None = None,
) -> Path:
    """Save a labelled bar chart (PNG/PDF by suffix) with the Agg backend; no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(names) != len(values) or (errors is not None and len(errors) != len(values)):
        raise ValueError(f"names ({len(names)}), values ({len(values)}) and errors must have equal length")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 3.5))
    try:
        ax.bar(range(len(values)), values, yerr=errors, capsize=3 if errors is not None else 0)
        ax.set_xticks(range(len(names)), list(names), rotation=45, ha="right")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
