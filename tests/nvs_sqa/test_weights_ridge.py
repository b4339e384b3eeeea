"""Restricted ridge unpickling and the closed-form ridge against scikit-learn."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from nvs_sqa.ridge import RidgeReadout, fit_ridge
from nvs_sqa.weights import WeightsError, read_ridge_pickle


def test_reads_a_real_sklearn_ridge_pickle_without_sklearn_objects() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 8)).astype(np.float32), rng.normal(size=30).astype(np.float32)
    est = Ridge(alpha=1.0).fit(x, y)
    got = read_ridge_pickle(pickle.dumps(est, protocol=4))
    np.testing.assert_allclose(got["coef"], est.coef_, rtol=1e-6)
    assert float(got["intercept"]) == pytest.approx(float(est.intercept_), rel=1e-6)
    readout = RidgeReadout(got["coef"], float(got["intercept"]))
    np.testing.assert_allclose(readout.predict(x), est.predict(x), atol=1e-5)


def test_refuses_other_globals() -> None:
    evil = pickle.dumps(print)  # builtins.print
    with pytest.raises(WeightsError, match="not allowed"):
        read_ridge_pickle(evil, "evil.pkl")


@pytest.mark.parametrize("n", [20, 60])
def test_fit_ridge_equals_sklearn(n: int) -> None:
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=(n, 40)), rng.normal(size=n)
    ours = fit_ridge(x, y, alpha=1.0)
    ref = Ridge(alpha=1.0).fit(x, y)
    np.testing.assert_allclose(ours.coef, ref.coef_, atol=1e-5)
    assert ours.intercept == pytest.approx(ref.intercept_, abs=1e-5)


def test_readout_roundtrip(tmp_path) -> None:
    r = RidgeReadout(np.arange(4, dtype=np.float32), 1.5)
    r.save(tmp_path / "r.json")
    assert RidgeReadout.load(tmp_path / "r.json").predict(np.ones(4)) == pytest.approx(7.5)
    rng = np.random.default_rng(0)
    exact = RidgeReadout(rng.normal(size=384).astype(np.float32), float(np.float32(15.164299)))
    exact.save(tmp_path / "e.json")
    back = RidgeReadout.load(tmp_path / "e.json")
    assert np.array_equal(back.coef, exact.coef) and back.intercept == exact.intercept  # bit-exact float32
    (tmp_path / "bad.json").write_bytes(b"xx")
    with pytest.raises(ValueError, match="bad.json"):
        RidgeReadout.load(tmp_path / "bad.json")


@pytest.mark.parametrize("member", ["state_dict", "ridge"])
def test_tampered_official_cache_is_refused(tmp_path, monkeypatch, member: str) -> None:
    """Issue 13 §4: a cached official file whose sha256 differs from the recorded digest is never used."""
    import shutil

    from nvs_sqa import QualityAssessor
    from nvs_sqa.weights import OFFICIAL, official_weights_available, weights_dir

    if not official_weights_available():
        pytest.skip("official weights not fetched: run python scripts/fetch_weights.py nvs_sqa")
    for f in OFFICIAL.files:
        shutil.copy(weights_dir() / f.name, tmp_path / f.name)
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path))
    target = tmp_path / OFFICIAL.files[member == "ridge"].name
    data = bytearray(target.read_bytes())
    if member == "ridge":  # flip one byte inside coef_'s float32 data (the pickle still parses)
        data[-200] ^= 0x40
    else:
        data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=f"{target.name}.*sha256"):
        QualityAssessor.from_official()
