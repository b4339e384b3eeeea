"""Official NVS-SQA weights: one entry of three files from the pinned `nvs-sqa==0.1.1` wheel, verified at every load.

The wheel (spec nvs_sqa.md §5, weights.md) carries a torch state_dict, a config JSON and a scikit-learn Ridge
pickle. `scripts/fetch_weights.py` copies the three members byte for byte into `weights_dir()`
(`common.weights.fetch_entry`), so the cached files have the members' recorded sha256 digests; every load
checks the digest again (a tampered cache is refused, not used). The state_dict is read with
`torch.load(weights_only=True)` by common.weights; the Ridge pickle with common.weights.restricted_unpickle
(numpy arrays and sklearn's Ridge only), keeping `coef_` and `intercept_`.
"""

from __future__ import annotations

import warnings

import numpy as np

from common.weights import (
    NUMPY_ONLY,
    Package,
    PackageFile,
    UnsafePickleError,
    WeightsEntry,
    WeightsError,
    cached_file,
    restricted_unpickle,
    weights_dir,
)

_DIR = "nvs_sqa/checkpoints/v0.0.1/"
_STEM = "models/SeqModel_TransEncoder_rgb_viewsz(192)_lowfeat(24+48+96)_fviewsz(360)_pretr(0)_fuse(last)angsz(384)_nlyr(2)_v0.0.1"

#: The released checkpoint (loaded into the model), with the ridge read-out and the config it came with.
OFFICIAL = WeightsEntry(
    tag="official",
    description="released NVS-SQA v0.0.1 checkpoint (epoch 100) with its ridge read-out and config, "
    "from the nvs-sqa 0.1.1 wheel",
    package=Package(
        "nvs-sqa==0.1.1",
        "67a02dfb5111a8680ae10ad104679daaf3d3d2501a2763377408778c1052a336",
        "nvs_sqa-0.1.1-py3-none-any.whl",
    ),
    files=(
        PackageFile(
            "nvs_sqa_official_v0.0.1.pth",
            _DIR + _STEM + "_100.pth",
            "322dd9b1301694f0439ed1e94ddf093724024afbf320f6545a86bc6fe6ed6497",
        ),
        PackageFile(
            "nvs_sqa_official_v0.0.1_ridge.pkl",
            _DIR + "regr/linear_regr.pkl",
            "df5ad7ecae02ae7eca4b48c54e11aa68987d4baadb3d1294e175f5a283124528",
        ),
        PackageFile(
            "nvs_sqa_official_v0.0.1_config.json",
            _DIR + _STEM + "_config.json",
            "7728f1d2970177354319d74a0ad442bbaf6605598c1407107b6879a5a72f2a3a",
        ),
    ),
    url="https://pypi.org/project/nvs-sqa/0.1.1/",
    expected_keys=175,
)


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


def official_weights_available() -> bool:
    """True when the fetch has written the entry's files (digests are checked at load time)."""
    return all((weights_dir() / f.name).is_file() for f in OFFICIAL.files)


def load_official_ridge_state() -> dict[str, np.ndarray]:
    """coef / intercept / alpha of the official read-out (sha256-checked, restricted unpickling)."""
    path = cached_file(OFFICIAL, OFFICIAL.files[1].name)
    return read_ridge_pickle(path.read_bytes(), str(path))
