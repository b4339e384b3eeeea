"""FovVideoVDP soft target (spec nvs_sqa.md §2.2, branch 4), via the optional `pyfvvdp` package.

The official training builds a new metric object for every pair; here it is built once per sampler, which
changes no number. Sequence 1 is the reference and sequence 2 the test; the JOD (0-10, 10 = identical)
is clamped and mapped linearly to [-1, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

PYFVVDP_HINT = "pip install 'pyfvvdp>=1.2.2'  (1.2.0, the version of the official run, fails on numpy 2)"


def jod_to_target(jod: Tensor) -> Tensor:
    """JOD 10 -> 1, 5 -> 0, <= 0 -> -1."""
    return jod.clamp(0.0, 10.0) / 5.0 - 1.0


class FovVideoVDPTarget:
    """Callable (ref, test) -> soft targets; both (B, L, 3, h, w) display-encoded sRGB in [0, 1]."""

    def __init__(self, display: str = "standard_fhd", fps: float = 30.0) -> None:
        try:
            import pyfvvdp
        except ImportError as err:
            raise ImportError(
                f"the 'fvvdp' target branch needs the optional pyfvvdp package: {PYFVVDP_HINT}"
            ) from err
        self.fps = fps
        self.metric = pyfvvdp.fvvdp(
            display_name=display, heatmap=None, quiet=True, device=torch.device("cpu")
        )

    def jod(self, ref: Tensor, test: Tensor) -> Tensor:
        """(B, L, 3, h, w) x2 -> (B,) JOD per pair (a single frame is scored as an image)."""
        if ref.shape != test.shape or ref.ndim != 5:
            raise ValueError(
                f"expected two (B, L, 3, h, w) tensors of one shape, got {tuple(ref.shape)} and {tuple(test.shape)}"
            )
        out = []
        for r, t in zip(ref.detach().float().cpu(), test.detach().float().cpu()):
            fps = self.fps if r.shape[0] > 1 else 0
            q, _ = self.metric.predict(t, r, dim_order="FCHW", frames_per_second=fps)
            out.append(torch.as_tensor(q, dtype=torch.float32).reshape(()))
        return torch.stack(out)

    def __call__(self, ref: Tensor, test: Tensor) -> Tensor:
        return jod_to_target(self.jod(ref, test))
