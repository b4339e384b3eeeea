"""Official-recipe trajectories (issue 18): K = 3 training steps of conf/smcl/pretrain.yaml and
conf/smcl/mir180.yaml through the project's own Trainer path, compared per step with numbers recorded from
the official SMCL trainers run on CPU (data/*_official_trajectory.json holds the numbers and the recipe)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import torch

from common.callbacks import Callback
from common.config import load_config
from common.engine import Trainer
from smcl.object.data.nmr import pixelnerf_rays_at
from smcl.object.experiment import (
    EncoderPretrainer,
    PretrainExperiment,
    RaySampler,
    SynthExperiment,
    TripletSampler,
    build_synthesizer,
)
from tests.golden import seeded_fill

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


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
        if not self.rows:  # which parameters got no gradient in the first step
            self.no_grad = sorted(n for n, p in m.named_parameters() if p.grad is None)
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
    seeded_fill(model, params_only=True, unit_scales=True)
    imgs = triplet_images(size["triplets"], size["image_size"])
    ds = [{"anchor": t[0], "positive": t[1], "negative": t[2]} for t in imgs]
    sampler = TripletSampler(ds, cfg.train, cfg.eval_mode_after_first_epoch)  # as build_pretrain
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
    official_only = [n for n in ref["optimizer"]["no_grad_at_step0"] if "<official only>" in n]
    assert rec.no_grad == sorted(set(ref["optimizer"]["no_grad_at_step0"]) - set(official_only)) == []
    # three encoder calls per step in train mode (anchor, mirror, 180 degrees): 3 BatchNorm updates each
    assert (
        model.encoder.encoder1.enc1norm1.num_batches_tracked.item() == ref["stats"][-1]["num_batches_tracked"]
    )


def synth_scene(n: int, nv: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, nv, 3, S, S) in [0,1] and camera->world poses (n, nv, 4, 4) of the recorded recipe."""
    o, v, c, y, x = torch.meshgrid(*(torch.arange(k) for k in (n, nv, 3, size, size)), indexing="ij")
    imgs = ((3 * o + 5 * v + 7 * c + y + 2 * x + (x * y) % 3) % 11).float() / 10
    poses = torch.zeros(n, nv, 4, 4, dtype=torch.float64)
    for i in range(n):
        for j in range(nv):
            az, el, r = 2 * math.pi * j / nv + 0.3 * i, 0.3, 2.5
            cam = r * torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
            back = (cam / cam.norm()).double()
            right = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), back)
            right = right / right.norm()
            poses[i, j, :3, :3] = torch.stack([right, torch.linalg.cross(back, right), back], 1)
            poses[i, j, :3, 3], poses[i, j, 3, 3] = cam.double(), 1.0
    return imgs, poses.float()


def test_view_synthesizer_official_trajectory(tmp_path: Path) -> None:
    ref = json.loads((DATA / "synth_official_trajectory.json").read_text())
    sz = ref["recipe"]["sizes"]
    over = [f"data.root={tmp_path}", f"model.d_hidden={sz['d_hidden']}", f"model.n_coarse={sz['n_coarse']}",
            f"model.n_fine={sz['n_fine']}", f"model.n_fine_depth={sz['n_fine_depth']}",
            f"data.objects_per_step={sz['objects_per_step']}", f"data.rays_per_object={sz['rays_per_object']}",
            f"train.max_steps={sz['steps']}", f"train.out_dir={tmp_path / 'run'}", "train.tensorboard=false",
            "train.progress=false"]  # fmt: skip
    cfg = load_config(REPO / "conf/smcl/mir180.yaml", SynthExperiment, over)
    model = build_synthesizer(cfg)
    seeded_fill(model, params_only=True, unit_scales=True)
    imgs, poses = synth_scene(sz["objects"], sz["views"], sz["image_size"])
    focal, c, bbox = (
        torch.tensor(70.0),
        torch.tensor([32.0, 32.0]),
        torch.tensor([[16, 16, 47, 47]] * sz["views"]),
    )
    ds = [{"images": imgs[i], "poses": poses[i], "focal": focal, "c": c, "near": torch.tensor(1.2),
           "far": torch.tensor(4.0), "bbox": bbox} for i in range(sz["objects"])]  # fmt: skip
    sampler = RaySampler(ds, cfg.data, cfg.train.seed, cfg.first_step_eval)  # as build_synth
    seen = []

    def data(step: int) -> dict:
        """The sampler's objects and step-0 flag; source views and pixels as the official code drew them."""
        b, want = sampler(step), ref["steps"][step]
        objs = b["obj_index"].tolist()
        seen.append((objs, not b["bn_eval"]))
        pix = torch.tensor(want["pix"])  # (SB, rays, [view, row, col])
        src = torch.tensor(want["image_ord"])
        rays = [
            pixelnerf_rays_at(poses[o][p[:, 0]], focal, c, p[:, 1], p[:, 2], 1.2, 4.0)
            for o, p in zip(objs, pix)
        ]
        return {**b, "src_images": imgs[objs, src][:, None], "src_poses": poses[objs, src][:, None],
                "rays": torch.stack(rays), "rgb": torch.stack([imgs[o][p[:, 0], :, p[:, 1], p[:, 2]]
                                                               for o, p in zip(objs, pix)])}  # fmt: skip

    encode = model.encode

    def pinned_encode(*args, **kwargs):  # the renderer's draws start from the recorded seed, as official
        cond = encode(*args, **kwargs)
        torch.manual_seed(200 + len(rec.rows))
        return cond

    model.encode = pinned_encode  # type: ignore[method-assign]
    names = list(ref["steps"][0]["stats"])
    rec = Recorder(names, {"grad_norm": "", "grad_norm_encoder": "encoder."})
    Trainer(cfg.train, model, data, callbacks=[rec]).fit()
    # objects without replacement (the second batch is the epoch's last, one object); step 0 in eval mode
    assert seen == [(o, s["training_mode"]) for o, s in zip(ref["order"], ref["steps"])]
    assert [s["training_mode"] for s in ref["steps"]] == [False, True, True]
    for k, (row, want) in enumerate(zip(rec.rows, ref["steps"])):
        for ours, theirs in (("rgb_coarse", "rc"), ("rgb_fine", "rf")):
            assert _close(row["losses"][ours], want["losses"][theirs], 1e-4), (k, ours, row["losses"][ours])
        # grad norms are dominated by the encoder's BatchNorm-cancelled gradients: 4e-4 apart at step 2
        for key in ("grad_norm", "grad_norm_encoder"):
            assert _close(row[key], want[key], 2e-3), (k, key, row[key], want[key])
        for n in names:
            for got, w in zip(row[n], want["stats"][n]):
                assert _close(got, w, 1e-3, 1e-7), (k, n, got, w)
    assert rec.no_grad == ref["optimizer"]["no_grad_at_step0"] == []
    # BatchNorm updated its running statistics in steps 1 and 2 only
    assert (
        model.encoder.model.encoder1.enc1norm1.num_batches_tracked.item()
        == ref["steps"][-1]["num_batches_tracked"]
    )
