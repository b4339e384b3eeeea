"""conf/smmcl/llrgbd.yaml against the official SMMCL_LLRGBD code: optimizer groups, LR at chosen steps,
gradient clipping, frozen parameters, and the data loading + augmentation with pinned random draws
(numbers and recipe in tests/smmcl/data/official_training.json); llrgbd_improved.yaml differs only where
docs/reproduction.md says."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from common.config import config_diff
from common.engine import build_optimizer
from common.image_io import write_image
from common.schedules import build_scheduler
from smmcl.data.rgbx import AugmentDraws, RGBXDataset, augment, draw_augmentation, to_tensors
from smmcl.experiment import build_model_from
from tests.smmcl.test_official_trajectory import OFFICIAL, paper_config


def test_optimizer_groups_lr_clipping_and_frozen_parameters_match_official(monkeypatch):
    cfg = paper_config(monkeypatch)
    model = build_model_from(cfg, pretrained=False)
    optimizer = build_optimizer(model, cfg.train)  # what Trainer builds
    official = OFFICIAL["optimizer"]
    names = {id(p): n for n, p in model.named_parameters()}
    assert len(optimizer.param_groups) == len(official["groups"])
    for group, ref in zip(optimizer.param_groups, official["groups"]):
        got = sorted(names[id(p)] for p in group["params"])
        # the official groups also hold fconv1 (it never gets a gradient, so AdamW skips it): compare the
        # parameters that are updated
        assert len(got) == ref["count_with_grad"]
        assert hashlib.sha256("\n".join(got).encode()).hexdigest() == ref["sha256_with_grad"]
        assert (group["lr"], group["weight_decay"], list(group["betas"]), group["eps"]) == (
            ref["lr"],
            ref["weight_decay"],
            ref["betas"],
            ref["eps"],
        )
    in_groups = {names[id(p)] for g in optimizer.param_groups for p in g["params"]}
    outside = sorted(n for n in names.values() if n not in in_groups)
    no_grad = OFFICIAL["trajectory"]["steps"][0]["params_without_grad"]
    assert len(official["left_out"]) == 84 and all("layer_scale" in n for n in official["left_out"])
    assert outside == sorted(official["left_out"] + no_grad)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n in outside)
    assert cfg.train.grad_clip is official["grad_clip"] is None
    assert cfg.train.max_steps == OFFICIAL["optimizer"]["total_iteration"] == 89000

    scheduler = build_scheduler(optimizer, cfg.train.schedule, cfg.train.max_steps)
    lrs = {int(k): v for k, v in official["lr_at_index"].items()}
    # official: step 0 runs at the initial lr, step k >= 1 at get_lr(k - 1); warm-up start and end,
    # mid-run and the last step (88999)
    for step in (0, 1, 2, 446, 890, 891, 892, 44501, 88999):
        scheduler.last_epoch = step
        want = 6e-5 if step == 0 else lrs[step - 1]
        assert scheduler.get_lr()[0] == pytest.approx(want, rel=1e-12, abs=1e-18), step


def test_llrgbd_improved_differs_only_in_the_documented_keys(monkeypatch):
    official, improved = paper_config(monkeypatch), paper_config(monkeypatch, "llrgbd_improved")
    assert {k for k, _, _ in config_diff(official, improved)} == {
        "data.legacy_bgr",
        "data.legacy_8bit",
        "data.legacy_augment",
        "train_layer_scale",
        "train.out_dir",
    }
    assert official.data.legacy_bgr and official.data.legacy_8bit and official.data.legacy_augment
    assert not official.train_layer_scale and official.loss.contrast_groups == 4


def write_official_case_files(root) -> None:
    """The generated image pair of the recorded data cases (formulas in the JSON's data.recipe)."""
    y, x = np.mgrid[:40, :52]
    rgb = np.stack([(y * 7 + x * 3) % 256, (y * 2 + x * 11 + 60) % 256, (y * 13 + x * 5 + 120) % 256], 2)
    write_image(root / "rgb" / "a.png", rgb.astype(np.uint8))
    write_image(root / "depth" / "a.png", ((y * 1031 + x * 977 + 12345) % 65536).astype(np.uint16))
    label = np.where((y * 3 + x) % 29 == 0, 255, (y // 8 + x // 9) % 14)
    write_image(root / "label" / "a.png", label.astype(np.uint8))
    (root / "train.txt").write_text("a\n")


def test_loading_and_augmentation_match_the_official_loader(monkeypatch, tmp_path):
    """BGR read, 16-bit depth to its high byte, flip, scale, 8-bit resize, crop (incl. the last offset
    H - h + 1), pad, normalisation: the official RGBXDataset + TrainPre outputs for pinned draws."""
    from dataclasses import replace

    data = OFFICIAL["data"]
    cfg = replace(paper_config(monkeypatch).data, root=str(tmp_path), crop=tuple(data["crop"]))
    write_official_case_files(tmp_path)
    ds = RGBXDataset(replace(cfg, epoch_padding_batch=0))
    ch, cw = cfg.crop
    for case in data["cases"]:
        draws = AugmentDraws(case["flip"], case["scale"], case["y0"], case["x0"])
        item = to_tensors(*augment(*ds.read("a"), cfg, draws))
        rgb, aux, label = (item[k].numpy() for k in ("rgb", "aux", "label"))
        assert list(rgb.shape) == case["shape"] and aux.shape == rgb.shape and label.shape == (ch, cw)
        for got, key in ((rgb, "rgb"), (aux, "aux")):
            scale = case[f"{key}_abs_sum"]
            sums = got.astype(np.float64).sum((1, 2))
            np.testing.assert_allclose(sums, case[f"{key}_channel_sums"], rtol=0, atol=1e-5 * scale)
            assert np.abs(got.astype(np.float64)).sum() == pytest.approx(scale, rel=1e-6)
            picks = [got[:, i, j] for i, j in ((0, 0), (ch - 1, cw - 1), (13, 29))]
            np.testing.assert_allclose(picks, case[f"{key}_pixels"], rtol=0, atol=1e-5)
        values, counts = np.unique(label, return_counts=True)
        assert {str(v): int(c) for v, c in zip(values, counts)} == case["label_counts"]
        weights = 1 + np.arange(ch)[:, None] * cw + np.arange(cw)
        assert int((label.astype(np.int64) * weights).sum()) == case["label_weighted_sum"]


@pytest.mark.parametrize("legacy", [True, False])
def test_crop_offsets_reach_the_official_last_offset_only_in_legacy_mode(monkeypatch, legacy):
    from dataclasses import replace

    cfg = replace(paper_config(monkeypatch).data, crop=(32, 48), scales=(1.0,), legacy_augment=legacy)
    torch.manual_seed(0)
    draws = [draw_augmentation((40, 52), cfg) for _ in range(400)]
    assert {d.y0 for d in draws} == set(range(40 - 32 + 1 + legacy))  # official randint(0, H - h + 1)
    assert {d.x0 for d in draws} == set(range(52 - 48 + 1 + legacy))
    assert {d.flip for d in draws} == {True, False}


def test_one_process_with_official_contrast_groups_warns_about_batchnorm(caplog):
    """Official -d 0-3: DataParallel, 4 images per GPU for the loss AND for BatchNorm; one process with
    contrast_groups 4 reproduces only the loss grouping, and says so."""
    from smmcl.experiment import contrast_groups_per_process

    with caplog.at_level("WARNING", logger="smmcl.experiment"):
        assert contrast_groups_per_process(4, 1) == 4
    assert "BatchNorm normalises the whole batch" in caplog.text and "-d with 4 GPUs" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="smmcl.experiment"):
        assert contrast_groups_per_process(4, 4) == 1 and contrast_groups_per_process(1, 1) == 1
    assert not caplog.text


def test_llrgbd_settings_equal_the_official_config(monkeypatch):
    """Every training/evaluation constant of the official config.py that the recipe depends on."""
    from smmcl.data.rgbx import IMAGENET_MEAN, IMAGENET_STD

    ref, cfg = OFFICIAL["config"], paper_config(monkeypatch)
    t, loss, d = cfg.train, cfg.loss, cfg.data
    assert (t.seed, t.lr, t.weight_decay, t.optimizer) == (
        ref["seed"],
        ref["lr"],
        ref["weight_decay"],
        "adamw",
    )
    assert t.global_batch_size == ref["batch_size"] and t.steps_per_epoch == ref["niters_per_epoch"]
    assert t.max_steps == ref["nepochs"] * ref["niters_per_epoch"]
    assert d.epoch_padding_batch * t.steps_per_epoch == ref["batch_size"] * ref["niters_per_epoch"]
    assert t.schedule.warmup_steps == ref["warm_up_epoch"] * ref["niters_per_epoch"]
    assert (t.schedule.name, t.schedule.power, t.schedule.legacy_first_step) == (
        "warmup_poly",
        ref["lr_power"],
        True,
    )
    assert t.precision == "fp32" and t.grad_accum == 1
    assert d.scales == tuple(ref["train_scale_array"]) and d.flip
    assert (
        d.crop == (ref["image_height"], ref["image_width"]) == cfg.eval.crop == tuple(ref["eval_crop_size"])
    )
    assert (IMAGENET_MEAN, IMAGENET_STD) == (tuple(ref["norm_mean"]), tuple(ref["norm_std"]))
    assert d.ignore_index == loss.ignore_index == ref["background"] and d.label_offset == 0
    assert cfg.model.num_classes == d.num_classes == ref["num_classes"]
    assert cfg.model.decoder_channels == ref["decoder_embed_dim"]
    for key in ("min_views_per_class", "max_views_per_class", "max_features_total", "cm_temperature"):
        assert getattr(loss, key) == ref[key], key
    assert (loss.temperature, loss.weight_cm, loss.weight_vis, loss.weight_aux) == (
        ref["temperature"],
        ref["weight_cm"],
        ref["weight_vis"],
        ref["weight_aux"],
    )
    assert cfg.eval.scales == tuple(ref["eval_scale_array"]) and cfg.eval.flip == ref["eval_flip"]
    assert cfg.eval.mode == "whole" and cfg.eval.exclude == (0,)
