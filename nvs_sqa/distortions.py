"""Synthetic distortions for the self-supervised pairs (spec nvs_sqa.md §2.1, §6.3 (4)).

Keys 0-5 pick one distortion, 6-11 mean "none" (so a sequence is distorted with probability 1/2).
`distort` is the corrected set (improved recipe: sigma 0.1 Gaussian, salt = 255, mild speckle, rounding), drawn
from a numpy Generator. `distort_official` is the official behaviour, draw for draw from the global numpy and
python RNGs (what the official trainer uses): Gaussian variance 0.1 in 0-255 units, salt/pepper on 2 % of the
array elements each (per channel) with "salt" = 1, speckle x + x*N(0, 1), Poisson at 2^ceil(log2(#levels))
levels, and truncation (not rounding) back to uint8. Both take and return (H, W, 3) uint8 arrays.
"""

from __future__ import annotations

import io
import math
import random

import cv2
import numpy as np
from PIL import Image

N_KEYS = 12


def _check_key(key: int) -> None:
    if not 0 <= key < N_KEYS:
        raise ValueError(f"distortion key {key} not in 0..{N_KEYS - 1}")


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode with Pillow at `quality`; decoded by OpenCV's libjpeg-turbo (the pixels Pillow gives, tested)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    bgr = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def distort(img: np.ndarray, key: int, rng: np.random.Generator) -> np.ndarray:
    """Apply the corrected distortion `key` (0..11) to one uint8 frame."""
    _check_key(key)
    if key >= 6:
        return img
    x = img.astype(np.float64)
    if key == 0:  # additive Gaussian, sigma 0.1 on [0, 1]
        x = x + rng.normal(0.0, 25.5, x.shape)
    elif key == 1:  # salt and pepper, 4 % of pixels
        mask = rng.random(x.shape[:2])
        x[mask < 0.02] = 0.0
        x[(mask >= 0.02) & (mask < 0.04)] = 255.0
    elif key == 2:  # speckle N(0, 0.1)
        x = x + x * rng.normal(0.0, 0.1, x.shape)
    elif key == 3:  # Poisson shot noise
        x = rng.poisson(np.clip(x, 0, None)).astype(np.float64)
    elif key == 4:  # multiplicative N(1, 0.05)
        x = x * rng.normal(1.0, 0.05, x.shape)
    else:  # JPEG re-encoding, quality U{10..75}
        return _jpeg(img, int(rng.integers(10, 76)))
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def distort_official(img: np.ndarray, key: int) -> np.ndarray:
    """The official distortion `key` (0..11), drawing from the global `np.random` / `random` streams."""
    _check_key(key)
    if key >= 6:
        return img
    x = img.astype(np.float64)
    if key == 0:
        x = x + np.random.normal(0.0, math.sqrt(0.1), x.shape)
    elif key == 1:
        n = int(math.ceil(0.04 * img.size * 0.5))
        x = img.copy()
        for value in (1, 0):  # "salt" written as 1, then pepper; element coordinates drawn per axis
            x[tuple(np.random.randint(0, d, n) for d in img.shape)] = value
    elif key == 2:
        x = x + x * np.random.randn(*x.shape)
    elif key == 3:
        levels = 2 ** np.ceil(np.log2(len(np.unique(img))))
        x = np.random.poisson(x * levels) / float(levels)
    elif key == 4:
        x = x * np.random.normal(1.0, 0.05, x.shape)
    else:
        return _jpeg(img, random.randint(10, 75))
    return np.clip(x, 0, 255).astype(np.uint8)
