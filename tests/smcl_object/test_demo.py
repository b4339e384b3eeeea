"""The demo stage runs end to end and reports metrics for ours and both baselines (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smcl.object.demo import run_demo


@pytest.mark.slow
def test_run_demo_short(tmp_path: Path) -> None:
    md = run_demo(tmp_path, minutes=0.5)
    assert "| source view copied |" in md and "| mean training image |" in md
    assert (tmp_path / "smcl_orbit.gif").is_file()
