"""End-to-end: encoder pretraining and synthesizer training on synthetic objects learn (common.engine)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from common.config import load_config
from common.engine import TrainConfig, Trainer
from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig
from smcl.object.data.synthetic_objects import write_ellipsoid_nmr
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

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ellipsoid_nmr(tmp_path_factory.mktemp("nmr"), n_objects=4, image_size=64, seed=3)


def _quiet(out: Path, steps: int, lr: float, batch: int = 8) -> TrainConfig:
    return TrainConfig(max_steps=steps, batch_size=batch, lr=lr, log_every=1000, tensorboard=False,
                       progress=False, out_dir=str(out))  # fmt: skip


@pytest.mark.parametrize("mode", [("vector", "shared"), ("compat", "separate_nets")])
def test_pretraining_losses_run_and_infonce_learns(root: Path, tmp_path: Path, mode: tuple[str, str]) -> None:
    torch.manual_seed(0)
    cfg = PretrainExperiment(
        loss=PretrainLossConfig(infonce=mode[0], ffl=mode[1]),
        data=replace(PretrainExperiment().data, root=str(root)),
        train=_quiet(tmp_path, 12, 5e-4),
    )
    parts = build_pretrain(cfg)
    model: EncoderPretrainer = parts["model"]
    batch = {k: torch.stack([parts["train_data"][i][k] for i in range(8)]) for k in ("anchor", "positive", "negative")}
    model.eval()
    with torch.no_grad():
        before = model.training_step(batch)
    assert set(before) == {"infonce", "ffl_pos", "ffl_neg"}
    Trainer(cfg.train, **parts).fit()
    model.eval()
    with torch.no_grad():
        after = model.training_step(batch)
    assert after["infonce"] < before["infonce"]
    assert (tmp_path / "checkpoints").is_dir()


def test_synthesizer_learns_and_encoder_checkpoint_loads(root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    # pretrain 1 step -> checkpoint our synthesizer can load
    pcfg = PretrainExperiment(data=replace(PretrainExperiment().data, root=str(root)), train=_quiet(tmp_path / "p", 1, 1e-4, 4))
    Trainer(pcfg.train, **build_pretrain(pcfg)).fit()
    ckpt = sorted((tmp_path / "p" / "checkpoints").glob("*.pth"))[-1]
    cfg = load_config(REPO / "conf/smcl/object_tiny.yaml", SynthExperiment,
                      [f"data.root={root}", f"encoder_weights={ckpt}", f"train.out_dir={tmp_path / 's'}",
                       "train.max_steps=40", "data.rays_per_object=64"])  # fmt: skip
    parts = build_synth(cfg)
    model = parts["model"]
    probe = RaySampler(NMRDataset(NMRDatasetConfig(root=str(root))), replace(SynthDataConfig(), objects_per_step=2, rays_per_object=256))
    torch.manual_seed(1)
    batch = probe(0)
    model.eval()
    with torch.no_grad():
        before = sum(model.training_step(batch).values())
    Trainer(cfg.train, **parts).fit()
    with torch.no_grad():
        after = sum(model.eval().training_step(batch).values())
    assert after < 0.7 * before


def test_ray_sampler_batch_layout_and_bbox(root: Path) -> None:
    ds = NMRDataset(NMRDatasetConfig(root=str(root)))
    b = RaySampler(ds, SynthDataConfig(objects_per_step=3, rays_per_object=50))(0)
    assert b["src_images"].shape == (3, 1, 3, 64, 64) and b["src_poses"].shape == (3, 1, 4, 4)
    assert b["rays"].shape == (3, 50, 8) and b["rgb"].shape == (3, 50, 3)
    torch.testing.assert_close(b["rays"][..., 3:6].norm(dim=-1), torch.ones(3, 50))
    # bbox sampling hits the object far more often than uniform sampling would (object ~1/3 of the image)
    assert (b["rgb"] < 0.99).any(-1).float().mean() > 0.6


def test_bad_loss_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="loss.infonce"):
        EncoderPretrainer(DualDomainEncoderConfig(), PretrainLossConfig(infonce="nope"))
