"""Correlation between predicted and subjective quality scores (SRCC, PLCC, KRCC) with bootstrap CIs.

``plcc_logistic`` applies the standard 4-parameter logistic mapping (VQEG) fitted with
``scipy.optimize.curve_fit`` before Pearson; the official NVS-SQA code uses the raw ``plcc``.
All scores: higher is better, in [-1, 1].

``SRCC``, ``PLCC`` and ``KRCC`` are the stateful forms (``torchmetrics.Metric``): they collect the
paired scores (concatenated over batches and DDP ranks) and call the functions above in ``compute``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from scipy import optimize, stats
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "srcc",
    "plcc",
    "krcc",
    "plcc_logistic",
    "logistic4",
    "fit_logistic4",
    "bootstrap_ci",
    "SRCC",
    "PLCC",
    "KRCC",
]


def _as_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).ravel()
    y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    if x.size < 2:
        raise ValueError(f"need at least 2 paired scores, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("scores contain NaN or inf")
    return x, y


def srcc(x, y) -> float:
    """Spearman rank-order correlation (scipy.stats.spearmanr)."""
    x, y = _as_pair(x, y)
    return float(stats.spearmanr(x, y)[0])


def plcc(x, y) -> float:
    """Pearson linear correlation on the raw scores (scipy.stats.pearsonr)."""
    x, y = _as_pair(x, y)
    return float(stats.pearsonr(x, y)[0])


def krcc(x, y) -> float:
    """Kendall rank correlation, tau-b (scipy.stats.kendalltau)."""
    x, y = _as_pair(x, y)
    return float(stats.kendalltau(x, y)[0])


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """(b1 - b2) / (1 + exp(-(x - b3) / b4)) + b2: monotone map from objective to subjective scale."""
    return (b1 - b2) * _sigmoid((np.asarray(x) - b3) / b4) + b2


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _logistic4_jac(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    # analytic Jacobian: finite differences stall when a parameter starts at exactly 0
    s = _sigmoid((x - b3) / b4)
    g = (b1 - b2) * s * (1.0 - s)
    return np.stack([s, 1.0 - s, -g / b4, -g * (x - b3) / b4**2], axis=1)


def fit_logistic4(x, y) -> np.ndarray:
    """Least-squares fit of :func:`logistic4` mapping x to y; returns (b1, b2, b3, b4)."""
    x, y = _as_pair(x, y)
    p0 = [float(np.max(y)), float(np.min(y)), float(np.mean(x)), float(np.std(x)) or 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)  # covariance is not used
        params, _ = optimize.curve_fit(logistic4, x, y, p0=p0, jac=_logistic4_jac, maxfev=20000)
    return params


def plcc_logistic(x, y) -> float:
    """Pearson correlation between logistic4(x) (fitted to y) and y."""
    x, y = _as_pair(x, y)
    return float(stats.pearsonr(logistic4(x, *fit_logistic4(x, y)), y)[0])


def bootstrap_ci(
    fn: Callable[[np.ndarray, np.ndarray], float],
    x,
    y,
    n: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of fn(x, y), resampling pairs with replacement.

    Resamples on which fn is undefined (NaN, e.g. a constant draw) are dropped.
    """
    x, y = _as_pair(x, y)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, x.size, x.size)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant resamples warn and give NaN
            v = fn(x[idx], y[idx])
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        raise ValueError("every bootstrap resample gave an undefined statistic")
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


class _Correlation(Metric):
    """Collects paired (predicted, subjective) scores; ``compute()`` correlates all of them."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True
    input_range = (-float("inf"), float("inf"))  # any finite value
    score_range = (-1.0, 1.0)
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def __init__(self, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.validate_args = validate_args
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.set_dtype(torch.float64)  # empty states of a rank without data are float64 too

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds, target: paired scores of equal length (any shape; flattened). NaN/inf raise."""
        p = torch.as_tensor(preds).detach().reshape(-1).double()
        t = torch.as_tensor(target).detach().reshape(-1).double()
        if p.shape != t.shape:
            raise ValueError(f"preds and target differ in length: {p.numel()} vs {t.numel()}")
        if self.validate_args and not bool(torch.isfinite(p).all() & torch.isfinite(t).all()):
            raise ValueError("scores contain NaN or inf")
        self.preds.append(p.to(self.device))  # on the metric's device: NCCL gathers only CUDA tensors
        self.target.append(t.to(self.device))

    def _fn(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def compute(self) -> Tensor:
        x = dim_zero_cat(self.preds).cpu().numpy()
        y = dim_zero_cat(self.target).cpu().numpy()
        return torch.tensor(self._fn(x, y), dtype=torch.float64)

    def describe(self) -> str:
        return type(self).__name__


class SRCC(_Correlation):
    """Spearman rank-order correlation of all collected pairs (:func:`srcc`)."""

    def _fn(self, x: np.ndarray, y: np.ndarray) -> float:
        return srcc(x, y)


class PLCC(_Correlation):
    """Pearson correlation of all collected pairs: raw (:func:`plcc`, the official NVS-SQA protocol) or
    after the fitted 4-parameter logistic (``logistic=True``, :func:`plcc_logistic`)."""

    def __init__(self, logistic: bool = False, validate_args: bool = True, **kwargs) -> None:
        super().__init__(validate_args, **kwargs)
        self.logistic = logistic

    def _fn(self, x: np.ndarray, y: np.ndarray) -> float:
        return plcc_logistic(x, y) if self.logistic else plcc(x, y)

    def describe(self) -> str:
        return "PLCC(logistic4)" if self.logistic else "PLCC(raw)"


class KRCC(_Correlation):
    """Kendall tau-b of all collected pairs (:func:`krcc`)."""

    def _fn(self, x: np.ndarray, y: np.ndarray) -> float:
        return krcc(x, y)
