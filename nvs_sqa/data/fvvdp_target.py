"""FovVideoVDP soft target (spec nvs_sqa.md §2.2, branch 4), via the optional `pyfvvdp` package.

The official training builds a new metric object for every pair; here it is built once per device and
runs on the device of its inputs (the training device), which changes no number. Sequence 1 is the reference and sequence 2 the test; the JOD (0-10, 10 = identical)
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
        self._pyfvvdp, self.display, self.fps = pyfvvdp, display, fps
        self._metrics: dict[torch.device, object] = {}

    def metric(self, device: torch.device):
        """The pyfvvdp metric on `device` (built once per device: the inputs' device is used)."""
        if device not in self._metrics:
            self._metrics[device] = self._pyfvvdp.fvvdp(
                display_name=self.display, heatmap=None, quiet=True, device=device
            )
        return self._metrics[device]

    def jod(self, ref: Tensor, test: Tensor) -> Tensor:
        """(B, L, 3, h, w) x2 -> (B,) JOD per pair (a single frame is scored as an image)."""
        if ref.shape != test.shape or ref.ndim != 5:
            raise ValueError(
                f"expected two (B, L, 3, h, w) tensors of one shape, got {tuple(ref.shape)} and {tuple(test.shape)}"
            )
        metric = self.metric(ref.device)
        out = []
        for r, t in zip(ref.detach().float(), test.detach().float()):
            fps = self.fps if r.shape[0] > 1 else 0
            q, _ = metric.predict(t, r, dim_order="FCHW", frames_per_second=fps)
            out.append(torch.as_tensor(q, dtype=torch.float32, device=ref.device).reshape(()))
        return torch.stack(out)

    def __call__(self, ref: Tensor, test: Tensor) -> Tensor:
        return jod_to_target(self.jod(ref, test))
