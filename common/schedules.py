"""Learning-rate schedules as closed-form per-step factors, wrapped in a LambdaLR.

Closed forms (rather than chained PyTorch schedulers) make the value at any step checkable by hand and
make resume trivial: the scheduler state is just its step counter.

- constant:     optional linear warmup, then base.
- cosine:       linear warmup from warmup_ratio*base, then cosine to min_lr over (total - warmup) steps
                (SMCL/PAPR "cosine", PyTorch SequentialLR(LinearLR, CosineAnnealingLR) in closed form).
- cosine_half:  as cosine with a period of 2*(total - warmup), so the LR ends near 0.5*base
                (SMCL/PAPR "cosine-half-period").
- warmup_poly:  SMMCL WarmUpPolyLR (spec smmcl.md 3.1): lr(i) = base*i/warmup for i < warmup, else
                base*(1 - i/total)^power; the optimizer step j uses lr(j-1) and step 0 uses base
                (`legacy_first_step`, the official off-by-one, on by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


@dataclass(frozen=True)
class ScheduleConfig:
    name: Literal["constant", "cosine", "cosine_half", "warmup_poly"] = "constant"
    warmup_steps: int = 0
    power: float = 0.9  # warmup_poly exponent
    min_lr: float = 0.0  # absolute LR reached at the end of cosine schedules (and poly floor)
    warmup_ratio: float = 1e-6  # linear warmup starts at warmup_ratio*base (constant / cosine*)
    legacy_first_step: bool = True  # warmup_poly: SMMCL's step-0-at-base-LR off-by-one

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


def smmcl_poly_lr(i: int, base: float, warmup: int, total: int, power: float = 0.9) -> float:
    """SMMCL WarmUpPolyLR value for iteration index i (before the off-by-one shift)."""
    if i < warmup:
        return base * (i / warmup)
    return base * max(0.0, 1.0 - i / total) ** power


def lr_at(cfg: ScheduleConfig, step: int, base: float, total: int) -> float:
    """LR used by optimizer step `step` (0-based) for a group whose base LR is `base`."""
    w = cfg.warmup_steps
    if cfg.name == "warmup_poly":
        if cfg.legacy_first_step:
            if step == 0:
                return base
            step -= 1
        lr = smmcl_poly_lr(step, base, w, total, cfg.power)
        return lr if step < w else max(lr, cfg.min_lr)
    if step < w:
        start = cfg.warmup_ratio
        return base * (start + (1.0 - start) * step / w)
    if cfg.name == "constant":
        return base
    period = max(1, total - w) * (2 if cfg.name == "cosine_half" else 1)
    t = min(step - w, period)
    return cfg.min_lr + (base - cfg.min_lr) * (1.0 + math.cos(math.pi * t / period)) / 2.0


class ClosedFormLR(LRScheduler):
    """Scheduler whose LR at step t is lr_at(cfg, t, base, total) exactly (no multiplicative rounding).

    Its state_dict holds only plain numbers, so it loads with torch.load(weights_only=True).
    """

    def __init__(self, optimizer: Optimizer, cfg: ScheduleConfig, total_steps: int) -> None:
        if total_steps <= 0:
            raise ValueError(f"total_steps must be > 0, got {total_steps}")
        self.cfg, self.total_steps = cfg, total_steps
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        return [lr_at(self.cfg, self.last_epoch, base, self.total_steps) for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "_last_lr": list(self._last_lr),
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if int(state_dict["total_steps"]) != self.total_steps:
            raise ValueError(
                f"scheduler state was saved for {state_dict['total_steps']} total steps, "
                f"this run has {self.total_steps}"
            )
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self.base_lrs = [float(b) for b in state_dict["base_lrs"]]
        self._last_lr = [float(v) for v in state_dict["_last_lr"]]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def recompute(self) -> None:
        """Set every group's LR to the closed form at the current step, after `base_lrs` or
        `total_steps` changed (a resumed run that applies a new lr or a longer schedule)."""
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def build_scheduler(optimizer: Optimizer, cfg: ScheduleConfig, total_steps: int) -> ClosedFormLR:
    """One closed-form scheduler over all groups; each group keeps its own base LR (initial_lr)."""
    return ClosedFormLR(optimizer, cfg, total_steps)
