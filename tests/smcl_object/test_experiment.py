"""End-to-end: encoder pretraining and synthesizer training on synthetic objects learn (common.engine)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from common.config import ConfigError, load_config
from common.engine import TrainConfig, Trainer
from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig
from smcl.object.experiment import (
    EncoderPretrainer,
    PretrainExperiment,
    PretrainLossConfig,
    RaySampler,
    SynthDataConfig,
    SynthExperiment,
    build_pretrain,
    build_synth,
)
from smcl.object.models.ffc_encoder import DualDomainEncoderConfig
from tests.smcl_object.ellipsoids import write_ellipsoid_nmr

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ellipsoid_nmr(tmp_path_factory.mktemp("nmr"), n_objects=4, image_size=64, seed=3)


def _quiet(out: Path, steps: int, lr: float, batch: int = 8) -> TrainConfig:
    return TrainConfig(max_steps=steps, batch_size=batch, lr=lr, log_every=1000, tensorboard=False,
                       progress=False, out_dir=str(out))  # fmt: skip


def _fixed_triplets(root: Path, n: int) -> dict[str, torch.Tensor]:
    ds = build_pretrain(PretrainExperiment(data=replace(PretrainExperiment().data, root=str(root))))[
        "train_data"
    ].ds
    return {k: torch.stack([ds[i * 5][k] for i in range(n)]) for k in ("anchor", "positive", "negative")}


@pytest.mark.parametrize(
    "mode", [("vector", "shared"), pytest.param(("compat", "separate_nets"), marks=pytest.mark.slow)]
)
def test_pretraining_infonce_learns_on_fixed_batch(root: Path, mode: tuple[str, str]) -> None:
    torch.manual_seed(0)
    model = EncoderPretrainer(DualDomainEncoderConfig(), PretrainLossConfig(infonce=mode[0], ffl=mode[1]))
    batch = _fixed_triplets(root, 3)
    opt = torch.optim.Adam([g for grp in model.param_groups(TrainConfig()) for g in grp["params"]], lr=1e-3)
    first = None
    for _ in range(4):
        losses = model.training_step(batch)
        assert set(losses) == {"infonce", "ffl_pos", "ffl_neg"}
        first = first if first is not None else losses["infonce"].item()
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    assert model.training_step(batch)["infonce"].item() < first
    if mode[1] == "separate_nets":  # official mode: the frequency losses never reach the encoder
        model.zero_grad()
        (model.training_step(batch)["ffl_pos"]).backward()
        assert model.encoder.bottleneck.bottleneckconv1.weight.grad is None


def test_pretrain_on_engine_writes_checkpoint_the_synthesizer_loads(root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    pcfg = PretrainExperiment(
        data=replace(PretrainExperiment().data, root=str(root)), train=_quiet(tmp_path / "p", 1, 1e-4, 2)
    )
    Trainer(pcfg.train, **build_pretrain(pcfg)).fit()
    ckpt = sorted((tmp_path / "p" / "checkpoints").glob("*.pth"))[-1]
    cfg = load_config(REPO / "conf/smcl/object_tiny.yaml", SynthExperiment,
                      [f"data.root={root}", f"encoder_weights={ckpt}", f"train.out_dir={tmp_path / 's'}"])  # fmt: skip
    parts = build_synth(cfg)
    trained = torch.load(ckpt, weights_only=True)["model"]["encoder.bottleneck.bottleneckconv1.weight"]
    torch.testing.assert_close(parts["model"].encoder.model.bottleneck.bottleneckconv1.weight, trained)
    Trainer(cfg.train, **parts).fit()  # 2 steps of the tiny config
    assert sorted((tmp_path / "s" / "checkpoints").glob("*.pth"))


def test_synthesizer_learns_on_fixed_rays(root: Path) -> None:
    torch.manual_seed(0)
    cfg = load_config(
        REPO / "conf/smcl/object_tiny.yaml", SynthExperiment, [f"data.root={root}", "freeze_encoder=true"]
    )
    model = build_synth(cfg)["model"]
    batch = RaySampler(NMRDataset(NMRDatasetConfig(root=str(root))), replace(cfg.data, rays_per_object=64))(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    first = None
    for _ in range(15):
        losses = model.training_step(batch)
        first = first if first is not None else losses["rgb_fine"].item()
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    # the fine network's error drops by ~2/3 in 15 steps (the tiny coarse net may lose its density early)
    assert model.training_step(batch)["rgb_fine"].item() < 0.6 * first


def test_ray_sampler_batch_layout_and_bbox(root: Path) -> None:
    ds = NMRDataset(NMRDatasetConfig(root=str(root)))
    assert len(ds) == 2  # objects_per_step 3 > 2 objects: the official loader's batch is the whole split
    b = RaySampler(ds, SynthDataConfig(objects_per_step=3, rays_per_object=50))(0)
    assert b["src_images"].shape == (2, 1, 3, 64, 64) and b["src_poses"].shape == (2, 1, 4, 4)
    assert b["rays"].shape == (2, 50, 8) and b["rgb"].shape == (2, 50, 3)
    torch.testing.assert_close(b["rays"][..., 3:6].norm(dim=-1), torch.ones(2, 50))
    # bbox sampling hits the object far more often than uniform sampling would (object ~1/3 of the image)
    assert (b["rgb"] < 0.99).any(-1).float().mean() > 0.6


def test_bad_loss_mode_is_rejected() -> None:
    with pytest.raises(ConfigError, match="infonce: 'nope' is not one of \\['vector', 'compat'\\]"):
        load_config(None, PretrainLossConfig, ["infonce=nope"])


def test_ray_sampler_bbox_ray_fraction(root: Path) -> None:
    """With bbox_ray_fraction 0.5 the first half of each object's rays go through pixels inside that view's
    mask bbox, the rest anywhere (object from its source image, view from the ray origin, pixel from the
    direction); after no_bbox_step all rays are uniform."""
    ds = NMRDataset(NMRDatasetConfig(root=str(root)))
    objs = [ds[i] for i in range(len(ds))]
    torch.manual_seed(0)
    cfg = SynthDataConfig(objects_per_step=4, rays_per_object=40, bbox_ray_fraction=0.5)
    inside = []
    for step in (0, cfg.no_bbox_step):
        b = RaySampler(ds, cfg)(step)
        for rays, src in zip(b["rays"], b["src_images"][:, 0]):
            obj = next(o for o in objs if any(torch.equal(src, im) for im in o["images"]))
            view = (rays[:, None, :3] - obj["poses"][None, :, :3, 3]).norm(dim=-1).argmin(-1)
            torch.testing.assert_close(rays[:, :3], obj["poses"][view, :3, 3])
            d_cam = (obj["poses"][view, :3, :3].transpose(1, 2) @ rays[:, 3:6, None]).squeeze(-1)
            col = obj["c"][0] + obj["focal"] * d_cam[:, 0] / -d_cam[:, 2]
            row = obj["c"][1] - obj["focal"] * d_cam[:, 1] / -d_cam[:, 2]
            bb, eps = obj["bbox"][view], 1e-3
            inside.append(
                (col > bb[:, 0] - eps)
                & (col < bb[:, 2] + eps)
                & (row > bb[:, 1] - eps)
                & (row < bb[:, 3] + eps)
            )
    n = len(ds)  # each batch holds the whole split (objects without replacement, fewer than 4)
    mixed, uniform = torch.stack(inside[:n]), torch.stack(inside[n:])
    assert mixed[:, :20].all()  # the bbox half
    assert not mixed[:, 20:].all() and not uniform.all()  # uniform rays also leave the bbox
