"""common.schedules: SMMCL WarmUpPolyLR golden values (spec smmcl.md 3.1 / 10.6) and cosine forms."""

from __future__ import annotations

import math

import pytest
import torch

from common.config import ConfigError, load_config
from common.schedules import ScheduleConfig, build_scheduler, lr_at


def _run(cfg: ScheduleConfig, base: float, total: int, n: int) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = build_scheduler(opt, cfg, total)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_smmcl_warmup_poly_golden() -> None:
    cfg = ScheduleConfig(name="warmup_poly", warmup_steps=890, power=0.9)
    lrs = _run(cfg, 6e-5, 89000, 893)
    # optimizer step j uses lr(j-1); step 0 runs at the full base LR (official off-by-one)
    assert lrs[0] == 6e-5
    assert lrs[1] == 0.0  # lr(0)
    assert lrs[446] == pytest.approx(3e-5, rel=1e-12)  # lr(445)
    assert lrs[890] == pytest.approx(5.993e-5, abs=5e-9)  # lr(889)
    assert lrs[890] == pytest.approx(6e-5 * 889 / 890, rel=1e-12)
    assert lrs[891] == pytest.approx(6e-5 * (1 - 890 / 89000) ** 0.9, rel=1e-12)  # lr(890)
    assert lrs[891] == pytest.approx(5.946e-5, abs=5e-9)
    assert lrs[891] < lrs[890]  # the small downward jump at the end of warmup


def test_warmup_poly_without_quirk() -> None:
    cfg = ScheduleConfig(name="warmup_poly", warmup_steps=10, legacy_first_step=False)
    assert lr_at(cfg, 0, 1.0, 100) == 0.0 and lr_at(cfg, 5, 1.0, 100) == 0.5
    assert lr_at(cfg, 50, 1.0, 100) == pytest.approx(0.5**0.9)


def test_cosine_matches_pytorch_sequential() -> None:
    """Closed form == PyTorch SequentialLR(LinearLR, CosineAnnealingLR) (SMCL/PAPR definition)."""
    base, warm, total = 3e-4, 5, 25
    for name, period in (("cosine", total - warm), ("cosine_half", 2 * (total - warm))):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.Adam([p], lr=base)
        ref = torch.optim.lr_scheduler.SequentialLR(
            opt,
            [
                torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-6, total_iters=warm),
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=period),
            ],
            milestones=[warm],
        )
        expected = []
        for _ in range(total):
            expected.append(opt.param_groups[0]["lr"])
            opt.step()
            ref.step()
        got = _run(ScheduleConfig(name=name, warmup_steps=warm, warmup_ratio=1e-6), base, total, total)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)
    half = ScheduleConfig(name="cosine_half")
    assert lr_at(half, 100, 1.0, 100) == pytest.approx(0.5)
    assert lr_at(ScheduleConfig(name="cosine", min_lr=0.1), 100, 1.0, 100) == pytest.approx(0.1)
    assert lr_at(ScheduleConfig(name="cosine"), 50, 2.0, 100) == pytest.approx(1.0 + math.cos(math.pi / 2))


def test_per_group_base_and_state_roundtrip() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    cfg = ScheduleConfig(name="cosine")
    s = build_scheduler(opt, cfg, 10)
    for _ in range(3):
        opt.step()
        s.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [lr_at(cfg, 3, 1.0, 10), lr_at(cfg, 3, 0.1, 10)]
    )
    state = s.state_dict()
    opt2 = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    s2 = build_scheduler(opt2, cfg, 10)
    s2.load_state_dict(state)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    with pytest.raises(ConfigError, match="name: 'poly' is not one of"):
        load_config(None, ScheduleConfig, ["name=poly"])
