"""The scene's point count and training PSNR reach the trainer's logs (TensorBoard, metrics.jsonl)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from common.engine import TrainConfig
from smcl.scene.experiment import PointScheduleCallback


def test_points_and_psnr_logged_at_log_steps() -> None:
    logged: list[tuple[int, dict[str, float]]] = []
    trainer = SimpleNamespace(
        cfg=TrainConfig(max_steps=5, log_every=2), model=SimpleNamespace(points=torch.zeros(7, 3))
    )
    trainer.log = lambda scalars: logged.append((step, scalars))
    cb = PointScheduleCallback()
    for step in range(1, 6):
        cb.after_step(trainer, step, {"mse": 0.01, "lpips": 0.3})
    assert [s for s, _ in logged] == [2, 4, 5]  # every log_every steps and the last one
    assert logged[0][1]["train/points"] == 7.0
    assert logged[0][1]["train/psnr"] == pytest.approx(20.0)  # -10 log10(0.01); lpips not part of it
    cb.after_step(trainer, 2, {"mse": 1e-3})
    assert logged[-1][1]["train/psnr"] == pytest.approx(-10 * math.log10(1e-3))
