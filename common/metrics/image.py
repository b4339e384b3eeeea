"""Full-reference image metrics: PSNR and SSIM (Gaussian 11x11 sigma 1.5, or skimage's uniform window).

Inputs are float tensors (B, C, H, W) (or (C, H, W)) with values in [0, data_range]. Sums run in
float64 so the uniform form matches ``skimage.metrics.structural_similarity`` to ~1e-7; results are
cast back to the input's floating dtype. Both scores: higher is better; SSIM in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "ssim", "gaussian_window"]


def _check_pair(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.ndim == 3:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    if pred.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) or (C, H, W) tensors, got shape {tuple(pred.shape)}")
    return pred, target


def _out_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float32


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR = 10 log10(R^2 / MSE), MSE over all pixels and channels. -> (B,)

    Identical images give +inf (as skimage does).
    """
    pred, target = _check_pair(pred, target)
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return (10.0 * torch.log10(data_range**2 / mse)).to(_out_dtype(pred))


def gaussian_window(win_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Normalised 1-D Gaussian taps (float64), the separable factor of the 2-D window."""
    x = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: Tensor, taps: Tensor) -> Tensor:
    """Separable 'valid' filtering of (N, 1, H, W): equals a padded filter then the border crop."""
    k = taps.numel()
    x = F.conv2d(x, taps.view(1, 1, 1, k))
    return F.conv2d(x, taps.view(1, 1, k, 1))


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    window: str = "gaussian",
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Per-image SSIM, computed per channel and averaged over channels and valid positions. -> (B,)

    ``window="gaussian"``: 11x11 Gaussian, sigma 1.5, population covariance (the NeRF-paper SSIM,
    = skimage with gaussian_weights=True, use_sample_covariance=False). ``window="uniform"``:
    win_size x win_size box, sample covariance (skimage's default; SMCL uses win_size 7 for the
    synthetic and 11 for the real-world protocol). Only windows fully inside the image count, which
    is what skimage's border crop of (win_size - 1) // 2 pixels amounts to.
    """
    pred, target = _check_pair(pred, target)
    if window == "gaussian":
        taps = gaussian_window(win_size, sigma)
        cov_norm = 1.0
    elif window == "uniform":
        if win_size % 2 != 1 or win_size < 3:
            raise ValueError(f"uniform SSIM needs an odd win_size >= 3, got {win_size}")
        taps = torch.full((win_size,), 1.0 / win_size, dtype=torch.float64)
        n = win_size * win_size
        cov_norm = n / (n - 1)
    else:
        raise ValueError(f"window must be 'gaussian' or 'uniform', got {window!r}")
    b, c, h, w = pred.shape
    if h < win_size or w < win_size:
        raise ValueError(f"image {h}x{w} is smaller than the {win_size}x{win_size} SSIM window")
    taps = taps.to(pred.device)
    x = pred.double().reshape(b * c, 1, h, w)
    y = target.double().reshape(b * c, 1, h, w)
    mu_x, mu_y = _filter_valid(x, taps), _filter_valid(y, taps)
    vx = cov_norm * (_filter_valid(x * x, taps) - mu_x * mu_x)
    vy = cov_norm * (_filter_valid(y * y, taps) - mu_y * mu_y)
    vxy = cov_norm * (_filter_valid(x * y, taps) - mu_x * mu_y)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * vxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (vx + vy + c2))
    return s.reshape(b, -1).mean(1).to(_out_dtype(pred))
