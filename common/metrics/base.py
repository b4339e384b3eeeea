"""Shared pieces of the stateful metrics: input-range checks and the mean-of-per-item-scores base class.

Every metric class in ``common.metrics`` derives from ``torchmetrics.Metric`` (update / compute /
reset, DDP sync in ``compute``) and states three things: ``higher_is_better``, ``input_range`` (the
values it accepts; inputs outside raise ``ValueError``) and ``score_range`` (the values it returns).
``validate_args=False`` skips the range check (it costs one device->host sync per update).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["check_range", "MeanOfItems"]


def check_range(x: Tensor, lo: float, hi: float, what: str) -> None:
    """ValueError unless every value of ``x`` lies in [lo, hi] (NaN is always refused).

    The bounds are exact (no tolerance): clamp renders before scoring them.
    """
    if x.numel() == 0:
        return
    v = x.detach()
    if not v.is_floating_point():
        v = v.double()
    mn, mx = (float(t) for t in torch.aminmax(v))
    if math.isnan(mn) or math.isnan(mx):
        raise ValueError(f"{what} contains NaN")
    if mn < lo or mx > hi:
        raise ValueError(
            f"{what} has values in [{mn:.6g}, {mx:.6g}], outside the metric's input range [{lo:g}, {hi:g}] "
            "(wrong scaling, e.g. [-1, 1] images given to a [0, 1] metric, or an unclamped render?)"
        )


class MeanOfItems(Metric):
    """Mean over items (images, views) of a per-item score.

    Subclasses implement ``scores(*args) -> Tensor (B,)`` (checking their input range);
    ``update(*args)`` accumulates those scores (float64 sum and count, summed over DDP ranks),
    ``compute()`` is their mean, and ``update_items(*args)`` updates and returns the per-item scores
    (for a report's per-item rows: the mean of those rows equals ``compute()``).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool
    input_range: tuple[float, float]
    score_range: tuple[float, float]

    def __init__(self, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validate_args = validate_args
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self._last_scores: Tensor | None = None

    def scores(self, *args: Tensor) -> Tensor:
        """Per-item scores (B,) of one batch, without accumulating."""
        raise NotImplementedError

    def update(self, *args: Tensor) -> None:
        s = self.scores(*args).detach()
        self.total += s.double().sum().to(self.total.device)
        self.count += s.numel()
        self._last_scores = s

    def update_items(self, *args: Tensor) -> Tensor:
        """``update(*args)`` and return this batch's per-item scores (B,)."""
        self.update(*args)
        assert self._last_scores is not None
        return self._last_scores

    def compute(self) -> Tensor:
        return self.total / self.count

    def describe(self) -> str:
        return type(self).__name__

    @property
    def plot_lower_bound(self) -> float:  # torchmetrics' name for the lowest score
        return self.score_range[0]

    @property
    def plot_upper_bound(self) -> float:
        return self.score_range[1]
