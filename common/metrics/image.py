"""Full-reference image metrics: PSNR and SSIM (Gaussian 11x11 sigma 1.5, or skimage's uniform window).

Functional kernels (``psnr``, ``ssim``, ``masked_psnr``, ``masked_ssim``) take float tensors
(B, C, H, W) (or (C, H, W)) with values in [0, data_range] and do not check the range. Sums run in
float64 so the uniform form matches ``skimage.metrics.structural_similarity`` to ~1e-7; results are
cast back to the input's floating dtype. Both scores: higher is better; SSIM in [-1, 1].

The stateful classes (``PSNR``, ``SSIM``, ``MaskedPSNR``, ``MaskedSSIM``; ``torchmetrics.Metric``)
average the per-image scores over a dataset and refuse inputs outside [0, data_range].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from common.metrics.base import MeanOfItems, check_range

__all__ = [
    "psnr",
    "ssim",
    "ssim_map",
    "masked_psnr",
    "masked_ssim",
    "gaussian_window",
    "PSNR",
    "SSIM",
    "MaskedPSNR",
    "MaskedSSIM",
]


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


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0, min_mse: float = 0.0) -> Tensor:
    """Per-image PSNR = 10 log10(R^2 / max(MSE, min_mse)), MSE over all pixels and channels. -> (B,)

    Identical images give +inf (as skimage does) unless ``min_mse`` > 0 caps the score (SMCL's scene
    evaluation uses min_mse=1e-12, i.e. at most 120 dB for data_range 1).
    """
    pred, target = _check_pair(pred, target)
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    if min_mse > 0:
        mse = mse.clamp_min(min_mse)
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
    pred, _ = _check_pair(pred, target)
    s = ssim_map(pred, target, data_range, window, win_size, sigma, k1, k2)
    return s.reshape(s.shape[0], -1).mean(1).to(_out_dtype(pred))


def ssim_map(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    window: str = "gaussian",
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """float64 SSIM map (B, C, H - win_size + 1, W - win_size + 1) at every window fully inside the image.

    Entry [..., i, j] belongs to the window centred on pixel (i + r, j + r), r = (win_size - 1) // 2.
    Arguments as :func:`ssim`.
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
    return s.reshape(b, c, h - win_size + 1, w - win_size + 1)


def _check_mask(mask: Tensor, pred: Tensor) -> Tensor:
    """(B, 1, H, W) or (B, H, W) (or (H, W) / (1, H, W) with a 3-D image) -> bool (B, 1, H, W)."""
    b, _, h, w = pred.shape
    m = mask
    if m.ndim == 2:
        m = m[None]
    if m.ndim == 3:
        m = m[:, None] if m.shape[0] == b else m[None]
    if m.ndim != 4 or m.shape[0] != b or m.shape[1] != 1 or m.shape[2:] != (h, w):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not fit images of shape {tuple(pred.shape)}")
    if m.dtype != torch.bool:
        if bool(((m != 0) & (m != 1)).any()):
            raise ValueError("mask must be boolean or hold only 0 and 1")
        m = m != 0
    return m.to(pred.device)


def masked_psnr(
    pred: Tensor, target: Tensor, mask: Tensor, data_range: float = 1.0, min_mse: float = 0.0
) -> Tensor:
    """Per-image PSNR over the pixels where mask is true (all channels). (B,C,H,W), (B,C,H,W), (B,1,H,W) -> (B,)

    An image whose mask is empty raises ValueError (its PSNR is undefined).
    """
    pred, target = _check_pair(pred, target)
    m = _check_mask(mask, pred)
    n = m.flatten(1).sum(1)
    if bool((n == 0).any()):
        raise ValueError(f"mask is empty for image(s) {torch.nonzero(n == 0).flatten().tolist()}")
    err = (pred.double() - target.double()).pow(2) * m
    mse = err.flatten(1).sum(1) / (n.double() * pred.shape[1])
    if min_mse > 0:
        mse = mse.clamp_min(min_mse)
    return (10.0 * torch.log10(data_range**2 / mse)).to(_out_dtype(pred))


def masked_ssim(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    data_range: float = 1.0,
    window: str = "gaussian",
    win_size: int = 11,
    sigma: float = 1.5,
) -> Tensor:
    """Per-image SSIM averaged over channels and the window centres where mask is true. -> (B,)

    The map is :func:`ssim_map` (windows fully inside the image); the mask is cropped by
    (win_size - 1) // 2 pixels on each side to match it. A mask with no true pixel inside that crop
    raises ValueError.
    """
    pred, target = _check_pair(pred, target)
    m = _check_mask(mask, pred)
    s = ssim_map(pred, target, data_range, window, win_size, sigma)
    r = (win_size - 1) // 2
    h, w = pred.shape[-2:]
    m = m[..., r : h - r, r : w - r]
    n = m.flatten(1).sum(1)
    if bool((n == 0).any()):
        raise ValueError(
            f"mask has no pixel at least {r} px from the border for image(s) "
            f"{torch.nonzero(n == 0).flatten().tolist()}"
        )
    total = (s * m).flatten(1).sum(1)
    return (total / (n.double() * s.shape[1])).to(_out_dtype(pred))


def _check_images(pred: Tensor, target: Tensor, data_range: float) -> None:
    _check_pair(pred, target)
    check_range(pred, 0.0, data_range, "pred")
    check_range(target, 0.0, data_range, "target")


class PSNR(MeanOfItems):
    """Mean per-image PSNR (dB). ``update(pred, target)``: (B, C, H, W) in [0, data_range].

    higher is better; scores in (-inf, inf] (+inf for an identical pair unless ``min_mse`` > 0).
    """

    higher_is_better = True

    def __init__(
        self, data_range: float = 1.0, min_mse: float = 0.0, validate_args: bool = True, **kwargs
    ) -> None:
        super().__init__(validate_args, **kwargs)
        if data_range <= 0:
            raise ValueError(f"data_range must be > 0, got {data_range}")
        self.data_range = float(data_range)
        self.min_mse = float(min_mse)
        self.input_range = (0.0, self.data_range)
        self.score_range = (-float("inf"), float("inf"))

    def scores(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.validate_args:
            _check_images(pred, target, self.data_range)
        return psnr(pred, target, self.data_range, self.min_mse)

    def describe(self) -> str:
        cap = f", min_mse={self.min_mse:g}" if self.min_mse > 0 else ""
        return f"PSNR(data_range={self.data_range:g}{cap})"


class SSIM(MeanOfItems):
    """Mean per-image SSIM. ``update(pred, target)``: (B, C, H, W) in [0, data_range].

    ``protocol="gaussian"``: 11x11 Gaussian window, sigma 1.5, population covariance (NeRF papers);
    ``protocol="uniform"``: win_size x win_size box window, sample covariance (skimage's default,
    ``structural_similarity(..., win_size=win_size, channel_axis=...)``). higher is better; [-1, 1].
    """

    higher_is_better = True
    score_range = (-1.0, 1.0)

    def __init__(
        self,
        data_range: float = 1.0,
        protocol: str = "gaussian",
        win_size: int = 11,
        sigma: float = 1.5,
        validate_args: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(validate_args, **kwargs)
        if protocol not in ("gaussian", "uniform"):
            raise ValueError(f"protocol must be 'gaussian' or 'uniform', got {protocol!r}")
        if data_range <= 0:
            raise ValueError(f"data_range must be > 0, got {data_range}")
        self.data_range = float(data_range)
        self.protocol, self.win_size, self.sigma = protocol, int(win_size), float(sigma)
        self.input_range = (0.0, self.data_range)

    def scores(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.validate_args:
            _check_images(pred, target, self.data_range)
        return ssim(pred, target, self.data_range, self.protocol, self.win_size, self.sigma)

    def describe(self) -> str:
        sig = f", sigma={self.sigma:g}" if self.protocol == "gaussian" else ""
        return (
            f"SSIM(data_range={self.data_range:g}, protocol={self.protocol}, win_size={self.win_size}{sig})"
        )


class MaskedPSNR(PSNR):
    """Mean per-image PSNR over masked pixels. ``update(pred, target, mask)``, mask (B, 1, H, W) bool/0-1."""

    def scores(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        if self.validate_args:
            _check_images(pred, target, self.data_range)
        return masked_psnr(pred, target, mask, self.data_range, self.min_mse)

    def describe(self) -> str:
        return "Masked" + super().describe()


class MaskedSSIM(SSIM):
    """Mean per-image SSIM over window centres inside the mask. ``update(pred, target, mask)``."""

    def scores(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        if self.validate_args:
            _check_images(pred, target, self.data_range)
        return masked_ssim(pred, target, mask, self.data_range, self.protocol, self.win_size, self.sigma)

    def describe(self) -> str:
        return "Masked" + super().describe()
