"""Point-GCL pretraining step for step against the official Point_GCL trainer (issue 18): 3 Adam steps of
conf/smcl/point_gcl.yaml on a 120-point integer-formula cloud from the seeded fill, the augmentation draws
pinned; loss, grad norm, parameters and BatchNorm running statistics compared with the numbers recorded
from the official code (recipe in data/official_point_gcl_trajectory.json). BatchNorm running statistics
are compared after step 0 (three encoder passes per step): after the first update the bias in front of
each BatchNorm, a direction the loss is invariant to, gets rounding-level gradients that Adam scales to
lr-sized steps of arbitrary sign, so later running means depend on summation order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common.callbacks import Callback
from common.config import load_config
from common.engine import Trainer
from smcl.scene.models.point_gcl import PointGCL, make_blocks
from smcl.scene.pretrain import PointPretrainConfig
from tests.golden import seeded_fill

ROOT = Path(__file__).resolve().parents[2]
DATA = json.loads((Path(__file__).parent / "data" / "official_point_gcl_trajectory.json").read_text())


def cloud(n: int = 120) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    return torch.stack([(i * 37 % 101) / 50 - 1, (i * 53 % 89) / 44 - 1, (i * 71 % 97) / 48 - 1], -1).float()


def pin_augmentations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's draws of step t (augmentor t; node / feature / edge masks from integer formulas) fed
    through the draws PointGCL.augment makes (torch.randint, torch.rand, torch.rand_like)."""
    real = PointGCL.augment
    step = [0]

    def augment(self, x, adj):
        t, (b, s, f) = step[0], x.shape
        n = torch.arange(b * s).view(b, s)
        bb, v, u = torch.meshgrid(torch.arange(b), torch.arange(s), torch.arange(s), indexing="ij")
        src, dst = bb * s + u, bb * s + v  # adj[b, v, u]: u sends to v
        draws = {
            "randint": torch.tensor([t]),
            (b, s): ((7 * n + 3 * t) % 10 != 0).float(),  # 0 < aug_p: dropped
            (f,): (torch.arange(f) != t % 3).float(),
        }
        with monkeypatch.context() as m:
            m.setattr(torch, "randint", lambda *a, **k: draws["randint"])
            m.setattr(
                torch, "rand", lambda *size, **k: draws[size if isinstance(size[0], int) else tuple(size[0])]
            )
            m.setattr(torch, "rand_like", lambda a, **k: ((7 * src + 3 * dst + t) % 10 != 0).float())
            out = real(self, x, adj)
        step[0] += 1
        return out

    monkeypatch.setattr(PointGCL, "augment", augment)


class Record(Callback):
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def after_step(self, trainer, step: int, losses: dict[str, float]) -> None:
        sd = trainer.model.state_dict()
        grads = [p.grad.double().pow(2).sum() for p in trainer.model.parameters() if p.grad is not None]
        names = DATA["steps"][0]["params"]
        self.rows.append(
            {
                "infonce": losses["infonce"],
                "grad_norm": float(torch.stack(grads).sum().sqrt()),
                "params": {
                    k: [float(sd[k].double().sum()), float(sd[k].double().abs().sum())] for k in names
                },
            }
        )


def test_point_gcl_recipe_trains_like_the_official(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    over = ["train.max_steps=3", f"train.out_dir={tmp_path}", "train.log_every=0", "train.ckpt_every=0"]
    cfg = load_config(ROOT / "conf/smcl/point_gcl.yaml", PointPretrainConfig, over)
    model = PointGCL(cfg.gcl)
    assert seeded_fill(model) == DATA["keys_filled"]
    pts = cloud()
    blocks = make_blocks(pts, cfg.gcl)
    assert blocks.shape == (6, 20) and torch.equal(blocks[1], torch.arange(20, 40))
    pin_augmentations(monkeypatch)
    rec = Record()
    batches = lambda i: {"xyz": pts[blocks[2 * i : 2 * i + 2]]}  # noqa: E731 (official loader, no shuffle)
    Trainer(cfg.train, model, batches, callbacks=[rec]).fit()
    for got, want in zip(rec.rows, DATA["steps"], strict=True):
        t = want["step"]
        assert got["infonce"] == pytest.approx(want["infonce"], rel=1e-4), t
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4), t
        for name, (total, mag) in want["params"].items():
            if "running" in name and t > 0:
                continue  # see below
            assert abs(got["params"][name][1] - mag) <= 1e-4 * mag, (t, name)
            assert abs(got["params"][name][0] - total) <= 1e-4 * mag, (t, name)
