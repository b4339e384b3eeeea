"""Real captures (issue 20 section 1): any image size through training, evaluation and rendering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    # render_smcl.py: a nerfstudio camera path (20x30, the test camera twice) rendered at half size
    from smcl.scene.experiment import load_scene

    pose = load_scene(cfg.data, "test").c2w[0].ravel().tolist()
    meta = {"render_height": 20, "render_width": 30, "fps": 2,
            "camera_path": [{"camera_to_world": pose, "fov": 60.0}] * 2}  # fmt: skip
    (tmp_path / "camera_path.json").write_text(json.dumps(meta))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    args = ["--checkpoint", str(tmp_path / "run/checkpoints/step-00000002.pth"), "--no-score", "--scale", "0.5",
            "--camera-path", str(tmp_path / "camera_path.json"), "--out", str(tmp_path / "frames")]  # fmt: skip
    r = subprocess.run([sys.executable, "scripts/render_smcl.py", *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 frames 15x10" in r.stdout and len(list((tmp_path / "frames").glob("frame*.png"))) == 2
    assert (tmp_path / "run/checkpoints/step-00000002.pth").is_file()


def test_llff_fern_images_8_trains_and_evaluates(shared_data, tmp_path, one_thread):
    """Fern at 504x378: the periodic evaluation renders a whole test view (the crash of issue 20)."""
    import json

    from smcl.scene.experiment import train

    cfg = _tiny(shared_data / "llff/fern", tmp_path / "run", "data.format=llff", "data.factor=8",
                "data.patch=[38,50]", "train.max_steps=1", "train.eval_every=1", "model.init_type=cube",
                "model.init_center=[0,0,3.8]", "model.init_scale=2.45")  # fmt: skip
    train(cfg)
    rows = [json.loads(ln) for ln in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert any(np.isfinite(r.get("eval/psnr", np.nan)) for r in rows), rows
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

    with pytest.raises(
        ConfigError, match="data.format must be one of blender, nsvf, llff, colmap, nerfstudio, got 'colmapp'"
    ):
        load_scene(SceneDataConfig(format="colmapp", root=str(tmp_path)), "train")


def _blender_as_capture(tmp_path: Path):
    """A synthetic NeRF-Synthetic scene (16x16, 9 train views) and a cloud in front of its cameras."""
    from common.synthetic import write_nerf_synthetic
    from smcl.scene.data import load_blender

    root = write_nerf_synthetic(tmp_path / "bl", n_train=9, n_val=1, n_test=1, size=16)
    scene = load_blender(root, "train")
    pts = np.random.default_rng(0).uniform(-1.0, 1.0, (50, 3))  # the object, cameras at radius ~4
    return root, scene, pts


def _write_colmap(sparse: Path, scene, pts: np.ndarray, binary: bool, model: str = "PINHOLE") -> None:
    """COLMAP model of `scene` (OpenCV world-to-camera quaternions), as the COLMAP documentation lays
    out cameras / images / points3D in .txt and .bin."""
    import struct

    from scipy.spatial.transform import Rotation

    from common.cameras import opencv_to_opengl

    sparse.mkdir(parents=True)
    f = float(scene.focal[0, 0])
    params = [f, f, 8.0, 8.0] + ([0.01, 0, 0, 0] if model == "OPENCV" else [])
    mid = {"PINHOLE": 1, "OPENCV": 4}[model]
    w2c = np.linalg.inv(opencv_to_opengl(scene.c2w.double()).numpy())
    q = Rotation.from_matrix(w2c[:, :3, :3]).as_quat()[:, [3, 0, 1, 2]]  # qw qx qy qz
    names = [f"{n}.png" for n in scene.names]
    if not binary:
        (sparse / "cameras.txt").write_text(f"# c\n1 {model} 16 16 {' '.join(map(str, params))}\n")
        rows = [
            f"{i + 1} {' '.join(map(str, [*q[i], *w2c[i, :3, 3]]))} 1 {n}\n\n" for i, n in enumerate(names)
        ]
        (sparse / "images.txt").write_text("# i\n" + "".join(rows))
        (sparse / "points3D.txt").write_text(
            "".join(f"{i} {x} {y} {z} 0 0 0 0.5 1 0\n" for i, (x, y, z) in enumerate(pts))
        )
        return
    (sparse / "cameras.bin").write_bytes(struct.pack(f"<QiiQQ{len(params)}d", 1, 1, mid, 16, 16, *params))
    b = struct.pack("<Q", len(names))
    for i, n in enumerate(names):
        b += struct.pack("<i7di", i + 1, *q[i], *w2c[i, :3, 3], 1) + n.encode() + b"\0"
        b += struct.pack("<Q", 1) + struct.pack("<ddq", 1.0, 2.0, 0)
    (sparse / "images.bin").write_bytes(b)
    b = struct.pack("<Q", len(pts))
    for i, p in enumerate(pts):
        b += struct.pack("<Q3d3BdQ", i, *p, 0, 0, 0, 0.5, 1) + struct.pack("<ii", 1, 0)
    (sparse / "points3D.bin").write_bytes(b)


def test_colmap_bin_and_txt_match_the_blender_cameras(tmp_path):
    import shutil

    from smcl.scene.data import SceneFormatError, load_colmap

    root, scene, pts = _blender_as_capture(tmp_path)
    got = {}
    for binary in (True, False):
        cap = tmp_path / f"cap{int(binary)}"
        shutil.copytree(root / "train", cap / "images")
        _write_colmap(cap / "sparse/0", scene, pts, binary)
        got[binary] = load_colmap(cap, "train", hold=100)  # view 0 is the test split
    b, t = got[True], got[False]
    assert torch.equal(b.c2w, t.c2w) and torch.equal(b.points, t.points) and b.names == scene.names[1:]
    s = b.world_scale
    assert torch.allclose(b.c2w[:, :3, :3], scene.c2w[1:, :3, :3], atol=1e-5)
    assert torch.allclose(b.c2w[:, :3, 3], scene.c2w[1:, :3, 3] * s, atol=1e-5 * s)
    assert torch.allclose(b.points.double(), torch.from_numpy(pts) * s, rtol=1e-6)  # one frame
    depth = ((b.points[None] - b.c2w[:, None, :3, 3]) * -b.c2w[:, None, :3, 2]).sum(-1)
    assert float(depth[depth > 0].min()) == pytest.approx(1 / 0.75, rel=0.05)  # near at 1/0.75
    assert torch.allclose(b.focal, scene.focal[1:]) and b.principal[0].tolist() == [8.0, 8.0]
    _write_colmap(tmp_path / "dist/sparse/0", scene, pts, True, model="OPENCV")
    with pytest.raises(
        SceneFormatError, match=r"cameras\.bin: camera model OPENCV with distortion .* undistort"
    ):
        load_colmap(tmp_path / "dist")


def test_nerfstudio_intrinsics_distortion_and_cloud(tmp_path):
    import json

    from common.synthetic.files import write_point_cloud
    from smcl.scene.data import SceneFormatError, load_nerfstudio

    root, scene, pts = _blender_as_capture(tmp_path)
    frames = [
        {"file_path": f"train/{n}.png", "transform_matrix": scene.c2w[i].tolist()}
        for i, n in enumerate(scene.names)
    ]
    frames[1].update(fl_x=30.0, cx=7.0)  # per-frame intrinsics win over the top level
    write_point_cloud(root / "sparse_pc.ply", pts)
    meta = {"fl_x": 20.0, "fl_y": 21.0, "cx": 8.0, "cy": 8.5, "w": 16, "h": 16, "frames": frames,
            "ply_file_path": "sparse_pc.ply"}  # fmt: skip
    (root / "transforms.json").write_text(json.dumps(meta))
    s = load_nerfstudio(root, "train", factor=2, hold=100)
    assert s.images.shape[1:3] == (8, 8) and s.names == scene.names[1:]
    assert s.focal[:2].tolist() == [[15.0, 10.5], [10.0, 10.5]] and s.principal[0].tolist() == [3.5, 4.25]
    assert torch.equal(s.c2w, scene.c2w[1:]) and torch.allclose(
        s.points.double(), torch.from_numpy(pts), atol=1e-6
    )
    frames[2]["k1"] = 0.1
    (root / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(
        SceneFormatError, match=r"frame 2 \(train/r_2.png\) has lens distortion \{'k1': 0.1\}"
    ):
        load_nerfstudio(root)


def test_fern_recipe_starts_in_front_of_the_cameras(shared_data, caplog):
    from common.config import load_config
    from smcl.scene.experiment import ExperimentConfig, build_model, load_scene

    cfg = load_config(
        ROOT / "conf/smcl/llff/fern.yaml", ExperimentConfig, [f"data.root={shared_data}/llff/fern"]
    )
    scene = load_scene(cfg.data, "train")
    assert scene.hw == (378, 504)
    with caplog.at_level("WARNING"):
        model = build_model(cfg, scene=scene)
    assert "inside the initial points' box" not in caplog.text
    z = model.points[:, 2].detach() / cfg.model.coord_scale  # cameras look down +z, near bound 1/0.75
    assert float(z.min()) >= 1 / 0.75 - 1e-4 and float(z.max()) <= scene.world_scale * 80.0 + 1e-4
    import dataclasses

    origin = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_center=(0.0, 0.0, 0.0)))
    with caplog.at_level("WARNING"):
        build_model(origin, scene=scene)
    assert "every camera of" in caplog.text


def test_colmap_cloud_into_the_llff_frame(shared_data, tmp_path):
    """A COLMAP cloud of an LLFF scene is in COLMAP units; the loader scales the cameras by
    1 / (0.75 near) (fern: 0.0785, i.e. an unscaled cloud is 12.7x too large)."""
    from smcl.scene.data import load_llff
    from smcl.scene.data.scenes import llff_world_scale
    from smcl.scene.points import prepare_points

    root = shared_data / "llff/fern"
    s = llff_world_scale(root)
    pb = np.load(root / "poses_bounds.npy")
    assert s == pytest.approx(1 / (0.75 * pb[:, 15:].min()), rel=1e-12) and 1 / s == pytest.approx(
        12.74, abs=0.01
    )
    assert load_llff(root, "test").world_scale == s
    pts = np.random.default_rng(0).uniform(-5, 5, (40, 3))
    rows = "".join(f"{i} {x!r} {y!r} {z!r} 0 0 0 0.5 1 0\n" for i, (x, y, z) in enumerate(pts.tolist()))
    (tmp_path / "points3D.txt").write_text("# id x y z r g b error track\n" + rows)
    out = prepare_points(tmp_path / "points3D.txt", tmp_path / "fern.npy", n=40, scale=s)
    np.testing.assert_allclose(np.sort(np.load(tmp_path / "fern.npy"), 0), np.sort(pts * s, 0), rtol=1e-6)
    assert out.shape == (40, 3)


def test_nvs_sqa_inputs_checked_before_the_first_step(tmp_path, monkeypatch):
    from common.config import ConfigError
    from common.synthetic import write_nerf_synthetic
    from common.weights import WeightsError, weights_dir
    from scripts.train_smcl_scene import check_nvs_sqa_inputs

    root = write_nerf_synthetic(tmp_path / "scene", n_train=1, n_val=1, n_test=1, size=16)
    cfg = _tiny(root, tmp_path / "run", "data.factor=1", "nvs_sqa_every=10")
    monkeypatch.setenv("TRIVISION_WEIGHTS", str(tmp_path / "no_weights"))
    with pytest.raises(WeightsError, match="nvs_sqa_official_v0.0.1.pth .* is missing"):
        check_nvs_sqa_inputs(cfg)
    monkeypatch.undo()
    from nvs_sqa.weights import OFFICIAL

    if not all((weights_dir() / f.name).is_file() for f in OFFICIAL.files):
        pytest.skip("NVS-SQA weights not fetched on this machine")
    with pytest.raises(ConfigError, match="at least 69 px, the test views are 16x16"):
        check_nvs_sqa_inputs(cfg)
