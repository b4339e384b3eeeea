"""NeRF positional (Fourier-feature) encoding: the one implementation, in the two layouts the papers use.

For input x (..., D) and frequencies f_k = freq_factor * 2^k, k = 0..L-1, the encoding holds x itself
(``include_input``) and sin(f_k x), cos(f_k x):

* ``layout="frequency_major"`` (pixelNeRF, SMCL object model): [x, sin(f_0 x), cos(f_0 x), sin(f_1 x), ...],
  each block spanning all D coordinates; output (..., D (1 + 2L)).
* ``layout="coordinate_major"`` (PAPR, SMCL scene renderer): per coordinate c,
  [x_c, sin(f_0 x_c), cos(f_0 x_c), ..., sin(f_{L-1} x_c), cos(f_{L-1} x_c)], coordinates one after another.

``cos_from_sin=True`` evaluates the cosines as sin(f x + pi/2) (pixelNeRF does; it differs from
torch.cos in the last bits), ``False`` calls torch.cos. The numbers are bit-identical to the former
package copies with (frequency_major, cos_from_sin=True, freq_factor=1.5) and (coordinate_major,
cos_from_sin=False, freq_factor=1.0) respectively. :class:`PositionalEncoding` is the module form with
pixelNeRF's persistent buffers ``_freqs`` and ``_phases`` (they are part of its official state_dict).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["LAYOUTS", "positional_encoding", "encoding_dim", "PositionalEncoding"]

LAYOUTS = ("frequency_major", "coordinate_major")
_FREQ_CACHE: dict[tuple, Tensor] = {}


def encoding_dim(d_in: int, num_freqs: int, include_input: bool = True) -> int:
    """Width of the encoding of a D-dimensional input: D (include_input + 2 L)."""
    return d_in * (int(include_input) + 2 * num_freqs)


def _frequencies(num_freqs: int, freq_factor: float, device, dtype) -> Tensor:
    key = (num_freqs, float(freq_factor), str(device), dtype)
    f = _FREQ_CACHE.get(key)
    if f is None:
        f = 2.0 ** torch.arange(num_freqs, device=device, dtype=dtype)
        if freq_factor != 1.0:
            f = freq_factor * f
        _FREQ_CACHE[key] = f
    return f


def _frequency_major(
    x: Tensor, freqs2: Tensor, phases: Tensor | None, include_input: bool, cos_from_sin: bool
) -> Tensor:
    """freqs2/phases: (1, 2L, 1), each frequency repeated for its sin and cos rows."""
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-1])
    arg = flat * freqs2
    if cos_from_sin:
        emb = torch.sin(arg + phases)
    else:
        emb = torch.stack([torch.sin(arg[:, 0::2]), torch.cos(arg[:, 1::2])], dim=2).flatten(1, 2)
    emb = emb.reshape(*shape[:-1], -1)
    return torch.cat([x, emb], dim=-1) if include_input else emb


def _phase_rows(num_freqs: int, device, dtype) -> Tensor:
    phases = torch.zeros(2 * num_freqs, device=device, dtype=dtype)
    phases[1::2] = math.pi * 0.5
    return phases.view(1, -1, 1)


def positional_encoding(
    x: Tensor,
    num_freqs: int,
    *,
    include_input: bool = True,
    layout: str = "coordinate_major",
    freq_factor: float = 1.0,
    cos_from_sin: bool = False,
) -> Tensor:
    """Fourier features of x (..., D) -> (..., D (include_input + 2 num_freqs)); see the module docstring.

    Frequencies are computed in x's dtype (float32 for integer input). ``num_freqs=0`` returns x
    (or an empty last axis without the input).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if num_freqs < 0:
        raise ValueError(f"num_freqs must be >= 0, got {num_freqs}")
    if not x.is_floating_point():
        x = x.float()
    freqs = _frequencies(num_freqs, freq_factor, x.device, x.dtype)
    if layout == "frequency_major":
        phases = _phase_rows(num_freqs, x.device, x.dtype) if cos_from_sin else None
        return _frequency_major(
            x, freqs.repeat_interleave(2).view(1, -1, 1), phases, include_input, cos_from_sin
        )
    xf = x[..., None] * freqs  # (..., D, L)
    cos = torch.sin(xf + math.pi * 0.5) if cos_from_sin else torch.cos(xf)
    sc = torch.stack([torch.sin(xf), cos], -1).flatten(-2)  # (..., D, 2L)
    out = torch.cat([x[..., None], sc], -1) if include_input else sc
    return out.flatten(-2)


class PositionalEncoding(nn.Module):
    """pixelNeRF's encoding module: frequency-major, cosines as sin(. + pi/2), float32 buffers.

    Buffers ``_freqs`` (1, 2L, 1) = freq_factor 2^k, each repeated twice, and ``_phases`` (1, 2L, 1) =
    [0, pi/2, 0, pi/2, ...] are persistent, so the module's state_dict keys match the official files.
    ``d_out`` = d_in (1 + 2 num_freqs).
    """

    def __init__(
        self, num_freqs: int = 6, freq_factor: float = 1.5, d_in: int = 3, include_input: bool = True
    ) -> None:
        super().__init__()
        freqs = freq_factor * 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        self.register_buffer("_freqs", freqs.repeat_interleave(2).view(1, -1, 1))
        self.register_buffer("_phases", _phase_rows(num_freqs, "cpu", torch.float32))
        self.num_freqs = num_freqs
        self.include_input = include_input
        self.d_in = d_in
        self.d_out = encoding_dim(d_in, num_freqs, include_input)

    def forward(self, x: Tensor) -> Tensor:
        return _frequency_major(x, self._freqs, self._phases, self.include_input, cos_from_sin=True)
