"""The paper-named SMCL object configs train as the official code (issue 18, items 7-10): optimizer layout
vs the official one recorded in data/*_official_trajectory.json, the frozen encoder, objects without
replacement, per-view encoder calls, the eval-mode steps."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from common.config import load_config
from common.engine import TrainConfig, build_optimizer
from common.schedules import lr_at
from smcl.object.experiment import (
    EncoderPretrainer,
    PretrainExperiment,
    PretrainLossConfig,
    RaySampler,
    SynthDataConfig,
    SynthExperiment,
    TripletSampler,
    build_synthesizer,
    epoch_batch,
)
from smcl.object.models.ffc_encoder import DualDomainEncoderConfig
from smcl.object.models.view_synthesizer import ViewSynthesizer, ViewSynthesizerConfig

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def _official_layout(name: str) -> dict[str, tuple]:
    groups = json.loads((DATA / f"{name}_official_trajectory.json").read_text())["optimizer"]["groups"]
    return {
        n: (g["lr"], g["weight_decay"], tuple(g["betas"]), g["eps"], g["amsgrad"])
        for g in groups
        for n in g["names"]
        if "<official only>" not in n  # the official FFC nets' unused Linear(4,4): never a gradient
    }


@pytest.mark.parametrize("name", ["pretrain", "mir180"])
def test_optimizer_of_the_paper_config_matches_the_official(name: str, tmp_path: Path) -> None:
    """Every parameter's lr, weight decay, betas, eps as the official Adam(s); constant lr; no clipping."""
    if name == "pretrain":
        cfg = load_config(REPO / "conf/smcl/pretrain.yaml", PretrainExperiment, [f"data.root={tmp_path}"])
        model: torch.nn.Module = EncoderPretrainer(cfg.encoder, cfg.loss)
        official = _official_layout("pretrain")
    else:
        cfg = load_config(REPO / "conf/smcl/mir180.yaml", SynthExperiment, [f"data.root={tmp_path}"])
        model = build_synthesizer(cfg)
        official = _official_layout("synth")
    opt = build_optimizer(model, cfg.train)  # as the Trainer builds it
    names = {id(p): n for n, p in model.named_parameters()}
    ours = {
        names[id(p)]: (g["lr"], g["weight_decay"], tuple(g["betas"]), g["eps"], g["amsgrad"])
        for g in opt.param_groups
        for p in g["params"]
    }
    assert ours == official
    total = cfg.train.max_steps
    for step in (0, 1, total // 2, total - 1):  # the official has no scheduler
        assert lr_at(cfg.train.schedule, step, 1.0, total) == 1.0
    assert cfg.train.grad_clip is None and cfg.train.grad_accum == 1 and cfg.train.precision == "fp32"


def test_freeze_encoder_freezes_cnn_ffc_and_the_latent_linear(tmp_path: Path) -> None:
    """Official --freeze_enc detaches the latent after the 2048->128 Linear: no encoder weight trains, but
    BatchNorm (in train mode) still updates its running statistics."""
    over = [f"data.root={tmp_path}", "freeze_encoder=true", "model.d_hidden=16", "model.n_coarse=4",
            "model.n_fine=2", "model.n_fine_depth=1"]  # fmt: skip
    cfg = load_config(REPO / "conf/smcl/mir180.yaml", SynthExperiment, over)
    model = build_synthesizer(cfg)
    assert not any(p.requires_grad for p in model.encoder.parameters())  # encoder.fc included
    opt = build_optimizer(model, cfg.train)
    assert {id(p) for g in opt.param_groups for p in g["params"]}.isdisjoint(
        map(id, model.encoder.parameters())
    )
    fc = model.encoder.fc.weight.clone()
    g = torch.Generator().manual_seed(0)
    rays = torch.cat([torch.tensor([0.0, 0.0, 2.5, 0.0, 0.0, -1.0, 1.2, 4.0]).expand(2, 8, 8)], 0)
    batch = {"src_images": torch.rand(2, 1, 3, 64, 64, generator=g), "src_poses": torch.eye(4).expand(2, 1, 4, 4),
             "rays": rays, "rgb": torch.rand(2, 8, 3, generator=g)}  # fmt: skip
    model.train()
    sum(model.training_step(batch).values()).backward()
    opt.step()
    assert all(p.grad is None for p in model.encoder.parameters())
    torch.testing.assert_close(model.encoder.fc.weight, fc, rtol=0, atol=0)
    assert model.encoder.model.encoder1.enc1norm1.num_batches_tracked.item() == 1


def test_bn_eval_step_uses_running_statistics_and_restores_train_mode() -> None:
    """Official first step: eval mode (running statistics, no update); the project's step-0 batch says so."""
    model = ViewSynthesizer(ViewSynthesizerConfig(d_hidden=16, n_coarse=4, n_fine=2, n_fine_depth=1)).train()
    g = torch.Generator().manual_seed(0)
    batch = {"src_images": torch.rand(2, 1, 3, 64, 64, generator=g), "src_poses": torch.eye(4).expand(2, 1, 4, 4),
             "rays": torch.tensor([0.0, 0.0, 2.5, 0.0, 0.0, -1.0, 1.2, 4.0]).expand(2, 4, 8),
             "rgb": torch.rand(2, 4, 3, generator=g), "bn_eval": True}  # fmt: skip
    model.training_step(batch)
    bn = model.encoder.model.encoder1.enc1norm1
    assert bn.num_batches_tracked.item() == 0 and bn.running_mean.abs().sum().item() == 0.0
    assert model.encoder.training and bn.training
    model.training_step({**batch, "bn_eval": False})
    assert bn.num_batches_tracked.item() == 1


def _objects(n: int) -> list[dict]:
    img = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    bbox = torch.tensor([[1, 1, 6, 6]] * 4)
    return [{"images": img, "poses": torch.eye(4).expand(4, 4, 4), "focal": torch.tensor(8.0),
             "c": torch.tensor([4.0, 4.0]), "near": torch.tensor(1.0), "far": torch.tensor(3.0), "bbox": bbox}
            for _ in range(n)]  # fmt: skip


def test_objects_without_replacement_per_epoch_and_a_short_last_batch() -> None:
    """A shuffling loader of 4 objects over 10: batches 4, 4, 2, each object once per epoch, a fresh order per
    epoch; a function of the step alone (a resumed run draws the same)."""
    batches = [epoch_batch(10, 4, s, seed=3).tolist() for s in range(6)]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(batches[:3], [])) == list(range(10)) == sorted(sum(batches[3:], []))
    assert sum(batches[:3], []) != sum(batches[3:], [])
    assert [epoch_batch(10, 4, s, seed=3).tolist() for s in (5, 2)] == [batches[5], batches[2]]
    sampler = RaySampler(_objects(5), SynthDataConfig(objects_per_step=4, rays_per_object=6), seed=3,
                         first_step_eval=True)  # fmt: skip
    torch.manual_seed(0)
    got = [sampler(s) for s in range(4)]
    assert [b["obj_index"].tolist() for b in got] == [epoch_batch(5, 4, s, 3).tolist() for s in range(4)]
    assert Counter(sum((b["obj_index"].tolist() for b in got[:2]), [])) == Counter(range(5))
    assert [b["rays"].shape[0] for b in got] == [4, 1, 4, 1]
    assert [b["bn_eval"] for b in got] == [True, False, False, False]  # only the official first step


def test_per_view_forward_runs_the_encoder_three_times() -> None:
    """Official pretraining: anchor, mirror and 180-degree view through the encoder one after another (three
    BatchNorm updates with their own batch statistics); the improved form: one call on all three."""
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(2, 3, 32, 32, generator=g) for k in ("anchor", "positive", "negative")}
    tracked = []
    for per_view in (True, False):
        torch.manual_seed(0)
        m = EncoderPretrainer(
            DualDomainEncoderConfig(), PretrainLossConfig(ffl="off", per_view_forward=per_view)
        )
        losses = m.training_step(batch)
        tracked.append(m.encoder.encoder1.enc1norm1.num_batches_tracked.item())
        if per_view:
            per_view_loss = losses["infonce"].item()
    assert tracked == [3, 1]
    assert losses["infonce"].item() != pytest.approx(per_view_loss, rel=1e-4)  # batch statistics differ


def test_eval_mode_after_the_first_epoch_of_pretraining() -> None:
    """Official pretraining: eval() after epoch 0 is never undone, so every later step runs in eval mode."""
    ds = [{k: torch.zeros(3, 8, 8) for k in ("anchor", "positive", "negative")} for _ in range(5)]
    train = TrainConfig(batch_size=2, seed=7)
    flags = [TripletSampler(ds, train, True)(s)["bn_eval"] for s in range(5)]
    assert flags == [False, False, False, True, True]  # 3 batches (2, 2, 1) per epoch
    assert not any(TripletSampler(ds, train, False)(s)["bn_eval"] for s in range(5))
    assert [len(TripletSampler(ds, train, True)(s)["anchor"]) for s in range(3)] == [2, 2, 1]


def test_epoch_batch_splits_the_global_batch_across_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 2 processes each rank takes its contiguous share of the one global batch (as DataParallel
    scatters the official batch of 4): together they see every object once per epoch."""
    import smcl.object.experiment as exp

    single = [epoch_batch(9, 4, s, seed=1).tolist() for s in range(3)]  # 4, 4, 1
    parts = []
    for rank in (0, 1):
        monkeypatch.setattr(exp, "get_world_size", lambda: 2)
        monkeypatch.setattr(exp, "get_rank", lambda r=rank: r)
        parts.append([exp.epoch_batch(9, 4, s, seed=1).tolist() for s in range(3)])
    assert [a + b for a, b in zip(parts[0][:2], parts[1][:2])] == single[:2]
    assert parts[0][2] == single[2] == parts[1][2]  # one object left: the empty rank repeats it
