"""FFC blocks and the dual-domain encoder: shapes, spectral behaviour, official key layout (spec 2.1, 7.1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smcl.object.models.ffc import FFC, FourierUnit, SpectralTransform
from smcl.object.models.ffc_encoder import (
    OFFICIAL_ABSENT_PREFIXES,
    DualDomainEncoder,
    DualDomainEncoderConfig,
    FFCOnlyNet,
)


def _identity_fu(c: int) -> FourierUnit:
    fu = FourierUnit(c, c).eval()
    with torch.no_grad():
        fu.conv_layer.weight.copy_(torch.eye(2 * c).view(2 * c, 2 * c, 1, 1))
    fu.bn.eps = 0.0
    fu.relu = nn.Identity()
    return fu


def test_fourier_unit_identity_round_trip() -> None:
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(_identity_fu(3)(x), x, atol=1e-5, rtol=1e-5)


def test_fourier_unit_interleaves_real_imag_per_channel() -> None:
    """Zeroing the imaginary rows (odd channels) keeps the circularly even part x(n)+x(-n) / 2."""
    fu = _identity_fu(2)
    with torch.no_grad():
        fu.conv_layer.weight[1::2] = 0
    x = torch.randn(1, 2, 8, 8)
    flipped = torch.roll(torch.flip(x, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    torch.testing.assert_close(fu(x), (x + flipped) / 2, atol=1e-5, rtol=1e-5)
    # scaling channel 1's (re, im) pair only changes channel 1
    fu2 = _identity_fu(2)
    with torch.no_grad():
        fu2.conv_layer.weight[2:4] *= 3
    y = fu2(x)
    torch.testing.assert_close(y[:, 0], x[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[:, 1], 3 * x[:, 1], atol=1e-5, rtol=1e-5)


def test_fourier_unit_sees_global_context() -> None:
    """A 1x1 conv in frequency space mixes all positions: a point change alters far pixels."""
    fu = FourierUnit(2, 2).eval()
    x = torch.randn(1, 2, 16, 16)
    x2 = x.clone()
    x2[0, :, 0, 0] += 5
    diff = (fu(x2) - fu(x)).abs()[0, :, 8:, 8:]
    assert diff.max() > 1e-3


def test_spectral_transform_and_ffc_shapes() -> None:
    st = SpectralTransform(16, 16)
    assert st(torch.randn(2, 16, 8, 8)).shape == (2, 16, 8, 8)
    ffc = FFC(3, 8, 0.0, 0.5)
    assert isinstance(ffc.convg2l, nn.Identity) and isinstance(ffc.convg2g, nn.Identity)
    xl, xg = ffc((torch.randn(2, 3, 16, 16), 0))
    assert xl.shape == (2, 4, 16, 16) and xg.shape == (2, 4, 16, 16)
    with pytest.raises(ValueError, match="square"):
        st(torch.randn(1, 16, 8, 6))


@pytest.mark.parametrize("se_mode", ["learned", "random_per_call", "none"])
def test_encoder_shapes_and_backward(se_mode: str) -> None:
    enc = DualDomainEncoder(DualDomainEncoderConfig(se_mode=se_mode))
    out, spec = enc.forward_features(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 128, 4, 4) and spec.shape == (2, 32, 4, 4)
    out.mean().backward()
    assert enc.encoder1.enc1conv1.weight.grad is not None
    assert FFCOnlyNet()(torch.rand(2, 3, 64, 64)).shape == (2, 128, 4, 4)


def test_random_per_call_se_is_stochastic_in_eval_learned_is_not() -> None:
    x = torch.rand(1, 3, 64, 64)
    rnd = DualDomainEncoder(DualDomainEncoderConfig(se_mode="random_per_call")).eval()
    assert not torch.allclose(rnd(x), rnd(x))
    learned = DualDomainEncoder(DualDomainEncoderConfig(se_mode="learned")).eval()
    torch.testing.assert_close(learned(x), learned(x))
    assert any("se_cnn" in k for k in learned.state_dict())
    assert not any(k.startswith(OFFICIAL_ABSENT_PREFIXES) for k in rnd.state_dict())


def _official_cnn_ffc_keys() -> dict[str, tuple[int, ...]]:
    """Key/shape list of the official encoder_<cat>.pt, written out from spec section 7.1."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for s in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{s}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    for i, (ci, co) in enumerate([(3, 8), (8, 16), (16, 32), (32, 32)], start=1):
        keys[f"encoder{i}.enc{i}conv1.weight"] = (co, ci, 3, 3)
        bn(f"encoder{i}.enc{i}norm1", co)
        keys[f"encoder{i}.enc{i}conv2.weight"] = (co, co, 3, 3)
        bn(f"encoder{i}.enc{i}norm2", co)
    keys["bottleneck.bottleneckconv1.weight"] = (128, 64, 3, 3)
    bn("bottleneck.bottlenecknorm1", 128)
    keys["bottleneck.bottleneckconv2.weight"] = (128, 128, 3, 3)
    bn("bottleneck.bottlenecknorm2", 128)
    # spectral branch: (in_l, in_g, out_l, out_g)
    for i, (il, ig, ol, og) in enumerate([(3, 0, 4, 4), (4, 4, 8, 8), (8, 8, 16, 16), (16, 16, 16, 16)], 1):
        p = f"encoder{i}_f"
        keys[f"{p}.ffc.convl2l.weight"] = (ol, il, 1, 1)
        keys[f"{p}.ffc.convl2g.weight"] = (og, il, 1, 1)
        if ig:
            mid = og // 2
            keys[f"{p}.ffc.convg2l.weight"] = (ol, ig, 1, 1)
            keys[f"{p}.ffc.convg2g.conv1.0.weight"] = (mid, ig, 1, 1)
            bn(f"{p}.ffc.convg2g.conv1.1", mid)
            for fu in ("fu", "lfu"):
                keys[f"{p}.ffc.convg2g.{fu}.conv_layer.weight"] = (2 * mid, 2 * mid, 1, 1)
                bn(f"{p}.ffc.convg2g.{fu}.bn", 2 * mid)
            keys[f"{p}.ffc.convg2g.conv2.weight"] = (og, mid, 1, 1)
        bn(f"{p}.bn_l", ol)
        bn(f"{p}.bn_g", og)
    return keys


def test_official_encoder_key_layout_matches() -> None:
    official = _official_cnn_ffc_keys()
    assert official["encoder2_f.ffc.convl2l.weight"] == (8, 4, 1, 1)  # the spec's worked example
    assert official["encoder2_f.ffc.convg2g.fu.conv_layer.weight"] == (8, 8, 1, 1)
    ours = {
        k: tuple(v.shape)
        for k, v in DualDomainEncoder().state_dict().items()
        if not k.startswith(OFFICIAL_ABSENT_PREFIXES)
    }
    assert sorted(set(official) ^ set(ours)) == []
    assert {k: ours[k] for k in official} == official
