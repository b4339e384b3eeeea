"""The demo stage: data -> Mir-180 -> pretraining -> synthesizer training -> metrics, and it learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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


class _Quadratic(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.lrs: list[float] = []

    def training_step(self, batch: dict) -> dict:
        return {"l": (self.w - batch["target"]) ** 2}


def test_training_runs_on_the_engine_with_the_progress_schedule_and_caps(tmp_path: Path) -> None:
    """_train runs common.engine.Trainer: the step budget ends it, the lr follows common.schedules' warmup +
    cosine closed form at the progress, and the time cap (train.max_seconds) ends it first when the steps
    are slow (the schedule then follows elapsed time)."""
    import time

    from smcl.object.demo import ProgressSchedule, _train

    sched = ProgressSchedule(10, 1e6, lr=1.0, final=0.1, warmup=0.2)
    # warmup from 1e-3 / 0.2 of the lr, linear to the lr at 0.2, then a cosine to 0.1 of it
    assert sched.lr_at(0.1) == pytest.approx(0.005 + 0.995 * 0.5) and sched.lr_at(0.2) == 1.0
    assert sched.lr_at(0.6) == pytest.approx(0.55) and sched.lr_at(1.0) == pytest.approx(0.1)
    model = _Quadratic()
    progs = []

    def data(step: int, prog: float) -> dict:
        progs.append(prog)
        return {"target": torch.tensor(1.0)}

    n, hist, capped = _train(
        model, data, tmp_path / "a", seconds=1e6, steps=10, lr=1.0, lr_final=0.1, warmup=0.2
    )
    assert n == 10 and len(hist) == 10 and not capped
    assert progs == pytest.approx([i / 10 for i in range(10)], abs=1e-6)
    assert hist[0] == pytest.approx(1.0) and hist[-1] < hist[0]
    assert (tmp_path / "a" / "checkpoints").is_dir()  # an engine run: checkpointed, resumable

    def slow(step: int, prog: float) -> dict:
        time.sleep(0.05)
        return {"target": torch.tensor(1.0)}

    n, _, capped = _train(_Quadratic(), slow, tmp_path / "b", seconds=0.3, steps=1000, lr=1e-2)
    assert capped and 2 <= n <= 8


@pytest.mark.slow
def test_run_demo_short(tmp_path: Path) -> None:
    md = run_demo(tmp_path, minutes=0.5)
    assert "| source view copied |" in md and "| mean training image |" in md
    assert (tmp_path / "smcl_orbit.gif").is_file()
