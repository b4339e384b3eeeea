"""Synthetic distortions for the self-supervised pairs (spec nvs_sqa.md §2.1, §6.3 (4)).

Keys 0-5 pick one distortion, 6-11 mean "none" (so a sequence is distorted with probability 1/2).
`compat=False` (default) uses corrected parameters; `compat=True` reproduces the official behaviour:
Gaussian variance 0.1 in 0-255 units (a no-op), "salt" written as 1 instead of 255, speckle x + x*N(0, 1).
All functions take and return (H, W, 3) uint8 arrays and draw randomness from the given numpy Generator.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

N_KEYS = 12


def distort(img: np.ndarray, key: int, rng: np.random.Generator, compat: bool = False) -> np.ndarray:
    """Apply distortion `key` (0..11) to one uint8 frame."""
    if not 0 <= key < N_KEYS:
        raise ValueError(f"distortion key {key} not in 0..{N_KEYS - 1}")
    if key >= 6:
        return img
    x = img.astype(np.float64)
    if key == 0:  # additive Gaussian: official variance 0.1 (0-255 units); fixed: sigma 0.1 on [0,1]
        sigma = np.sqrt(0.1) if compat else 25.5
        x = x + rng.normal(0.0, sigma, x.shape)
    elif key == 1:  # salt and pepper, 4 % of pixels
        mask = rng.random(x.shape[:2])
        x[mask < 0.02] = 0.0
        x[(mask >= 0.02) & (mask < 0.04)] = 1.0 if compat else 255.0
    elif key == 2:  # speckle: official x + x*N(0,1); fixed: N(0, 0.1)
        x = x + x * rng.normal(0.0, 1.0 if compat else 0.1, x.shape)
    elif key == 3:  # Poisson shot noise
        x = rng.poisson(np.clip(x, 0, None)).astype(np.float64)
    elif key == 4:  # multiplicative N(1, 0.05)
        x = x * rng.normal(1.0, 0.05, x.shape)
    else:  # JPEG re-encoding, quality U{10..75}
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(rng.integers(10, 76)))
        # decoded by OpenCV's libjpeg-turbo: the same pixels as Pillow's decoder (tested)
        bgr = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
