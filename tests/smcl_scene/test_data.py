"""Scene loaders against the genuine samples and hand-derived ray conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

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
    n = load_nsvf(shared_data / "nsvf/lego", "test", factor=2)
    assert n.images.shape[1:3] == (640, 1088)
    f = 1111.1110311937682
    assert float(n.focal[0, 0]) == pytest.approx(f * 1088 / 800, rel=1e-6)
    assert float(n.focal[0, 1]) == pytest.approx(f * 640 / 800, rel=1e-6)


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
