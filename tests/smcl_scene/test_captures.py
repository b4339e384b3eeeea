"""Real captures (issue 20 section 1): any image size through training, evaluation and rendering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SMALL_RMSA = [f"model.rmsa.{k}={v}" for k, v in dict(
    hidden=8, d_model=8, kq_layers=1, v_layers=1, num_freqs_k=1, num_freqs_q=1, num_freqs_v=1, d_feat=4
).items()]  # fmt: skip


def _tiny(root: Path, out: Path, *extra: str):
    from common.config import load_config
    from smcl.scene.experiment import ExperimentConfig

    return load_config(
        ROOT / "conf/smcl/scene_tiny.yaml",
        ExperimentConfig,
        [f"data.root={root}", f"train.out_dir={out}", "train.tensorboard=false", "eval_lpips=[]",
         "model.init_num=100", "model.unet_width=4", "test_tile=4096", *SMALL_RMSA, *extra],
    )  # fmt: skip


def _train_render(cfg) -> np.ndarray:
    """Train (the periodic evaluation renders a whole test view at every step), then render one pose."""
    from common.cameras import intrinsics_matrix
    from smcl.scene.experiment import load_scene, train
    from smcl.scene.render import render_trajectory

    model = train(cfg)
    scene = load_scene(cfg.data, cfg.data.test_split)
    h, w = scene.hw
    K = intrinsics_matrix(float(scene.focal[0, 0]), float(scene.focal[0, 1]), w / 2, h / 2)
    return render_trajectory(model, scene.c2w[:1], h, w, K)


def test_odd_image_size_trains_evaluates_renders(tmp_path, one_thread):
    from common.synthetic import write_nerf_synthetic

    root = write_nerf_synthetic(tmp_path / "scene", n_train=2, n_val=1, n_test=1, size=18)
    cfg = _tiny(root, tmp_path / "run", "data.factor=1", "data.patch=[18,18]", "train.max_steps=2",
                "train.eval_every=1")  # fmt: skip
    frames = _train_render(cfg)
    assert frames.shape == (1, 18, 18, 3)
    from smcl.scene.experiment import evaluate_split, from_checkpoint

    model, _ = from_checkpoint(tmp_path / "run/checkpoints/step-00000002.pth")
    agg = evaluate_split(model, cfg, tmp_path / "test", lpips=False)
    assert np.isfinite(agg["psnr"]) and (tmp_path / "test/flythrough.gif").is_file()
    assert (tmp_path / "run/checkpoints/step-00000002.pth").is_file()


def test_llff_fern_images_8_trains_evaluates_renders(shared_data, tmp_path, one_thread):
    root = shared_data / "llff/fern"
    cfg = _tiny(root, tmp_path / "run", "data.format=llff", "data.factor=8", "data.patch=[38,50]",
                "train.max_steps=1", "train.eval_every=1", "model.init_type=cube",
                "model.coord_scale=1.0", "data.test_split=test")  # fmt: skip
    frames = _train_render(cfg)
    assert frames.shape == (1, 378, 504, 3)
    assert torch.load(tmp_path / "run/checkpoints/step-00000001.pth", weights_only=False)["step"] == 1


def test_llff_factor_image_dir_and_hold(shared_data):
    from smcl.scene.data import SceneFormatError, load_llff

    root = shared_data / "llff/fern"
    full = load_llff(root, "test", factor=8)  # images_8 as shipped
    half = load_llff(root, "test", factor=2, image_dir="images_8", hold=5)
    assert full.images.shape[1:3] == (378, 504) and half.images.shape[1:3] == (189, 252)
    assert half.names == ["image000", "image005", "image010", "image015"]
    assert half.focal[0].tolist() == pytest.approx((full.focal[0] / 2).tolist(), rel=1e-6)
    with pytest.raises(SceneFormatError, match="images: image folder not found"):
        load_llff(root, factor=4)  # neither images_4 nor images: never silently another size


def test_unknown_format_is_one_line(tmp_path):
    from common.config import ConfigError
    from smcl.scene.experiment import SceneDataConfig, load_scene

    with pytest.raises(ConfigError, match="data.format must be one of blender, nsvf, llff, got 'colmapp'"):
        load_scene(SceneDataConfig(format="colmapp", root=str(tmp_path)), "train")
