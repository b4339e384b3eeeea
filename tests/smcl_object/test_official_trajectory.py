"""Official-recipe trajectories (issue 18): K = 3 training steps of conf/smcl/pretrain.yaml and
conf/smcl/mir180.yaml through the project's own Trainer path, compared per step with numbers recorded from
the official SMCL trainers run on CPU (data/*_official_trajectory.json holds the numbers and the recipe)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from common.config import load_config
from common.engine import Callback, Trainer
from smcl.object.experiment import EncoderPretrainer, PretrainExperiment, TripletSampler

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def seeded_fill(model: nn.Module, seed: int = 0) -> None:
    """The forward golden tests' deterministic state: every float tensor in sorted-key order."""
    gen = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    with torch.no_grad():
        for key in sorted(sd):
            t = sd[key]
            if not t.is_floating_point():
                continue
            if key.endswith("running_var"):
                t.fill_(1.0)
            elif key.endswith("running_mean"):
                t.fill_(0.0)
            elif key.endswith("weight") and t.dim() == 1:  # normalisation scales around 1
                t.copy_(1.0 + 0.02 * torch.randn(t.shape, generator=gen))
            else:
                t.copy_(0.02 * torch.randn(t.shape, generator=gen))


def triplet_images(n: int, size: int) -> torch.Tensor:
    """(n, 3 views, 3, S, S): ((7i + 13v + 5c + 3y + 11x + (x*y mod 5)) mod 17) / 16."""
    i, v, c, y, x = torch.meshgrid(*(torch.arange(k) for k in (n, 3, 3, size, size)), indexing="ij")
    return ((i * 7 + v * 13 + c * 5 + y * 3 + x * 11 + (x * y) % 5) % 17).float() / 16


class Recorder(Callback):
    """After each optimizer step: tensor sums/abs-sums (float64), grad norms, the losses."""

    def __init__(self, names: list[str], groups: dict[str, str]) -> None:
        self.names, self.groups, self.rows = names, groups, []

    def after_step(self, trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        m = trainer.model
        sd = m.state_dict()
        row = {"losses": dict(losses)}
        for n in self.names:
            t = sd[n].double()
            row[n] = [t.sum().item(), t.abs().sum().item()]
        for key, prefix in self.groups.items():
            gs = [
                p.grad.double()
                for n, p in m.named_parameters()
                if n.startswith(prefix) and p.grad is not None
            ]
            row[key] = torch.sqrt(sum((g**2).sum() for g in gs)).item()
        self.rows.append(row)


def _close(got: float, want: float, rel: float, floor: float = 0.0) -> bool:
    return abs(got - want) <= rel * abs(want) + floor


def test_pretrain_official_trajectory(tmp_path: Path) -> None:
    ref = json.loads((DATA / "pretrain_official_trajectory.json").read_text())
    size = ref["recipe"]["sizes"]
    cfg = load_config(REPO / "conf/smcl/pretrain.yaml", PretrainExperiment, [f"data.root={tmp_path}"])
    cfg = replace(cfg, train=replace(cfg.train, batch_size=size["batch_size"], max_steps=size["steps"],
                                     out_dir=str(tmp_path / "run"), tensorboard=False, progress=False))  # fmt: skip
    model = EncoderPretrainer(cfg.encoder, cfg.loss)  # as build_pretrain
    seeded_fill(model)
    imgs = triplet_images(size["triplets"], size["image_size"])
    ds = [{"anchor": t[0], "positive": t[1], "negative": t[2]} for t in imgs]
    sampler = TripletSampler(ds, cfg.train.batch_size, cfg.train.seed, cfg.eval_mode_after_first_epoch)
    names = [k for k in ref["stats"][0] if "." in k]
    rec = Recorder(names, {"grad_norm_encoder": "encoder.", "grad_norm_ffc_nets": "ffc_net"})
    order, train_mode = [], []

    def data(step: int) -> dict:
        batch = sampler(step)
        order.append(
            [next(j for j, d in enumerate(ds) if torch.equal(d["anchor"], a)) for a in batch["anchor"]]
        )
        train_mode.append(not batch["bn_eval"])
        return batch

    Trainer(cfg.train, model, data, callbacks=[rec]).fit()
    assert order == ref["order"]  # triplets without replacement, the epoch's last batch smaller
    # step 2 is in epoch 1: the official validation after epoch 0 left every net in eval mode
    assert train_mode == [s["training_mode"] for s in ref["stats"]] == [True, True, False]
    for k, (row, want_loss, want) in enumerate(zip(rec.rows, ref["losses"], ref["stats"])):
        for term, v in want_loss.items():
            assert _close(row["losses"][term], v, 1e-4), (k, term, row["losses"][term], v)
        for n in names:
            for got, w in zip(row[n], want[n]):
                assert _close(got, w, 1e-3, 1e-6), (k, n, got, w)
        for key in ("grad_norm_encoder", "grad_norm_ffc_nets"):
            assert _close(row[key], want[key], 1e-3), (k, key, row[key], want[key])
    # three encoder calls per step in train mode (anchor, mirror, 180 degrees): 3 BatchNorm updates each
    assert (
        model.encoder.encoder1.enc1norm1.num_batches_tracked.item() == ref["stats"][-1]["num_batches_tracked"]
    )
