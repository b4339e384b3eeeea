"""The demo stage runs end to end and reports both models (slow: it trains)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nvs_sqa.demo import run_demo


@pytest.mark.slow
def test_run_demo_writes_chart_and_table(tmp_path: Path) -> None:
    md = run_demo(tmp_path / "demo", minutes=0.05)
    assert "trained here" in md and "per-scene SRCC" in md
    assert (tmp_path / "demo" / "nvs_sqa_scores.png").stat().st_size > 0
    assert "](demo/nvs_sqa_scores.png)" in md


def test_loso_ridge_readout_ranks_held_out_scenes_despite_content_features() -> None:
    from common.metrics.correlation import srcc
    from nvs_sqa.demo import _fit_ridge_loso

    rng = np.random.default_rng(0)
    scenes, methods = [f"s{i}" for i in range(6)], [f"m{j}" for j in range(4)]
    severity = {(s, m): float(rng.uniform(0, 1)) for s in scenes for m in methods}
    content = {s: rng.normal(0, 5, 383) for s in scenes}  # large per-scene content, no quality information
    feats = {
        (s, m): np.concatenate([[severity[s, m] * 1e-3], content[s] + rng.normal(0, 0.05, 383)])
        for s in scenes
        for m in methods
    }
    y = {k: -v for k, v in severity.items()}
    ridge = _fit_ridge_loso(feats, y, scenes[:4], methods)
    assert ridge.alpha in (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
    for s in scenes[4:]:
        pred = [float(ridge.predict(feats[s, m])) for m in methods]
        assert srcc(pred, [y[s, m] for m in methods]) > 0.7
