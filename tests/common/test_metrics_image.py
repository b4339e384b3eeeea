"""PSNR/SSIM against skimage (the reference SMCL's protocols use) and hand-derived values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from common.metrics.image import psnr, ssim


def _pair(seed: int, h: int = 40, w: int = 36, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((h, w, c))
    b = np.clip(a + 0.1 * rng.standard_normal((h, w, c)), 0, 1)
    return a.astype(np.float32), b.astype(np.float32)


def _t(*arrs: np.ndarray) -> torch.Tensor:
    return torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrs])


def test_psnr_matches_skimage_and_formula() -> None:
    a, b = _pair(0)
    got = psnr(_t(b), _t(a))
    assert got.shape == (1,)
    ref = peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64), data_range=1)
    assert got.item() == pytest.approx(ref, abs=1e-4)
    # hand-derived: constant error 0.1 -> MSE 0.01 -> 20 dB; data_range 255 scales both sides
    x = torch.zeros(2, 3, 4, 4)
    assert torch.allclose(psnr(x + 0.1, x), torch.full((2,), 20.0))
    assert psnr(x + 25.5, x, data_range=255.0)[0].item() == pytest.approx(20.0, abs=1e-4)


@pytest.mark.parametrize("win_size", [7, 11])
def test_uniform_ssim_matches_skimage(win_size: int) -> None:
    a, b = _pair(1)
    c, d = _pair(2)
    got = ssim(_t(b, d), _t(a, c), data_range=1.0, window="uniform", win_size=win_size)
    for k, (x, y) in enumerate([(a, b), (c, d)]):
        # SMCL real-world protocol: structural_similarity(win_size=11, channel_axis=2, data_range=1.0)
        ref = structural_similarity(y, x, win_size=win_size, channel_axis=2, data_range=1.0)
        assert got[k].item() == pytest.approx(ref, abs=1e-6)


def test_uniform_ssim_data_range_255_and_grey() -> None:
    a, b = _pair(3, c=1)
    a255, b255 = a * 255, b * 255
    got = ssim(_t(b255), _t(a255), data_range=255.0, window="uniform", win_size=7)
    ref = structural_similarity(b255[..., 0], a255[..., 0], win_size=7, data_range=255.0)
    assert got.item() == pytest.approx(ref, abs=1e-6)


def test_gaussian_ssim_matches_skimage_gaussian_form() -> None:
    a, b = _pair(4)
    got = ssim(_t(b), _t(a), data_range=1.0, window="gaussian")
    ref = structural_similarity(
        b, a, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert got.item() == pytest.approx(ref, abs=1e-6)


def test_ssim_identity_and_errors() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(2))
    assert ssim(x, 1 - x)[0] < 0.5
    with pytest.raises(ValueError, match="smaller than"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        ssim(x, x[:1])
    with pytest.raises(ValueError, match="window"):
        ssim(x, x, window="box")
