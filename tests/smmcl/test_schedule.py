"""SMMCL warmup-poly LR values of spec 10.6 #5 (schedule implemented in common.schedules)."""

from __future__ import annotations

import pytest

schedules = pytest.importorskip("common.schedules")


def test_smmcl_lr_golden_values():
    lr = lambda i: schedules.smmcl_poly_lr(i, 6e-5, 890, 89000)  # noqa: E731
    assert lr(0) == 0.0
    assert lr(445) == pytest.approx(3e-5, rel=1e-9)
    assert lr(889) == pytest.approx(6e-5 * 889 / 890, rel=1e-9)
    assert lr(889) == pytest.approx(5.993e-5, rel=1e-4)
    assert lr(890) == pytest.approx(6e-5 * (1 - 890 / 89000) ** 0.9, rel=1e-9)
    assert lr(890) == pytest.approx(5.946e-5, rel=1e-3)


def test_legacy_first_step_runs_at_base_lr():
    cfg = schedules.ScheduleConfig(name="warmup_poly", warmup_steps=890, legacy_first_step=True)
    assert schedules.lr_at(cfg, 0, 6e-5, 89000) == 6e-5
    assert schedules.lr_at(cfg, 1, 6e-5, 89000) == 0.0
    assert schedules.lr_at(cfg, 446, 6e-5, 89000) == pytest.approx(3e-5)
