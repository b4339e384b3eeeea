"""Linear read-out from the 384-d representation to a JOD-like score (spec nvs_sqa.md §4, §5.3).

The official regressor is sklearn Ridge(alpha=1) on raw (unstandardised) features; prediction is
coef . x + intercept in float32. `fit_ridge` reproduces sklearn's closed form (centred, intercept unpenalised).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# JOD range of the labels the official regressor was fitted on (spec §3.3); scores outside are suspicious.
LABEL_RANGE = (-16.24, 1.38)


@dataclass(frozen=True)
class RidgeReadout:
    coef: np.ndarray  # (D,) float32
    intercept: float
    alpha: float = 1.0

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """(N, D) or (D,) float32 features -> (N,) or () float32 scores."""
        feats = np.asarray(feats, dtype=np.float32)
        return (feats @ self.coef + np.float32(self.intercept)).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, coef=self.coef, intercept=np.float32(self.intercept), alpha=np.float64(self.alpha))

    @classmethod
    def load(cls, path: Path) -> RidgeReadout:
        """Read the `.npz` written by save() or by nvs_sqa.weights.fetch_official_weights()."""
        try:
            with np.load(path, allow_pickle=False) as z:
                coef = np.asarray(z["coef"], dtype=np.float32)
                intercept = float(np.float32(z["intercept"]))
                alpha = float(z["alpha"]) if "alpha" in z else 1.0
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path}: not a ridge read-out npz with coef/intercept ({err})") from err
        if coef.ndim != 1:
            raise ValueError(f"{path}: coef must be 1-D, got shape {coef.shape}")
        return cls(coef=coef, intercept=intercept, alpha=alpha)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1.0, standardize: bool = False) -> RidgeReadout:
    """Closed-form ridge with an unpenalised intercept (sklearn Ridge's definition), float64 solve.

    standardize=True divides features by their std before fitting and folds it back into coef (an option of
    spec §6.4; the official protocol is standardize=False).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"fit_ridge: x must be (N, D) and y (N,), got {x.shape} and {y.shape}")
    xm, ym = x.mean(0), y.mean()
    xc = x - xm
    scale = xc.std(0) if standardize else np.ones(x.shape[1])
    scale[scale == 0] = 1.0
    xs = xc / scale
    d = xs.shape[1]
    if xs.shape[0] < d:  # dual form is cheaper and better conditioned
        k = xs @ xs.T
        w = xs.T @ np.linalg.solve(k + alpha * np.eye(k.shape[0]), y - ym)
    else:
        w = np.linalg.solve(xs.T @ xs + alpha * np.eye(d), xs.T @ (y - ym))
    coef = w / scale
    intercept = ym - xm @ coef
    return RidgeReadout(coef=coef.astype(np.float32), intercept=float(np.float32(intercept)), alpha=alpha)
