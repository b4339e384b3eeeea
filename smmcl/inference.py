"""Segment a researcher's own images (mmsegmentation's `inference_model` + `show_result`, for RGB-X).

`predict(model, rgb, aux)` works on arrays; `predict_files` (the `predict_smmcl.py` path) reads files into
arrays and calls it, so there is one inference path. The arrays get the dataset's preprocessing
(smmcl.data.rgbx: value / 255 or / 65535, `legacy_bgr`, `legacy_8bit`, aux replicated to 3 channels,
ImageNet normalisation) and the evaluation protocol of the config (smmcl.experiment.predict).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.errors import DataError
from common.image_io import list_images, read_image, write_image
from common.io import atomic_save_npy
from common.viz import default_palette, legend, overlay, to_uint8
from smmcl.data.rgbx import RGBXDatasetConfig, normalise
from smmcl.experiment import ExperimentConfig
from smmcl.experiment import predict as predict_probs


def _unit(a: np.ndarray, what: str) -> np.ndarray:
    """uint8 / 255, uint16 / 65535 (as common.image_io.read_image), float32 [0, 1] as given."""
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(255.0 if a.dtype == np.uint8 else 65535.0)
    if a.dtype.kind != "f" or not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{what}: expected uint8, uint16 or float in [0, 1], got {a.dtype}")
    return a.astype(np.float32)


def _high_byte(plane: np.ndarray) -> np.ndarray:
    """legacy_8bit: the official IMREAD_GRAYSCALE read (the high byte of the 16-bit value; 8-bit v = v*257)."""
    u16 = np.rint(plane.astype(np.float64) * 65535).astype(np.uint16)
    return (u16 >> 8).astype(np.float32) / 255.0


def prepare_inputs(
    rgb: np.ndarray, aux: np.ndarray | None, data: RGBXDatasetConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, aux) HxWx3 float32 in [0, 1] by the dataset's reading rules (smmcl.data.rgbx.read_sample).

    rgb: HxWx3 RGB, or HxWx4 with the aux in channel 4 (MFNet release) when aux is None. aux: HxW (or
    HxWx1, or HxWx3 with equal channels) depth/thermal when `data.aux_channels` is 1, HxWx3 (HHA) when 3.
    """
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"rgb must be HxWx3 (or HxWx4 with the aux in channel 4), got shape {rgb.shape}")
    rgb_f = _unit(rgb, "rgb")
    if aux is None:
        if rgb.shape[2] != 4:
            raise ValueError("no aux given, so the aux must be channel 4 of rgb, but it has 3 channels")
        aux_f = rgb_f[..., 3]
    else:
        aux_f = _unit(aux, "aux")
        if data.aux_channels == 3:
            if aux_f.ndim != 3 or aux_f.shape[2] not in (3, 4):
                raise ValueError(f"aux_channels is 3 (HHA): aux must be HxWx3, got shape {aux.shape}")
            aux_f = aux_f[..., 2::-1] if data.legacy_bgr else aux_f[..., :3]
        else:
            if aux_f.ndim == 3 and (aux_f.shape[2] == 1 or (aux_f == aux_f[..., :1]).all()):
                aux_f = aux_f[..., 0]
            if aux_f.ndim != 2:
                raise ValueError(f"aux_channels is 1: aux must be HxW (depth/thermal), got shape {aux.shape}")
    if aux_f.ndim == 2:
        aux_f = np.repeat((_high_byte(aux_f) if data.legacy_8bit else aux_f)[..., None], 3, axis=2)
    if aux_f.shape[:2] != rgb.shape[:2]:
        raise ValueError(f"sizes differ: rgb {rgb.shape[:2]}, aux {aux_f.shape[:2]}")
    rgb_f = rgb_f[..., 2::-1] if data.legacy_bgr else rgb_f[..., :3]
    return np.ascontiguousarray(rgb_f), np.ascontiguousarray(aux_f)


def predict(
    model: nn.Module,
    rgb: np.ndarray,
    aux: np.ndarray | None = None,
    cfg: ExperimentConfig | None = None,
    *,
    return_probs: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Class-index map (H,W) int64 of one RGB-X pair, on the model's device, by `cfg`'s evaluation protocol.

    Inputs as `prepare_inputs` takes them (aux None: channel 4 of an HxWx4 rgb). return_probs: also the
    class probabilities (K,H,W) float32, averaged over the protocol's scales and flips.
    """
    cfg = ExperimentConfig() if cfg is None else cfg
    r, a = prepare_inputs(np.asarray(rgb), None if aux is None else np.asarray(aux), cfg.data)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    r_t, a_t = (torch.from_numpy(normalise(x).transpose(2, 0, 1).copy())[None].to(device) for x in (r, a))
    probs = predict_probs(model, r_t, a_t, cfg.eval)[0]
    labels = probs.argmax(0).cpu().numpy()
    if not return_probs:
        return labels
    views = len(cfg.eval.scales) * (2 if cfg.eval.flip else 1)
    return labels, (probs / views).float().cpu().numpy()


def class_palette(cfg: ExperimentConfig) -> np.ndarray:
    """Colours per class: class 0 black only where it is void (left out of the mIoU, as LLRGBD's)."""
    return default_palette(max(cfg.model.num_classes, 2), background=0 in cfg.eval.exclude)


def _expand(paths: list[Path], what: str) -> list[Path]:
    """Files as given, folders as their images (naturally sorted); an empty folder is an error."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DataError(p, f"no images in this {what} folder")
            files += found
        else:
            files.append(p)
    return files


def pair_inputs(rgbs: list[Path], auxs: list[Path] | None) -> list[tuple[Path, Path | None, str]]:
    """(rgb, aux or None, output name) per image. Folders expand to their images; --aux is as many files
    (in order) or one folder holding an image of each RGB's stem; no aux: channel 4 of the RGB file.
    Names are the stems, with `_<i>` (the input's position) where stems collide (day/1.png, night/1.png)."""
    rgb_files = _expand(rgbs, "RGB")
    if not auxs:
        aux_files: list[Path | None] = [None] * len(rgb_files)
    elif len(auxs) == 1 and Path(auxs[0]).is_dir():
        by_stem = {p.stem: p for p in list_images(auxs[0])}
        missing = [p.name for p in rgb_files if p.stem not in by_stem]
        if missing:
            raise DataError(auxs[0], f"no aux image for {len(missing)} RGB image(s), e.g. {missing[:3]}")
        aux_files = [by_stem[p.stem] for p in rgb_files]
    else:
        aux_files = list(_expand(auxs, "aux"))
        if len(aux_files) != len(rgb_files):
            raise DataError(auxs[0], f"{len(aux_files)} aux images for {len(rgb_files)} RGB images")
    counts = Counter(p.stem for p in rgb_files)
    names: list[str] = []
    for i, p in enumerate(rgb_files):
        name = p.stem if counts[p.stem] == 1 else f"{p.stem}_{i}"
        while name in names:  # a file literally named like a disambiguated one
            name += "_x"
        names.append(name)
    return list(zip(rgb_files, aux_files, names))


def _read_pair(rgb_path: Path, aux_path: Path | None, data: RGBXDatasetConfig):
    rgb = read_image(rgb_path, mode="unchanged", dtype="float32")
    aux = None if aux_path is None else read_image(aux_path, mode="unchanged", dtype="float32")
    try:
        return rgb, aux, prepare_inputs(rgb, aux, data)
    except ValueError as err:
        names = str(rgb_path) + (f", {aux_path}" if aux_path else "")
        raise DataError(names, str(err)) from None


def predict_files(
    model: nn.Module,
    cfg: ExperimentConfig,
    pairs: list[tuple[Path, Path | None, str]],
    out: Path,
    *,
    save_probs: bool = False,
    alpha: float = 0.5,
) -> list[Path]:
    """Per pair: `out/pred/<name>.png` (class indices), `out/vis/<name>.png` (RGB | overlay | legend of the
    classes present, names from `cfg.class_names`), with save_probs `out/probs/<name>.npy` ((K,H,W) float32).
    """
    palette = class_palette(cfg)
    k = cfg.model.num_classes
    names = list(cfg.class_names) if len(cfg.class_names) == k else [str(i) for i in range(k)]
    written = []
    for rgb_path, aux_path, name in pairs:
        rgb, aux, _ = _read_pair(Path(rgb_path), aux_path and Path(aux_path), cfg.data)  # checked here
        labels, probs = predict(model, rgb, aux, cfg, return_probs=True)
        shown = to_uint8(rgb[..., :3])
        over = overlay(shown, labels, palette, alpha)
        key = legend(names, palette, labels.shape[0], ids=np.unique(labels))
        files = [
            write_image(out / "pred" / f"{name}.png", labels.astype(np.uint8 if k <= 256 else np.uint16)),
            write_image(out / "vis" / f"{name}.png", np.concatenate([shown, over, key], axis=1)),
        ]
        if save_probs:
            files.append(atomic_save_npy(out / "probs" / f"{name}.npy", probs))
        written += files
    return written
