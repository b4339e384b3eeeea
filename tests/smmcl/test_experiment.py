"""Evaluation tiling, deterministic NMF seeding and a short fit that measurably learns."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from smmcl.experiment import EvalConfig, predict
from smmcl.models import SegNeXtRGBXConfig, build_segnext_rgbx


class PixelwiseStub(nn.Module):
    """Logits computed per pixel from the input, so any correct tiling equals whole-image inference."""

    def __init__(self) -> None:
        super().__init__()
        self.decode_head = SimpleNamespace(hamburger=SimpleNamespace(ham=SimpleNamespace(generator=None)))
        self.calls = 0

    def forward(self, rgb: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.cat([rgb[:, :2] * 3, aux[:, :1]], dim=1)


@pytest.mark.parametrize("shape", [(50, 70), (72, 96), (48, 64)])
def test_sliding_window_covers_every_pixel(shape):
    torch.manual_seed(0)
    rgb, aux = torch.randn(1, 3, *shape), torch.randn(1, 3, *shape)
    stub = PixelwiseStub()
    whole = predict(stub, rgb, aux, EvalConfig(mode="whole"))
    slide = predict(stub, rgb, aux, EvalConfig(mode="slide", crop=(32, 48)))
    torch.testing.assert_close(slide, whole)
    assert stub.calls > 2  # really tiled (crop smaller than the image)
    flipped = predict(stub, rgb, aux, EvalConfig(mode="slide", crop=(32, 48), flip=True, scales=(1.0,)))
    torch.testing.assert_close(flipped, 2 * whole)


def test_seeded_eval_is_deterministic_and_unseeded_is_not():
    torch.manual_seed(0)
    model = build_segnext_rgbx(SegNeXtRGBXConfig(arch="mscan_t", num_classes=4, decoder_channels=64)).eval()
    x = torch.randn(1, 3, 64, 64)
    a = predict(model, x, x, EvalConfig(seed=3))
    b = predict(model, x, x, EvalConfig(seed=3))
    c = predict(model, x, x, EvalConfig(seed=None))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_short_fit_learns():
    torch.manual_seed(0)
    model = build_segnext_rgbx(
        SegNeXtRGBXConfig(arch="mscan_t", num_classes=3, decoder_channels=64, ham_rank=8)
    )
    model.backbone.fconv1.requires_grad_(False)
    label = torch.zeros(1, 160, 160, dtype=torch.long)  # 5x5 grid at 1/32: 9, 6 and 10 cells per class
    label[:, :, 80:] = 1
    label[:, 96:, :] = 2
    rgb = torch.randn(1, 3, 160, 160) * 0.1 + label[:, None].float()
    batch = {"rgb": rgb, "aux": rgb.flip(1), "label": label}
    opt = torch.optim.AdamW(model.param_groups(), lr=2e-3, weight_decay=0.01)
    first = None
    for _ in range(6):
        losses = model.training_step(batch)
        if first is None:
            first = {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    last = {k: v.item() for k, v in model.training_step(batch).items()}
    assert last["ce"] < 0.5 * first["ce"]
    assert last["vis"] < first["vis"] and last["cm"] < first["cm"]


@pytest.mark.parametrize("name", ["llrgbd", "mfnet", "nyu"])
def test_configs_state_the_global_batch_and_split_it_over_processes(name, monkeypatch):
    """`-d 0-3` reproduces the official recipe: global batch 16 = 4 per GPU, 4 contrast groups = 1 per GPU."""
    from pathlib import Path

    from common.config import ConfigError, load_config
    from smmcl.experiment import ExperimentConfig, contrast_groups_per_process

    monkeypatch.setenv("DATA_ROOT", "/data")
    monkeypatch.setenv("WEIGHTS_DIR", "/weights")
    cfg = load_config(Path(__file__).parents[2] / f"conf/smmcl/{name}.yaml", ExperimentConfig)
    assert cfg.train.global_batch_size == 16 and not cfg.train.sync_bn
    assert cfg.train.per_process_batch(1) == 16 and cfg.train.per_process_batch(4) == 4
    with pytest.raises(ValueError, match="global_batch_size=16 does not divide"):
        cfg.train.per_process_batch(3)
    assert cfg.loss.contrast_groups == 4
    assert contrast_groups_per_process(4, 1) == 4 and contrast_groups_per_process(4, 4) == 1
    assert contrast_groups_per_process(4, 2) == 2
    with pytest.raises(ConfigError, match="contrast_groups=4 does not divide into 3"):
        contrast_groups_per_process(4, 3)
    assert (cfg.weights, cfg.weights_path) == ("mscan_b_in1k", "/weights/mscan_b.pth")
    assert cfg.eval.day_night == (name == "mfnet")


def test_sync_bn_conversion_keeps_keys_and_optimizer_groups():
    """train.sync_bn (the engine converts BatchNorm): official keys and the official decay groups stay."""
    torch.manual_seed(0)
    model = build_segnext_rgbx(SegNeXtRGBXConfig(arch="mscan_t", num_classes=4, decoder_channels=64))
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    groups = [len(g["params"]) for g in model.param_groups()]
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
    assert {k: tuple(v.shape) for k, v in synced.state_dict().items()} == keys
    assert [len(g["params"]) for g in synced.param_groups()] == groups


def _mfnet_like(tmp_path):
    """Synthetic scenes renamed to MFNet's day/night stems (0000xD / 0000xN)."""
    from common.synthetic import write_rgbx_scenes

    root = write_rgbx_scenes(tmp_path / "mf", n_train=1, n_test=3, size=(32, 48), seed=0)
    names = (root / "test.txt").read_text().split()
    new = []
    for i, n in enumerate(names):
        stem = f"{n}{'DND'[i]}"
        for sub in ("RGB", "Depth", "Label"):
            (root / sub / f"{n}.png").rename(root / sub / f"{stem}.png")
        new.append(stem)
    (root / "test.txt").write_text("\n".join(new) + "\n")
    return root


def test_day_night_splits_reported_beside_the_overall(tmp_path):
    from smmcl.data import RGBXDataset, RGBXDatasetConfig
    from smmcl.experiment import SPLIT_NOTE, run_evaluation

    root = _mfnet_like(tmp_path)
    data = RGBXDataset(RGBXDatasetConfig(root=str(root), num_classes=6, label_offset=-1), "test", train=False)
    torch.manual_seed(0)
    model = build_segnext_rgbx(
        SegNeXtRGBXConfig(arch="mscan_t", num_classes=6, decoder_channels=64, ham_rank=8)
    )
    ecfg = EvalConfig(exclude=(), day_night=True, save_overlays=0, crop=(32, 48))
    report = tmp_path / "eval.json"
    result = run_evaluation(model, data, ecfg, 6, report_path=report)
    agg = result.aggregate
    assert {"seg.miou", "seg_day.miou", "seg_night.miou"} <= set(agg)
    assert result.extra["splits"]["day"]["images"] == 2 and result.extra["splits"]["night"]["images"] == 1
    assert result.extra["splits_note"] == SPLIT_NOTE and "not the mean" in SPLIT_NOTE
    overall = torch.tensor(result.extra["seg"]["confusion"])
    parts = torch.tensor(result.extra["seg_day"]["confusion"]) + torch.tensor(
        result.extra["seg_night"]["confusion"]
    )
    assert torch.equal(overall, parts) and overall.sum() > 0
    assert [r["split"] for r in result.items] == ["day", "night", "day"]
    assert (
        report.is_file() and (tmp_path / "eval.csv").is_file() and (tmp_path / "eval_confusion.png").is_file()
    )


def test_number_of_classes_is_written_once() -> None:
    """class_names, data.num_classes or model.num_classes: the sections left at their default follow."""
    from common.config import ConfigError, load_config
    from smmcl.experiment import ExperimentConfig

    names = "class_names=[a, b, c, d, e, f, g, h, i]"
    cfg = load_config(None, ExperimentConfig, [names])
    assert cfg.model.num_classes == cfg.data.num_classes == 9
    cfg = load_config(None, ExperimentConfig, ["data.num_classes=40"])
    assert cfg.model.num_classes == 40 and cfg.class_names == ()
    assert load_config(None, ExperimentConfig).model.num_classes == 14  # LLRGBD, the defaults
    with pytest.raises(ConfigError, match=r"number of classes: len\(class_names\) 9 != model.num_classes 6"):
        load_config(None, ExperimentConfig, [names, "model.num_classes=6"])
