"""Official AMP scope of the scene trainer (issue 18, item 6): autocast opened by the model around the
attention and UNet only, and an inf gradient skipping only its own Adam group (the official trainer runs
one GradScaler step per optimizer). The CUDA scaler is off on the CPU, so a CPU GradScaler stands in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from common.engine import TrainConfig, Trainer, drop_nonfinite_groups


def test_drop_nonfinite_groups_skips_only_that_group() -> None:
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b]}], lr=0.1)
    a.grad, b.grad = torch.ones(3), torch.tensor([1.0, float("inf")])
    assert drop_nonfinite_groups(opt) == [1]
    opt.step()
    assert torch.allclose(a, torch.full((3,), 0.9)) and torch.equal(b, torch.ones(2))
    assert b not in opt.state  # no step counted for the skipped group


class TwoGroups(nn.Module):
    """loss = x.a + y.b; the batch puts an inf into the gradient of b only."""

    amp_skip = "group"
    amp_scope = "model"

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
        self.amp_dtype = "unset"

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        return [{"params": [self.a]}, {"params": [self.b]}]

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        assert not torch.is_autocast_enabled("cpu")  # the trainer opened no autocast region
        return {"loss": (batch["x"][0] * self.a).sum() + (batch["y"][0] * self.b).sum()}


def test_trainer_skips_only_the_group_with_inf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real("cpu", init_scale=2.0**10))
    cfg = TrainConfig(
        max_steps=1, lr=0.1, precision="fp16", out_dir=str(tmp_path), log_every=0, eval_every=0,
        ckpt_every=0, progress=False, tensorboard=False,
    )  # fmt: skip
    model = TwoGroups()
    batch = {"x": torch.ones(1, 3), "y": torch.tensor([[1.0, float("inf")]])}
    trainer = Trainer(cfg, model, lambda step: batch)
    assert model.amp_dtype is None  # fp16 without CUDA: fp32, told to the model
    monkeypatch.setattr(Trainer, "_check_finite", lambda self, acc: {k: 0.0 for k in acc})
    trainer.fit()
    assert torch.allclose(model.a.detach(), torch.full((3,), 0.9))  # Adam's first step: lr * sign
    assert torch.equal(model.b.detach(), torch.ones(2))
    assert trainer.scaler.get_scale() == 2.0**9  # the inf still backs the scale off
