"""SRCC/PLCC/KRCC against scipy.stats; logistic PLCC and bootstrap CIs checked by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from common.metrics.correlation import bootstrap_ci, fit_logistic4, krcc, logistic4, plcc, plcc_logistic, srcc


@pytest.fixture()
def scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random(40)
    y = 3 * x**2 + 0.2 * rng.standard_normal(40)
    return x, y


def test_against_scipy(scores) -> None:
    x, y = scores
    assert srcc(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert plcc(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert krcc(x, y) == pytest.approx(stats.kendalltau(x, y)[0], abs=1e-12)
    # torch tensors accepted
    assert srcc(torch.tensor(x), torch.tensor(y)) == pytest.approx(srcc(x, y))
    # hand case: perfectly monotone but nonlinear -> ranks agree exactly, Pearson does not
    a = np.arange(1.0, 8.0)
    assert srcc(a, np.exp(a)) == pytest.approx(1.0) and krcc(a, -a) == pytest.approx(-1.0)
    assert plcc(a, np.exp(a)) < 0.95


def test_logistic_fit_recovers_a_sigmoid_mapping() -> None:
    x = np.linspace(-3, 3, 30)
    true = (5.0, 1.0, 0.5, 0.7)
    y = logistic4(x, *true)
    b = fit_logistic4(x, y)
    assert np.allclose(logistic4(x, *b), y, atol=1e-5)
    assert plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-8)
    assert plcc(x, y) < 0.99  # the mapping is what makes it 1


def test_bootstrap_ci_contains_point_and_is_seeded(scores) -> None:
    x, y = scores
    lo, hi = bootstrap_ci(srcc, x, y, n=300, seed=1)
    assert lo < srcc(x, y) < hi and hi - lo < 0.3
    assert bootstrap_ci(srcc, x, y, n=300, seed=1) == (lo, hi)
    lo90, hi90 = bootstrap_ci(srcc, x, y, n=300, alpha=0.1, seed=1)
    assert lo <= lo90 and hi90 <= hi


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="length"):
        srcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        plcc([1.0, np.nan, 3.0], [1, 2, 3])


def test_metric_classes_equal_the_functions_and_scipy(scores) -> None:
    from common.metrics import KRCC, PLCC, SRCC

    x, y = scores
    refs = {
        "srcc": stats.spearmanr(x, y)[0],
        "plcc": stats.pearsonr(x, y)[0],
        "krcc": stats.kendalltau(x, y)[0],
    }
    for name, m in (("srcc", SRCC()), ("plcc", PLCC()), ("krcc", KRCC())):
        assert m.higher_is_better and m.score_range == (-1.0, 1.0)
        for i in range(0, 40, 15):  # uneven batches, tensors and lists
            m.update(torch.from_numpy(x[i : i + 15]), list(y[i : i + 15]))
        got = m.compute().item()
        assert got == pytest.approx(refs[name], abs=1e-12)
        assert got == {"srcc": srcc, "plcc": plcc, "krcc": krcc}[name](x, y)
    lg = PLCC(logistic=True)
    lg.update(torch.from_numpy(x), torch.from_numpy(y))
    assert lg.compute().item() == pytest.approx(plcc_logistic(x, y), abs=1e-12)


def test_metric_classes_reject_bad_scores() -> None:
    from common.metrics import SRCC

    m = SRCC()
    with pytest.raises(ValueError, match="NaN or inf"):
        m.update(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="length"):
        m.update(torch.tensor([1.0, 2.0]), torch.tensor([1.0]))
    m.update(torch.tensor([1.0]), torch.tensor([2.0]))
    with pytest.raises(ValueError, match="at least 2"):
        m.compute()
