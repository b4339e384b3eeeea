"""The demo stage: data -> Mir-180 -> pretraining -> synthesizer training -> metrics, and it learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smcl.object.demo import DemoConfig, format_report, run_demo, run_demo_stage

TINY = DemoConfig(n_objects=4, split=(0.75, 0.0), d_hidden=64, n_coarse=12, n_fine=6, n_fine_depth=2,
                  objects_per_step=3, rays_per_object=96, pretrain_steps=2, synth_steps=300, lr=1e-3, freeze_encoder=True,
                  lr_warmup=0.05, bbox_fraction=0.6, eval_views=(3, 9, 15, 21), lpips=False)  # fmt: skip


def test_demo_stage_learns_from_synthetic_objects(tmp_path: Path) -> None:
    """A short fixed-step run (the time cap far away) measurably learns: the loss falls and held-out PSNR
    rises well above the same model before training and above copying the source view."""
    res = run_demo_stage(tmp_path, minutes=30, cfg=TINY)
    assert res["counts"] == {"train": 3, "val": 0, "test": 1} and res["n_syn"] == 300
    assert res["n_pre"] == 2 and not res["syn_capped"]
    hist = res["syn_hist"]  # half the rays in the mask bbox for the first 180 steps, uniform after
    assert np.mean(hist[130:180]) < 0.9 * np.mean(hist[:30]), (hist[:30], hist[130:180])
    rows = res["rows"]
    ours = rows["SMCL (ours, demo size)"]["PSNR"]
    assert ours > rows["same model before training"]["PSNR"] + 4.0, rows
    assert ours > rows["source view copied"]["PSNR"], rows
    md = format_report(res)
    assert "| mean training image |" in md and "300 of 300 steps" in md
    assert (tmp_path / "smcl_orbit.gif").is_file()


def test_training_loop_schedule_and_caps() -> None:
    """_train: the step budget ends the loop, warmup then cosine lr, and the time cap ends it first when
    the steps are slow (the schedule then follows elapsed time)."""
    import time

    import torch

    from smcl.object.demo import _train, lr_scale

    assert lr_scale(0.1, 0.1, 0.2) == pytest.approx(0.505) and lr_scale(0.2, 0.1, 0.2) == 1.0
    assert lr_scale(0.6, 0.1, 0.2) == pytest.approx(0.55) and lr_scale(1.0, 0.1, 0.2) == pytest.approx(0.1)
    w = torch.nn.Parameter(torch.zeros(()))
    progs = []

    def step(prog: float) -> dict:
        progs.append(prog)
        return {"l": (w - 1) ** 2}

    n, hist, capped = _train(step, [w], seconds=1e6, steps=10, lr=1.0, lr_final=0.1, warmup=0.2)
    assert n == 10 and len(hist) == 10 and not capped
    assert progs == pytest.approx([i / 10 for i in range(10)], abs=1e-6)

    def slow(prog: float) -> dict:
        time.sleep(0.05)
        return {"l": (w - 1) ** 2}

    n, _, capped = _train(slow, [w], seconds=0.3, steps=1000, lr=1e-2)
    assert capped and 2 <= n <= 8


@pytest.mark.slow
def test_run_demo_short(tmp_path: Path) -> None:
    md = run_demo(tmp_path, minutes=0.5)
    assert "| source view copied |" in md and "| mean training image |" in md
    assert (tmp_path / "smcl_orbit.gif").is_file()
