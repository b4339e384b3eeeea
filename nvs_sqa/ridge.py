"""Linear read-out from the 384-d representation to a JOD-like score (spec nvs_sqa.md §4, §5.3).

The official regressor is sklearn Ridge(alpha=1) on raw (unstandardised) features; prediction is
coef . x + intercept in float32. `fit_ridge` fits with scikit-learn's `Ridge` (float64) and keeps only
coef / intercept, so a read-out is a plain pair of numbers saved as JSON, never a pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError

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

    def save(self, path: Path) -> Path:
        """JSON {"coef": [...], "intercept", "alpha"}; float32 values round-trip exactly."""
        from common.io import atomic_write_json

        obj = {
            "coef": [float(c) for c in np.asarray(self.coef, np.float32)],
            "intercept": float(np.float32(self.intercept)),
            "alpha": float(self.alpha),
        }
        return atomic_write_json(path, obj)

    @classmethod
    def load(cls, path: Path) -> RidgeReadout:
        """Read the JSON written by save()."""
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
            coef = np.asarray(obj["coef"], dtype=np.float32)
            intercept = float(np.float32(obj["intercept"]))
            alpha = float(obj.get("alpha", 1.0))
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise DataError(path, f"not a ridge read-out JSON with coef/intercept ({err})") from err
        if coef.ndim != 1:
            raise DataError(path, f"coef must be 1-D, got shape {coef.shape}")
        return cls(coef=coef, intercept=intercept, alpha=alpha)

    @classmethod
    def official(cls) -> RidgeReadout:
        """The released read-out (sha256-checked cache file, restricted unpickling)."""
        from nvs_sqa.weights import load_official_ridge_state

        state = load_official_ridge_state()
        return cls(coef=state["coef"], intercept=float(state["intercept"]), alpha=float(state["alpha"]))


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1.0, standardize: bool = False) -> RidgeReadout:
    """scikit-learn `Ridge(alpha)` (unpenalised intercept) on float64 features.

    standardize=True divides features by their std before fitting and folds it back into coef (an option of
    spec §6.4; the official protocol is standardize=False).
    """
    from sklearn.linear_model import Ridge

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"fit_ridge: x must be (N, D) and y (N,), got {x.shape} and {y.shape}")
    scale = x.std(0) if standardize else np.ones(x.shape[1])
    scale[scale == 0] = 1.0
    est = Ridge(alpha=alpha, fit_intercept=True).fit(x / scale, y)
    coef = np.asarray(est.coef_, dtype=np.float64) / scale
    intercept = float(est.intercept_)
    return RidgeReadout(coef=coef.astype(np.float32), intercept=float(np.float32(intercept)), alpha=alpha)
