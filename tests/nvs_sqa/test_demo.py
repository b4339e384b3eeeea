"""The demo stage runs end to end and reports both models (slow: it trains)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvs_sqa.demo import run_demo


@pytest.mark.slow
def test_run_demo_writes_chart_and_table(tmp_path: Path) -> None:
    md = run_demo(tmp_path / "demo", minutes=0.05)
    assert "trained here" in md and "per-scene SRCC" in md
    assert (tmp_path / "demo" / "nvs_sqa_scores.png").stat().st_size > 0
    assert "](demo/nvs_sqa_scores.png)" in md
