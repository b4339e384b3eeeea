"""InfoNCE (intended and official form) and focal frequency loss against hand-derived values (spec 2.3)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from smcl.object.losses import InfoNCE, InfoNCECompat, focal_frequency_loss, negative_frequency_loss


def test_infonce_matches_hand_formula() -> None:
    torch.manual_seed(0)
    a, p, q = torch.randn(3, 4, 2, 2, 2).unbind(0)
    loss = InfoNCE(tau=0.5, in_batch_negatives=False)(a, p, q)
    an, pn, qn = (F.normalize(t.flatten(1), dim=1).numpy() for t in (a, p, q))
    sp, sq = (an * pn).sum(1) / 0.5, (an * qn).sum(1) / 0.5
    expected = np.mean(-sp + np.log(np.exp(sp) + np.exp(sq)))
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


def test_infonce_in_batch_negatives_count_and_value() -> None:
    a = torch.eye(3).view(3, 3, 1, 1)
    loss = InfoNCE(tau=1.0, in_batch_negatives=True)(a, a, -a)
    # per sample: pos cos 1, opposite -1, in-batch positives/negatives cos 0 (2 each)
    expected = -1 + math.log(math.e + math.exp(-1) + 4)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_infonce_lower_for_aligned_pairs() -> None:
    torch.manual_seed(1)
    a, q = torch.randn(2, 8, 16, 2, 2).unbind(0)
    good = InfoNCE()(a, a + 0.01 * torch.randn_like(a), q)
    bad = InfoNCE()(a, q, a)
    assert good < 0.1 < bad


def test_infonce_compat_channel_zero_is_the_only_positive() -> None:
    torch.manual_seed(2)
    a, p, q = torch.randn(3, 2, 3, 2, 4).unbind(0)
    loss = InfoNCECompat(tau=0.05)(a, p, q)
    an, pn, qn = (F.normalize(t, dim=-1).numpy() for t in (a, p, q))
    logits = np.concatenate([(an * pn).sum(-1), (an * qn).sum(-1)], axis=1) / 0.05  # (B, 2C, H)
    m = logits.max(1, keepdims=True)
    logsm = logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))
    assert math.isclose(loss.item(), float(-logsm[:, 0, :].mean()), rel_tol=1e-5)


def test_ffl_zero_for_identical_and_hand_value_for_delta() -> None:
    x = torch.randn(2, 3, 4, 4)
    assert focal_frequency_loss(x, x).item() == 0.0
    delta = torch.zeros(1, 1, 4, 4)
    delta[..., 0, 0] = 1.0
    # ortho FFT of a unit impulse: every coefficient 1/4 -> |D| = 1/16 everywhere, weights all 1.
    assert math.isclose(focal_frequency_loss(delta, torch.zeros_like(delta)).item(), 1 / 16, rel_tol=1e-6)


def test_ffl_focuses_on_hard_frequencies() -> None:
    """Weights are |diff|/max: a frequency with twice the error counts 4x the squared error (alpha=1)."""
    pred = torch.zeros(1, 1, 1, 2)
    tgt = torch.tensor([[[[3.0, 1.0]]]])  # ortho DFT over W=2: X = [(3+1), (3-1)] / sqrt(2)
    d = np.array([16.0, 4.0]) / 2
    w = np.sqrt(d) / np.sqrt(d).max()
    assert math.isclose(focal_frequency_loss(pred, tgt).item(), float((w * d).mean()), rel_tol=1e-6)


def test_negative_frequency_loss_bounded_in_fixed_mode() -> None:
    a, b = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 10.0)
    assert negative_frequency_loss(a, b, margin=1.0).item() == 0.0  # far apart: floor reached
    assert negative_frequency_loss(a, b, margin=None).item() < -1.0  # official form keeps rewarding
    near = torch.full((1, 1, 4, 4), 0.01)
    assert negative_frequency_loss(a, near, margin=1.0).item() > 0
