"""Camera conventions and rays against hand-computed values (smcl.md §2.4 pixelNeRF and PAPR rules)."""

from __future__ import annotations

import math

import pytest
import torch

from common.cameras import (
    change_world_axes,
    focal_from_fov,
    intrinsics_matrix,
    opencv_to_opengl,
    opengl_to_opencv,
)
from common.rays import get_rays


def _pose() -> torch.Tensor:
    # camera at (1, 2, 3), rotated 90 deg about world z
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    c2w[:3, 3] = torch.tensor([1.0, 2, 3])
    return c2w


def test_intrinsics_and_fov() -> None:
    K = intrinsics_matrix(100, 110, 32, 24)
    assert K.tolist() == [[100, 0, 32], [0, 110, 24], [0, 0, 1]]
    assert focal_from_fov(64, math.pi / 2) == pytest.approx(32.0)
    with pytest.raises(ValueError):
        focal_from_fov(64, 4.0)


def test_pixelnerf_integer_pixels_identity_pose() -> None:
    H, W, f = 4, 6, 2.0
    K = intrinsics_matrix(f, f, W / 2, H / 2, dtype=torch.float64)
    o, d = get_rays(H, W, K, torch.eye(4, dtype=torch.float64), pixel_center=False)
    assert o.shape == d.shape == (H, W, 3) and torch.all(o == 0)
    # pixel (i=0, j=0): ((0 - 3)/2, -(0 - 2)/2, -1)
    assert d[0, 0].tolist() == [-1.5, 1.0, -1.0]
    # pixel (i=5, j=3)
    assert d[3, 5].tolist() == [1.0, -0.5, -1.0]


def test_pixel_centres_principal_point_and_pose() -> None:
    H, W = 3, 5
    K = intrinsics_matrix(2.0, 4.0, 1.0, 0.5, dtype=torch.float64)  # off-centre principal point
    c2w = _pose()
    o, d = get_rays(H, W, K, c2w, pixel_center=True)
    # camera-frame dir for (i=2, j=1): ((2.5-1)/2, -(1.5-0.5)/4, -1) = (0.75, -0.25, -1)
    # rotate by Rz(90): (x, y, z) -> (-y, x, z)
    assert d[1, 2].tolist() == pytest.approx([0.25, 0.75, -1.0])
    assert o[1, 2].tolist() == [1.0, 2.0, 3.0]
    # batched poses broadcast
    o2, d2 = get_rays(H, W, K, torch.stack([torch.eye(4, dtype=torch.float64), c2w]), pixel_center=True)
    assert d2.shape == (2, H, W, 3) and torch.allclose(d2[1], d)


def test_opencv_convention_matches_converted_pose() -> None:
    H, W = 4, 4
    K = intrinsics_matrix(3.0, 3.0, 2.0, 2.0, dtype=torch.float64)
    gl = _pose()
    cv = opengl_to_opencv(gl)
    assert torch.equal(opencv_to_opengl(cv), gl)
    assert cv[:3, 1].tolist() == (-gl[:3, 1]).tolist()
    _, d_gl = get_rays(H, W, K, gl, pixel_center=True, convention="opengl")
    _, d_cv = get_rays(H, W, K, cv, pixel_center=True, convention="opencv")
    assert torch.allclose(d_gl, d_cv)  # same physical rays
    # OpenCV camera frame: +z forward, y down
    _, d0 = get_rays(H, W, K, torch.eye(4, dtype=torch.float64), pixel_center=False, convention="opencv")
    assert d0[0, 0].tolist() == pytest.approx([-2 / 3, -2 / 3, 1.0])


def test_change_world_axes_z_up_to_y_up() -> None:
    R = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=torch.float64)  # (x, y, z) -> (x, z, -y)
    c2w = _pose()
    new = change_world_axes(c2w, R)
    assert new[:3, 3].tolist() == [1.0, 3.0, -2.0]
    K = intrinsics_matrix(2.0, 2.0, 1.0, 1.0, dtype=torch.float64)
    _, d = get_rays(2, 2, K, c2w, pixel_center=True)
    _, d_new = get_rays(2, 2, K, new, pixel_center=True)
    assert torch.allclose(d_new, d @ R.T)
    with pytest.raises(ValueError, match="R must be 3x3"):
        change_world_axes(c2w, torch.eye(4))
    with pytest.raises(ValueError, match="c2w"):
        get_rays(2, 2, K, torch.eye(3), pixel_center=True)


def test_look_at_conventions() -> None:
    from common.cameras import look_at

    c2w = look_at((0.0, -4.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    # OpenGL: looks along -z; up is +y in the image
    assert torch.allclose(-c2w[:3, 2], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(c2w[:3, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(c2w[:3, :3] @ c2w[:3, :3].T, torch.eye(3), atol=1e-6)
    cv = look_at((0.0, -4.0, 0.0), up=(0.0, 0.0, 1.0), convention="opencv")
    assert torch.allclose(opengl_to_opencv(c2w), cv)
    # the centre pixel's ray of a look_at camera hits the target
    K = intrinsics_matrix(10.0, 10.0, 2.0, 2.0)
    o, d = get_rays(4, 4, K, look_at((3.0, 1.0, 2.0), (0.5, 0.0, 0.0)), pixel_center=False, normalize=True)
    t = torch.dot(torch.tensor([0.5, 0.0, 0.0]) - o[2, 2], d[2, 2])
    assert torch.allclose(o[2, 2] + t * d[2, 2], torch.tensor([0.5, 0.0, 0.0]), atol=1e-6)
    with pytest.raises(ValueError, match="parallel"):
        look_at((0.0, 0.0, 3.0), up=(0.0, 0.0, 1.0))


def test_rays_at_pixels_equals_full_grid_and_normalize() -> None:
    from common.rays import rays_at_pixels

    K = intrinsics_matrix(7.0, 6.0, 3.2, 2.1, dtype=torch.float64)
    poses = torch.stack([_pose().double(), opencv_to_opengl(_pose().double())])
    for conv in ("opengl", "opencv"):
        for pc in (False, True):
            o, d = get_rays(5, 6, K, poses, pixel_center=pc, convention=conv)
            rows, cols = torch.tensor([4, 1]), torch.tensor([2, 5])
            o2, d2 = rays_at_pixels(K, poses, rows, cols, pixel_center=pc, convention=conv)
            ref_d = torch.stack([d[0, 4, 2], d[1, 1, 5]])
            assert torch.allclose(d2, ref_d, rtol=0, atol=1e-12) and torch.equal(o2, poses[:, :3, 3])
            _, dn = rays_at_pixels(K, poses, rows, cols, pixel_center=pc, convention=conv, normalize=True)
            assert torch.allclose(dn, ref_d / ref_d.norm(dim=-1, keepdim=True), atol=1e-12)
    _, dg = get_rays(5, 6, K, poses, pixel_center=True, normalize=True)
    assert torch.allclose(dg.norm(dim=-1), torch.ones(2, 5, 6, dtype=torch.float64))
