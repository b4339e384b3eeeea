"""common.encoding against hand-written references (float64) and the two former package copies (bit-exact)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.encoding import PositionalEncoding, encoding_dim, positional_encoding


def _pixelnerf_copy(x: torch.Tensor, num_freqs: int = 6, freq_factor: float = 1.5) -> torch.Tensor:
    # the SMCL object model's former PositionalEncoding.forward, written out
    freqs = freq_factor * 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
    freqs = freqs.repeat_interleave(2).view(1, -1, 1)
    phases = torch.zeros(2 * num_freqs)
    phases[1::2] = math.pi * 0.5
    phases = phases.view(1, -1, 1)
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-1])
    emb = torch.sin(flat * freqs + phases).reshape(flat.shape[0], -1)
    return torch.cat([x, emb.view(*shape[:-1], -1)], dim=-1)


def _papr_copy(x: torch.Tensor, num_freqs: int) -> torch.Tensor:
    # the SMCL scene renderer's former posenc
    freqs = 2.0 ** torch.arange(num_freqs, dtype=x.dtype)
    xf = x[..., None] * freqs
    sc = torch.stack([torch.sin(xf), torch.cos(xf)], -1).flatten(-2)
    return torch.cat([x[..., None], sc], -1).flatten(-2)


def test_bit_identical_to_former_copies() -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 7, 3, generator=g) - 0.5) * 6
    ref = _pixelnerf_copy(x)
    assert torch.equal(PositionalEncoding(6, 1.5)(x), ref)
    got = positional_encoding(x, 6, layout="frequency_major", freq_factor=1.5, cos_from_sin=True)
    assert torch.equal(got, ref)
    for L in (0, 1, 4, 10):
        assert torch.equal(positional_encoding(x, L), _papr_copy(x, L)), L


def test_layouts_against_float64_formula() -> None:
    x = torch.tensor([[0.3, -1.2], [2.0, 0.7]], dtype=torch.float64)
    L, ff = 3, 1.5
    f = ff * 2.0 ** np.arange(L)
    xs = x.numpy()
    fm = [xs] + [g(fk * xs) for fk in f for g in (np.sin, np.cos)]
    want_fm = np.concatenate(fm, axis=-1)
    got = positional_encoding(x, L, layout="frequency_major", freq_factor=ff)
    assert got.shape == (2, encoding_dim(2, L)) == (2, 14)
    assert np.abs(got.numpy() - want_fm).max() < 1e-12
    phase = positional_encoding(x, L, layout="frequency_major", freq_factor=ff, cos_from_sin=True)
    assert np.abs(phase.numpy() - want_fm).max() < 1e-12
    cm = [
        np.concatenate([[xs[i, c]], *[[np.sin(fk * xs[i, c]), np.cos(fk * xs[i, c])] for fk in f]])
        for i in range(2)
        for c in range(2)
    ]
    want_cm = np.stack(cm).reshape(2, -1)
    got = positional_encoding(x, L, freq_factor=ff)
    assert np.abs(got.numpy() - want_cm).max() < 1e-12
    no_in = positional_encoding(x, L, freq_factor=ff, include_input=False)
    assert no_in.shape == (2, encoding_dim(2, L, include_input=False)) == (2, 12)
    assert torch.equal(no_in.view(2, 2, 7 - 1), got.view(2, 2, 7)[..., 1:])
    fm_no_in = positional_encoding(x, L, layout="frequency_major", freq_factor=ff, include_input=False)
    assert np.abs(fm_no_in.numpy() - want_fm[:, 2:]).max() < 1e-12


def test_module_buffers_and_errors() -> None:
    pe = PositionalEncoding(6, 1.5)
    assert sorted(pe.state_dict()) == ["_freqs", "_phases"]
    assert pe.d_out == 39 and pe._freqs.shape == (1, 12, 1)
    assert pe._freqs.flatten()[:4].tolist() == [1.5, 1.5, 3.0, 3.0]
    x = torch.zeros(5, 3, requires_grad=True)
    pe(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="layout"):
        positional_encoding(torch.zeros(1, 3), 2, layout="interleaved")
    assert positional_encoding(torch.tensor([[1, 2]]), 1).dtype == torch.float32
