"""LightHamHead decoder with the NMF2D "Hamburger" (SegNeXt), as configured by SMMCL (spec section 1.5).

Names follow mmcv's ConvModule (`conv`, `gn`) so official checkpoints load. SMMCL's `ham_out` has no norm
(a quirk kept for checkpoint compatibility; SegNeXt's own head has a GN there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smmcl.models.mscan import PWConv


class ConvModule(nn.Module):
    """1x1 conv (+ GroupNorm(32)) (+ ReLU); children named `conv` and `gn` like mmcv's ConvModule."""

    def __init__(self, cin: int, cout: int, *, norm: bool, act: bool) -> None:
        super().__init__()
        self.conv = PWConv(cin, cout, bias=not norm)
        self.gn = nn.GroupNorm(32, cout) if norm else None
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.gn is not None:
            x = self.gn(x)
        return F.relu(x, inplace=True) if self.act else x


class NMF2D(nn.Module):
    """Non-negative matrix factorisation of (B, D, h*w) with random bases drawn at every forward.

    Bases: one `torch.rand((B, D, R), generator=...)` on the input's device (on the CPU the official draw,
    so results match the golden values), L2-normalised over D. Set `generator` (on the input's device) to
    make evaluation deterministic.
    """

    def __init__(self, rank: int = 64, train_steps: int = 6, eval_steps: int = 7, inv_t: float = 1.0) -> None:
        super().__init__()
        self.rank = rank
        self.train_steps = train_steps
        self.eval_steps = eval_steps
        self.inv_t = inv_t
        self.generator: torch.Generator | None = None
        self.fast = False  # True: work on the (B, N, D) token view of a channels_last input, no copies

    def draw_bases(self, batch: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Random bases (B, D, R), L2-normalised over D, drawn on :meth:`bases_device`.

        On the CPU this is the official draw (one `torch.rand((B, D, R))` on the global or given CPU
        generator), so the golden values hold. On CUDA the bases are drawn on the GPU itself (no host
        draw and copy every forward); `generator`, when set, must then live on that device.
        """
        where = self.bases_device(device)
        bases = torch.rand((batch, dim, self.rank), generator=self.generator, device=where)
        return F.normalize(bases, dim=1).to(device=device, dtype=dtype)

    def bases_device(self, device: torch.device) -> torch.device:
        """Where the bases are drawn: the given generator's device, else the input's device."""
        if self.generator is not None:
            return self.generator.device
        return torch.device(device)

    def forward(self, x: Tensor) -> Tensor:
        # NMF is run in float32 even under autocast: the multiplicative updates divide by small numbers.
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            return self._forward_fast(x) if self.fast else self._forward_reference(x)

    def _steps(self) -> int:
        return self.train_steps if self.training else self.eval_steps

    def _forward_reference(self, x: Tensor) -> Tensor:
        """The official form on X (B, D, N)."""
        b, d, h, w = x.shape
        flat = x.reshape(b, d, h * w)
        bases = self.draw_bases(b, d, x.device, x.dtype)
        coef = torch.softmax(self.inv_t * torch.bmm(flat.transpose(1, 2), bases), dim=-1)
        for _ in range(self._steps()):
            coef = _update_coef(flat.transpose(1, 2), bases, coef)
            num = torch.bmm(flat, coef)
            den = bases.bmm(coef.transpose(1, 2).bmm(coef))
            bases = bases * num / (den + 1e-6)
        coef = _update_coef(flat.transpose(1, 2), bases, coef)
        return torch.bmm(bases, coef.transpose(1, 2)).reshape(b, d, h, w)

    def _forward_fast(self, x: Tensor) -> Tensor:
        """Same algebra on Xt (B, N, D): a free view of a channels_last tensor; output stays channels_last."""
        b, d, h, w = x.shape
        xt = x.permute(0, 2, 3, 1).reshape(b, h * w, d)
        bases = self.draw_bases(b, d, x.device, x.dtype)
        coef = torch.softmax(self.inv_t * torch.bmm(xt, bases), dim=-1)
        for _ in range(self._steps()):
            coef = _update_coef(xt, bases, coef)
            num = torch.bmm(xt.transpose(1, 2), coef)
            den = bases.bmm(coef.transpose(1, 2).bmm(coef))
            bases = bases * num / (den + 1e-6)
        coef = _update_coef(xt, bases, coef)
        return torch.bmm(coef, bases.transpose(1, 2)).reshape(b, h, w, d).permute(0, 3, 1, 2)


def _update_coef(xt: Tensor, bases: Tensor, coef: Tensor) -> Tensor:
    """Cf <- Cf * (Xt W) / (Cf (W^T W) + eps); xt is (B, N, D)."""
    num = torch.bmm(xt, bases)
    den = coef.bmm(bases.transpose(1, 2).bmm(bases))
    return coef * num / (den + 1e-6)


class Hamburger(nn.Module):
    """relu(x + ham_out(NMF(relu(ham_in(x)))))."""

    def __init__(self, channels: int, rank: int = 64) -> None:
        super().__init__()
        self.ham_in = ConvModule(channels, channels, norm=False, act=False)
        self.ham = NMF2D(rank=rank)
        self.ham_out = ConvModule(channels, channels, norm=False, act=False)

    def forward(self, x: Tensor) -> Tensor:
        enjoy = F.relu(self.ham_in(x))
        enjoy = self.ham_out(self.ham(enjoy))
        return F.relu(x + enjoy)


class LightHamHead(nn.Module):
    """Resize stages 2-4 to 1/8, concat, squeeze, Hamburger, align, classify. -> (B, K, H/8, W/8)."""

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, channels: int = 512, rank: int = 64):
        super().__init__()
        self.squeeze = ConvModule(sum(in_channels), channels, norm=True, act=True)
        self.hamburger = Hamburger(channels, rank)
        self.align = ConvModule(channels, channels, norm=True, act=True)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = PWConv(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, feats: list[Tensor]) -> Tensor:
        size = feats[0].shape[2:]
        x = torch.cat(
            [feats[0]]
            + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]],
            dim=1,
        )
        x = self.align(self.hamburger(self.squeeze(x)))
        return self.conv_seg(self.dropout(x))
