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


# ---- stateful classes (torchmetrics.Metric) ----------------------------------------------------


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for s in (10, 12):
        pairs = [_pair(s + k, h=24, w=20) for k in range(2)]
        out.append((_t(*[b for _, b in pairs]), _t(*[a for a, _ in pairs])))
    return out


def test_psnr_class_is_the_mean_of_the_kernel_and_of_skimage() -> None:
    from common.metrics import PSNR

    m = PSNR()
    assert m.higher_is_better and m.data_range == 1.0 and m.input_range == (0.0, 1.0)
    items, refs = [], []
    for pred, target in _batches():
        got = m.update_items(pred, target)
        assert torch.equal(got, psnr(pred, target))
        items.append(got)
        for k in range(pred.shape[0]):
            x, y = (t[k].permute(1, 2, 0).double().numpy() for t in (target, pred))
            refs.append(peak_signal_noise_ratio(x, y, data_range=1))
    agg = m.compute().item()
    assert agg == pytest.approx(torch.cat(items).double().mean().item(), rel=1e-12)
    assert agg == pytest.approx(float(np.mean(refs)), abs=1e-4)
    m.reset()
    pred, target = _batches()[0]
    m.update(pred, target)
    assert m.compute().item() == pytest.approx(psnr(pred, target).double().mean().item(), rel=1e-12)


@pytest.mark.parametrize(("protocol", "win_size"), [("uniform", 7), ("uniform", 11), ("gaussian", 11)])
def test_ssim_class_protocols_match_skimage(protocol: str, win_size: int) -> None:
    from common.metrics import SSIM

    m = SSIM(protocol=protocol, win_size=win_size)
    assert m.higher_is_better and m.score_range == (-1.0, 1.0)
    refs = []
    for pred, target in _batches():
        m.update(pred, target)
        for k in range(pred.shape[0]):
            x, y = (t[k].permute(1, 2, 0).double().numpy() for t in (target, pred))
            if protocol == "uniform":
                refs.append(structural_similarity(y, x, win_size=win_size, channel_axis=2, data_range=1.0))
            else:
                refs.append(
                    structural_similarity(
                        y,
                        x,
                        channel_axis=2,
                        data_range=1.0,
                        gaussian_weights=True,
                        sigma=1.5,
                        use_sample_covariance=False,
                    )
                )
    assert m.compute().item() == pytest.approx(float(np.mean(refs)), abs=1e-6)
    with pytest.raises(ValueError, match="protocol"):
        SSIM(protocol="box")


def test_image_metrics_reject_inputs_outside_the_data_range() -> None:
    from common.metrics import PSNR, SSIM, MaskedPSNR

    x = torch.rand(1, 3, 16, 16)
    for m in (PSNR(), SSIM()):
        with pytest.raises(ValueError, match=r"outside the metric's input range \[0, 1\]"):
            m.update(x * 2 - 1, x)  # [-1, 1] images given to a [0, 1] metric
        with pytest.raises(ValueError, match="target"):
            m.update(x, x * 255)
        with pytest.raises(ValueError, match="NaN"):
            m.update(torch.full_like(x, float("nan")), x)
    with pytest.raises(ValueError, match="input range"):
        MaskedPSNR().update(x + 0.5, x, torch.ones(1, 1, 16, 16, dtype=torch.bool))
    # uint8 with data_range 255 is in range; the check can be switched off
    u = (x * 255).round().to(torch.uint8)
    m = PSNR(data_range=255)
    m.update(u, (255 - u.int()).to(torch.uint8))
    assert m.compute().item() == pytest.approx(psnr(u.double(), 255 - u.double(), 255.0).item(), rel=1e-6)
    unchecked = PSNR(validate_args=False)
    unchecked.update(x * 2 - 1, x)
    assert torch.isfinite(unchecked.compute())


def test_min_mse_caps_psnr_as_the_scene_protocol() -> None:
    from common.metrics import PSNR

    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    y = x.clone()
    y[1] = (y[1] + 0.05).clamp(0, 1)
    mse = ((x - y) ** 2).flatten(1).mean(1).numpy()
    ref = -10 * np.log10(np.maximum(mse, 1e-12))  # smcl/scene/experiment.py's float formula
    got = psnr(y, x, min_mse=1e-12)
    assert got[0].item() == pytest.approx(120.0) and np.allclose(got.numpy(), ref, rtol=1e-12)
    assert torch.isinf(psnr(y, x)[0])
    m = PSNR(min_mse=1e-12)
    m.update(y, x)
    assert m.compute().item() == pytest.approx(float(ref.mean()), rel=1e-12)


def test_masked_psnr_against_numpy_and_full_mask() -> None:
    from common.metrics import MaskedPSNR
    from common.metrics.image import masked_psnr

    (pred, target), _ = _batches()
    rng = np.random.default_rng(5)
    mask = torch.from_numpy(rng.random((2, 1, 24, 20)) < 0.4)
    got = masked_psnr(pred, target, mask)
    for k in range(2):
        p, t, mk = pred[k].double().numpy(), target[k].double().numpy(), mask[k, 0].numpy()
        ref = 10 * np.log10(1.0 / np.mean((p[:, mk] - t[:, mk]) ** 2))
        assert got[k].item() == pytest.approx(ref, abs=1e-4)
    full = torch.ones(2, 1, 24, 20, dtype=torch.bool)
    assert torch.allclose(masked_psnr(pred, target, full), psnr(pred, target), rtol=1e-6)
    assert torch.allclose(masked_psnr(pred, target, full[:, 0].float()), psnr(pred, target), rtol=1e-6)
    m = MaskedPSNR()
    assert torch.equal(m.update_items(pred, target, mask), got)
    assert m.compute().item() == pytest.approx(got.double().mean().item(), rel=1e-12)
    with pytest.raises(ValueError, match="empty"):
        masked_psnr(pred, target, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="0 and 1"):
        masked_psnr(pred, target, mask.float() * 2)


@pytest.mark.parametrize("protocol", ["uniform", "gaussian"])
def test_masked_ssim_against_skimage_map(protocol: str) -> None:
    from common.metrics import MaskedSSIM
    from common.metrics.image import masked_ssim

    a, b = _pair(7, h=30, w=26)
    rng = np.random.default_rng(8)
    mk = rng.random((30, 26)) < 0.5
    kw = (
        {"win_size": 7}
        if protocol == "uniform"
        else {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    )
    _, smap = structural_similarity(
        b.astype(np.float64), a.astype(np.float64), channel_axis=2, data_range=1.0, full=True, **kw
    )
    win = 7 if protocol == "uniform" else 11
    r = (win - 1) // 2
    crop = (slice(r, 30 - r), slice(r, 26 - r))
    ref = smap[crop][mk[crop]].mean()  # mean over channels and the masked window centres
    m = MaskedSSIM(protocol=protocol, win_size=win)
    got = m.update_items(_t(b), _t(a), torch.from_numpy(mk)[None, None])
    assert got.item() == pytest.approx(float(ref), abs=1e-6)
    full = torch.ones(1, 30, 26, dtype=torch.bool)
    assert masked_ssim(_t(b), _t(a), full, window=protocol, win_size=win).item() == pytest.approx(
        ssim(_t(b), _t(a), window=protocol, win_size=win).item(), abs=1e-7
    )
