"""Official NVS-SQA weights: fetch the `nvs-sqa==0.1.1` wheel once and convert its members to plain files.

The wheel (spec nvs_sqa.md §5, weights.md) carries a torch state_dict, a config JSON and a scikit-learn
Ridge pickle. We keep only plain tensors/arrays: the state_dict is re-saved, the Ridge's `coef_` and
`intercept_` go to an `.npz` (read with a restricted unpickler that never imports scikit-learn).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.weights import WeightsError, download_package, weights_dir

WHEEL_SPEC = "nvs-sqa==0.1.1"
WHEEL_FILE = "nvs_sqa-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "67a02dfb5111a8680ae10ad104679daaf3d3d2501a2763377408778c1052a336"
_MODEL_DIR = "nvs_sqa/checkpoints/v0.0.1/models/"
_STEM = "SeqModel_TransEncoder_rgb_viewsz(192)_lowfeat(24+48+96)_fviewsz(360)_pretr(0)_fuse(last)angsz(384)_nlyr(2)_v0.0.1"
MEMBER_CKPT = _MODEL_DIR + _STEM + "_100.pth"
MEMBER_CONFIG = _MODEL_DIR + _STEM + "_config.json"
MEMBER_RIDGE = "nvs_sqa/checkpoints/v0.0.1/regr/linear_regr.pkl"
CKPT_SHA256 = "322dd9b1301694f0439ed1e94ddf093724024afbf320f6545a86bc6fe6ed6497"
CONFIG_SHA256 = "7728f1d2970177354319d74a0ad442bbaf6605598c1407107b6879a5a72f2a3a"
RIDGE_SHA256 = "df5ad7ecae02ae7eca4b48c54e11aa68987d4baadb3d1294e175f5a283124528"

# Names of the converted files inside weights_dir().
STATE_DICT_FILE = "nvs_sqa_official.pth"
RIDGE_FILE = "nvs_sqa_official_ridge.npz"
CONFIG_FILE = "nvs_sqa_official_config.json"


class _RidgeState:
    """Harmless stand-in for sklearn's Ridge: only collects the pickled attribute dict."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected Ridge state of type {type(state).__name__}")
        self.state = dict(state)


def _numpy_global(name: str) -> Any:
    try:
        from numpy._core import multiarray as ma  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    return getattr(ma, name)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves numpy array/scalar reconstruction and maps the Ridge class to `_RidgeState`; refuses the rest."""

    _NUMPY_MA = {"_reconstruct", "scalar"}

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in self._NUMPY_MA:
            return _numpy_global(name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "sklearn.linear_model._ridge" and name == "Ridge":
            return _RidgeState
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in the ridge pickle")


def read_ridge_pickle(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Extract coef_ (float32 (D,)) and intercept_ (float32 ()) from a pickled sklearn Ridge, safely."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise WeightsError(f"{source}: cannot read ridge pickle: {err}") from err
    if not isinstance(obj, _RidgeState) or "coef_" not in obj.state or "intercept_" not in obj.state:
        raise WeightsError(f"{source}: pickle does not hold a Ridge with coef_ and intercept_")
    coef = np.asarray(obj.state["coef_"], dtype=np.float32)
    intercept = np.asarray(obj.state["intercept_"], dtype=np.float32)
    if coef.ndim != 1 or intercept.size != 1:
        raise WeightsError(
            f"{source}: coef_ shape {coef.shape} / intercept_ shape {intercept.shape} unsupported"
        )
    alpha = float(obj.state.get("alpha", float("nan")))
    return {"coef": coef, "intercept": intercept.reshape(()), "alpha": np.asarray(alpha)}


def fetch_official_weights(force: bool = False) -> dict[str, Path]:
    """Download the pinned wheel (once), verify every member's sha256 and write plain files.

    Returns {"state_dict": .pth, "ridge": .npz, "config": .json} inside weights_dir().
    """
    out = weights_dir()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"state_dict": out / STATE_DICT_FILE, "ridge": out / RIDGE_FILE, "config": out / CONFIG_FILE}
    if not force and all(p.exists() for p in paths.values()):
        return paths
    wheel = download_package(WHEEL_SPEC, WHEEL_SHA256, WHEEL_FILE)
    with zipfile.ZipFile(wheel) as zf:
        blobs = {m: zf.read(m) for m in (MEMBER_CKPT, MEMBER_CONFIG, MEMBER_RIDGE)}
    for member, want in (
        (MEMBER_CKPT, CKPT_SHA256),
        (MEMBER_CONFIG, CONFIG_SHA256),
        (MEMBER_RIDGE, RIDGE_SHA256),
    ):
        if hashlib.sha256(blobs[member]).hexdigest() != want:
            raise WeightsError(f"{wheel}!{member}: sha256 mismatch")
    sd = torch.load(io.BytesIO(blobs[MEMBER_CKPT]), map_location="cpu", weights_only=True)
    if not isinstance(sd, dict) or len(sd) != 175:
        raise WeightsError(f"{wheel}!{MEMBER_CKPT}: expected a 175-key state_dict")
    _atomic_save(lambda p: torch.save(dict(sd), p), paths["state_dict"])
    ridge = read_ridge_pickle(blobs[MEMBER_RIDGE], f"{wheel}!{MEMBER_RIDGE}")
    _atomic_save(lambda p: np.savez(p, **ridge), paths["ridge"], suffix=".npz")
    cfg = json.loads(blobs[MEMBER_CONFIG].decode("utf-8"))
    _atomic_save(lambda p: Path(p).write_text(json.dumps(cfg, indent=1)), paths["config"])
    return paths


def _atomic_save(write, path: Path, suffix: str = ".tmp") -> None:
    tmp = path.with_name(path.name + ".partial" + suffix)
    write(tmp)
    os.replace(tmp, path)


def official_weights_available() -> bool:
    """True when fetch_official_weights() has already written its files."""
    d = weights_dir()
    return all((d / f).exists() for f in (STATE_DICT_FILE, RIDGE_FILE, CONFIG_FILE))


def require_official_weights() -> dict[str, Path]:
    """Paths of the converted files, or a clear error saying how to fetch them."""
    d = weights_dir()
    paths = {"state_dict": d / STATE_DICT_FILE, "ridge": d / RIDGE_FILE, "config": d / CONFIG_FILE}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise WeightsError(
            f"official NVS-SQA weights not found ({', '.join(missing)}); run "
            "`python -c 'from nvs_sqa.weights import fetch_official_weights; fetch_official_weights()'`"
        )
    return paths
