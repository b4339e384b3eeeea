"""Scene loaders against the genuine samples and hand-derived ray conventions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from common.image_io import write_image
from smcl.scene.data import (
    SceneFormatError,
    get_rays_papr,
    load_blender,
    load_llff,
    load_nsvf,
    parse_nsvf_intrinsics,
)


def test_blender_lego(shared_data):
    s = load_blender(shared_data / "nerf_synthetic/lego", "train", factor=8)
    assert s.images.shape == (8, 100, 100, 3)
    assert s.names[0] == "r_0"
    # focal = 0.5 W / tan(0.5 camera_angle_x), W = 100 after factor 8
    assert float(s.focal[0, 0]) == pytest.approx(50 / math.tan(0.5 * 0.6911112070083618), rel=1e-6)
    assert float(s.images.min()) >= 0 and float(s.images.max()) <= 1
    assert float(s.images[0, 0, 0].min()) == pytest.approx(1.0)  # transparent corner composited on white


def test_nsvf_matches_blender_after_opencv_to_opengl(shared_data):
    n = load_nsvf(shared_data / "nsvf/lego", "train", factor=1)
    b = load_blender(shared_data / "nerf_synthetic/lego", "train", factor=1)
    assert n.images.shape == (8, 800, 800, 3)
    assert n.names[0] == "0_0000"
    assert torch.allclose(n.c2w[0], b.c2w[0], atol=1e-6)  # same camera r_0 == 0_0000
    assert float(n.focal[0, 0]) == pytest.approx(1111.1110311937682, rel=1e-6)
    t = load_nsvf(shared_data / "nsvf/lego", "test", factor=1)
    assert t.names == ["1_0000", "1_0050"]


def test_nsvf_tt_resize_scales_focal(shared_data):
    n = load_nsvf(shared_data / "nsvf/lego", "test", factor=2, target_size=(2176, 1280))
    assert n.images.shape[1:3] == (640, 1088)
    f = 1111.1110311937682
    assert float(n.focal[0, 0]) == pytest.approx(f * 1088 / 800, rel=1e-6)
    assert float(n.focal[0, 1]) == pytest.approx(f * 640 / 800, rel=1e-6)
    # without a target size, factor divides the native 800x800 as in every format (isotropic focal)
    n = load_nsvf(shared_data / "nsvf/lego", "test", factor=2)
    assert n.images.shape[1:3] == (400, 400)
    assert n.focal[0].tolist() == pytest.approx([f / 2, f / 2], rel=1e-6)


def test_intrinsics_forms(tmp_path):
    p = tmp_path / "intrinsics.txt"
    p.write_text("100 0 50 0\n0 120 40 0\n0 0 1 0\n0 0 0 1\n")
    assert parse_nsvf_intrinsics(p)[:4] == (100, 120, 50, 40)
    p.write_text("200 10 20 0\n")
    assert parse_nsvf_intrinsics(p) == (200, 200, 10, 20, None)
    p.write_text("")
    with pytest.raises(SceneFormatError, match="intrinsics.txt"):
        parse_nsvf_intrinsics(p)


def test_llff_fern(shared_data):
    tr = load_llff(shared_data / "llff/fern", "train")
    te = load_llff(shared_data / "llff/fern", "test")
    assert len(tr.names) + len(te.names) == 20 and te.names[0] == "image000"
    assert tr.images.shape[1:] == (378, 504, 3)
    pb = np.load(shared_data / "llff/fern/poses_bounds.npy")
    assert float(tr.focal[0, 0]) == pytest.approx(pb[0, 14] * 504 / pb[0, 9], rel=1e-5)
    r = tr.c2w[:, :3, :3]
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand_as(r), atol=1e-4)


def test_missing_files_named(tmp_path):
    with pytest.raises(SceneFormatError, match="transforms_train.json"):
        load_blender(tmp_path)
    with pytest.raises(SceneFormatError, match="rgb"):
        load_nsvf(tmp_path)


def test_rays_pixel_centre_and_scale():
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    o, d = get_rays_papr(4, 6, torch.tensor([2.0, 2.0]), c2w, coord_scale=10.0)
    assert torch.allclose(o[0, 0], torch.tensor([10.0, 20.0, 30.0]))
    expect = torch.tensor([(0 + 0.5 - 3) / 2, -(0 + 0.5 - 2) / 2, -1.0])
    assert torch.allclose(d[0, 0], expect / expect.norm())
    assert torch.allclose(d.norm(dim=-1), torch.ones(4, 6))


# ------------------------------------------------------------------ bad input: errors at load time
@pytest.fixture(scope="module")
def blender_scene(tmp_path_factory):
    from common.synthetic import write_nerf_synthetic

    return write_nerf_synthetic(tmp_path_factory.mktemp("bl") / "s", n_train=3, n_val=1, n_test=1, size=16)


@pytest.fixture(scope="module")
def nsvf_scene(tmp_path_factory):
    from common.synthetic import write_nsvf

    return write_nsvf(tmp_path_factory.mktemp("ns") / "s", n_train=3, n_test=1, width=24, height=16)


def _copy(src, tmp_path):
    import shutil

    return Path(shutil.copytree(src, tmp_path / "scene"))


def _edit_transforms(root, edit):
    import json

    p = root / "transforms_train.json"
    meta = json.loads(p.read_text())
    edit(meta)
    p.write_text(json.dumps(meta))


def test_blender_bad_input_named_at_load_time(blender_scene, tmp_path):
    from common.errors import DataError

    assert load_blender(blender_scene).images.shape == (3, 16, 16, 3)  # the valid scene loads
    cases = {
        "invalid JSON": (
            lambda r: (r / "transforms_train.json").write_text("{frames: ["),
            r"transforms_train\.json: invalid JSON at line 1",
        ),
        "missing frame": (
            lambda r: (r / "train/r_1.png").unlink(),
            r"r_1\.png: image of frame 1 in transforms_train\.json not found",
        ),
        "NaN pose": (
            lambda r: _edit_transforms(
                r, lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, float("nan"))
            ),
            r"transforms_train\.json: frame 0 .*NaN",
        ),
        "3x4 pose": (
            lambda r: _edit_transforms(
                r, lambda m: m["frames"][2].update(transform_matrix=m["frames"][2]["transform_matrix"][:3])
            ),
            r"frame 2 .*shape 3x4, expected a 4x4",
        ),
        "bad fov": (
            lambda r: _edit_transforms(r, lambda m: m.update(camera_angle_x="wide")),
            r"camera_angle_x must be a number",
        ),
        "mixed sizes": (
            lambda r: write_image(r / "train/r_2.png", np.zeros((20, 16, 3), np.uint8)),
            r"r_2\.png: image is 16x20, but r_0\.png is 16x16",
        ),
    }
    for name, (corrupt, message) in cases.items():
        root = _copy(blender_scene, tmp_path / name.replace(" ", "_"))
        corrupt(root)
        with pytest.raises(DataError, match=message):
            load_blender(root)


def test_nsvf_bad_input_named_at_load_time(nsvf_scene, tmp_path):
    from common.errors import DataError

    assert load_nsvf(nsvf_scene, "train", factor=1).images.shape == (3, 16, 24, 3)
    pose = "pose/0_0001.txt"
    cases = {
        "3x4 pose": (
            lambda r: (r / pose).write_text("1 0 0 0\n0 1 0 0\n0 0 1 4\n"),
            r"0_0001\.txt: pose has shape 3x4",
        ),
        "NaN pose": (
            lambda r: (r / pose).write_text("1 0 0 nan\n0 1 0 0\n0 0 1 4\n0 0 0 1\n"),
            r"0_0001\.txt: pose contains NaN",
        ),
        "missing pose": (lambda r: (r / pose).unlink(), r"0_0001\.txt: pose missing for image 0_0001\.png"),
        "extra pose": (
            lambda r: (r / "pose/0_0099.txt").write_text((r / pose).read_text()),
            r"0_0099\.txt: pose without an image",
        ),
        "bad intrinsics": (
            lambda r: (r / "intrinsics.txt").write_text("f cx cy\n"),
            r"intrinsics\.txt: non-numeric",
        ),
    }
    for name, (corrupt, message) in cases.items():
        root = _copy(nsvf_scene, tmp_path / name.replace(" ", "_"))
        corrupt(root)
        with pytest.raises(DataError, match=message):
            load_nsvf(root, "train", factor=1)


def test_llff_non_finite_poses_named(shared_data, tmp_path):
    import shutil

    root = Path(shutil.copytree(shared_data / "llff/fern", tmp_path / "fern"))
    pb = np.load(root / "poses_bounds.npy")
    pb[3, 7] = np.nan
    np.save(root / "poses_bounds.npy", pb)
    with pytest.raises(
        SceneFormatError, match=r"poses_bounds\.npy: NaN or infinite values in the rows of views \[3\]"
    ):
        load_llff(root)
