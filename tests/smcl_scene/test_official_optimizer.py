"""The optimizer of each paper-named scene config, built as `train` builds it, against the official one
(data/official_optimizer.json, recorded from the official model's init_optimizers and
create_learning_rate_fn): parameter groups, lr, weight decay, betas, eps, the lr at chosen steps, no
clipping, the frozen background colour. The official's five Adam optimizers are our five groups."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from common.config import load_config
from smcl.scene.experiment import ExperimentConfig, build_optim
from smcl.scene.models.scene_model import SceneModel, init_points

CONF = Path(__file__).resolve().parents[2] / "conf/smcl"
DATA = json.loads((Path(__file__).parent / "data" / "official_optimizer.json").read_text())["scenes"]
OFFICIAL = {
    "points": "points",
    "attn": "attn",
    "influ": "points_influ_scores",
    "feats": "pc_feats",
    "unet": "renderer",
}
TANKS = {"Barn", "Caterpillar", "Family", "Ignatius", "Truck"}


@pytest.mark.parametrize("scene", sorted(DATA))
def test_optimizer_matches_the_official(scene, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/data")
    want = DATA[scene]
    cfg = load_config(
        CONF / ("tanks_temples" if scene in TANKS else "nerf_synthetic") / f"{scene}.yaml", ExperimentConfig
    )
    model = SceneModel(cfg.model, init_points(dataclasses.replace(cfg.model, init_type="cube", init_num=100)))
    opt, sched = build_optim(model, cfg)  # what experiment.build hands to the Trainer
    names = {id(p): n for n, p in model.named_parameters()}
    assert cfg.train.max_steps == want["steps"] and cfg.train.grad_clip is None  # the official never clips
    assert (cfg.train.precision == "fp16") is want["use_amp"]
    assert [g["name"] for g in opt.param_groups] == list(OFFICIAL)
    for i, g in enumerate(opt.param_groups):
        off = want["optimizers"][OFFICIAL[g["name"]]]
        got = sorted(names[id(p)] for p in g["params"])
        assert (
            len(got) == off["count"]
            and hashlib.sha256("\n".join(got).encode()).hexdigest() == off["names_sha256"]
        )
        if "names" in off:
            assert got == off["names"]
        assert g["initial_lr"] == pytest.approx(off["base_lr"], rel=1e-12)
        assert (g["weight_decay"], list(g["betas"]), g["eps"], g["amsgrad"]) == (
            off["weight_decay"], off["betas"], off["eps"], off["amsgrad"]
        )  # fmt: skip
        for step, lr in off["lr_at"].items():  # warm-up start/end, mid-run, last step
            assert g["initial_lr"] * sched.lr_lambdas[i](int(step)) == pytest.approx(
                lr, rel=1e-6, abs=1e-18
            ), step
    # the background colour is frozen (official: requires_grad False, in no optimizer; here a buffer)
    assert want["frozen"] == want["in_no_optimizer"] == ["bkg_feats"]
    assert "bkg_feats" in dict(model.named_buffers()) and len(names) == sum(
        len(g["params"]) for g in opt.param_groups
    )
