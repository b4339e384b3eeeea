"""common.trajectories: rotations orthonormal, cameras look where they should, endpoints and radii."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.trajectories import (
    camera_path,
    focus_point,
    interpolate,
    look_at,
    orbit,
    orbit_around_pose,
    orbit_through_pose,
    spiral,
)


def assert_rigid(c2w: torch.Tensor) -> None:
    c = c2w.double()
    r = c[..., :3, :3]
    eye = torch.eye(3, dtype=torch.float64).expand_as(r)
    assert (r.transpose(-1, -2) @ r - eye).abs().max() < 1e-5
    assert torch.allclose(torch.linalg.det(r), torch.ones(r.shape[:-2], dtype=torch.float64), atol=1e-5)
    assert torch.equal(
        c[..., 3, :], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(c.shape[:-2] + (4,))
    )


def looks_at(c2w: torch.Tensor, target) -> torch.Tensor:
    """Cosine between each camera's -z axis and the direction to `target` (1 = looks right at it)."""
    c = c2w.double()
    to = torch.as_tensor(target, dtype=torch.float64) - c[..., :3, 3]
    return torch.nn.functional.cosine_similarity(-c[..., :3, 2], to, dim=-1)


def test_look_at_by_hand() -> None:
    c = look_at((0.0, -4.0, 0.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0))
    # camera on -y looking at the origin: -z = +y, up = +z, right = +x
    want = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, -4], [0, 1, 0, 0], [0, 0, 0, 1]])
    assert torch.allclose(c, want, atol=1e-6)


@pytest.mark.parametrize("up", [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0)])
def test_orbit_radius_elevation_and_look_at(up) -> None:
    centre = torch.tensor([0.5, -1.0, 2.0])
    c = orbit(centre, radius=3.0, elevation_deg=30.0, n=12, up=up)
    assert c.shape == (12, 4, 4) and c.dtype == torch.float32
    assert_rigid(c)
    off = c[:, :3, 3].double() - centre.double()
    assert torch.allclose(off.norm(dim=-1), torch.full((12,), 3.0, dtype=torch.float64), atol=1e-5)
    u = torch.tensor(up, dtype=torch.float64)
    assert torch.allclose(
        off @ u, torch.full((12,), 3.0 * math.sin(math.radians(30)), dtype=torch.float64), atol=1e-5
    )
    assert looks_at(c, centre).min() > 1 - 1e-6
    assert (c[:, :3, 1].double() @ u).min() > 0  # upright, no roll: camera x axis orthogonal to up
    assert (c[:, :3, 0].double() @ u).abs().max() < 1e-6
    chords = (torch.roll(off, -1, 0) - off).norm(dim=-1)  # evenly spaced around the full circle
    ring = 3.0 * math.cos(math.radians(30))
    assert torch.allclose(
        chords, torch.full((12,), 2 * ring * math.sin(math.pi / 12), dtype=torch.float64), atol=1e-5
    )


def llff_like_poses(m: int = 10, seed: int = 0) -> torch.Tensor:
    """Forward-facing cameras on a small patch around z = 4, all looking at (0, 0, 0) with up +y."""
    rng = np.random.default_rng(seed)
    eyes = np.c_[rng.uniform(-0.5, 0.5, (m, 2)), 4.0 + rng.uniform(-0.1, 0.1, m)]
    return look_at(eyes, (0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0))


def test_focus_point_and_spiral() -> None:
    poses = llff_like_poses()
    assert np.allclose(focus_point(poses), 0.0, atol=1e-4)
    s = spiral(poses, n=30, rots=2, zrate=0.5)
    assert s.shape == (30, 4, 4)
    assert_rigid(s)
    centre = poses[:, :3, 3].double().mean(0)
    back = torch.nn.functional.normalize(poses[:, :3, 2].double().sum(0), dim=0)
    target = centre - (centre @ back) * back  # the focus point (origin) projected on the mean axis
    assert looks_at(s, target).min() > 1 - 1e-6
    assert (s[:, :3, 3].double() - centre).norm(dim=-1).max() < 1.0  # stays near the training cameras
    assert (s[:, :3, 1].double() @ torch.tensor([0, 1.0, 0], dtype=torch.float64)).min() > 0.9
    # the 90th-percentile radius: the spiral's x extent is that of the cameras
    local_x = (s[:, :3, 3].double() - centre) @ torch.tensor([1.0, 0, 0], dtype=torch.float64)
    want = np.percentile(np.abs(poses[:, 0, 3].numpy() - centre[0].item()), 90)
    assert local_x.abs().max().item() == pytest.approx(want, rel=0.05)


def test_spiral_with_explicit_depth_and_parallel_axes() -> None:
    eyes = np.c_[np.linspace(-1, 1, 5), np.zeros(5), np.full(5, 3.0)]
    parallel = look_at(eyes, eyes - np.array([0, 0, 1.0]), up=(0, 1.0, 0))
    with pytest.raises(ValueError, match="parallel"):
        focus_point(parallel)
    s = spiral(parallel, n=8, focus_depth=2.0)
    assert looks_at(s, (0.0, 0.0, 1.0)).min() > 1 - 1e-6


def test_interpolate_endpoints_slerp_and_closed() -> None:
    a = look_at((4.0, 0, 0), (0, 0, 0.0), up=(0, 0, 1.0))
    b = look_at((0, 4.0, 0), (0, 0, 0.0), up=(0, 0, 1.0))
    path = interpolate(torch.stack([a, b]), 5)
    assert_rigid(path)
    assert torch.allclose(path[0], a, atol=1e-6) and torch.allclose(path[-1], b, atol=1e-6)
    # midpoint: rotation halfway (45 degrees about z), position halfway (linear, not on the circle)
    mid = path[2].double()
    rz = torch.tensor(
        [
            [math.cos(math.pi / 4), -math.sin(math.pi / 4), 0],
            [math.sin(math.pi / 4), math.cos(math.pi / 4), 0],
            [0, 0, 1],
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(mid[:3, :3], rz @ a[:3, :3].double(), atol=1e-6)
    assert torch.allclose(mid[:3, 3], torch.tensor([2.0, 2.0, 0], dtype=torch.float64), atol=1e-6)
    # three keyframes closed: 6 poses, keyframes at 0, 2, 4; no repeat of the first at the end
    c = look_at((-4.0, 0, 0), (0, 0, 0.0), up=(0, 0, 1.0))
    loop = interpolate(torch.stack([a, b, c]), 6, closed=True)
    for i, k in ((0, a), (2, b), (4, c)):
        assert torch.allclose(loop[i], k, atol=1e-5)
    assert not torch.allclose(loop[-1], a, atol=1e-3)
    with pytest.raises(ValueError):
        interpolate(a[None], 4)


def test_orbit_around_pose_cone() -> None:
    src = look_at((1.0, -3.0, 1.5), (0.0, 0.0, 0.0), up=(0, 0, 1.0))
    path = orbit_around_pose(src, n=8, radius_deg=15.0)
    assert path.shape == (8, 4, 4)
    assert_rigid(path)
    assert looks_at(path, (0.0, 0.0, 0.0)).min() > 1 - 1e-6  # the source looked at the origin
    dist = src[:3, 3].double().norm()
    assert torch.allclose(path[:, :3, 3].double().norm(dim=-1), dist.expand(8), atol=1e-5)
    cos = path[:, :3, 2].double() @ src[:3, 2].double()  # angle to the source's viewing axis
    assert torch.allclose(cos, torch.full((8,), math.cos(math.radians(15)), dtype=torch.float64), atol=1e-6)
    # first camera is to the source's right, the third above it (counter-clockwise)
    rel = path[:, :3, 3].double() - src[:3, 3].double()
    assert (rel[0] @ src[:3, 0].double()) > 0 and (rel[2] @ src[:3, 1].double()) > 0
    near = orbit_around_pose(src, n=4, radius_deg=10.0, focus_distance=1.0)
    target = src[:3, 3].double() - src[:3, 2].double()
    assert looks_at(near, target).min() > 1 - 1e-6


def test_orbit_through_pose_starts_at_the_camera() -> None:
    src = look_at((1.0, -3.0, 1.5), (0.0, 0.0, 0.0), up=(0, 0, 1.0))
    path = orbit_through_pose(src, n=6)
    assert torch.allclose(path[0], src, atol=1e-5)  # same position, same orientation (looks at centre)
    z = path[:, 2, 3].double()
    assert torch.allclose(z, torch.full((6,), 1.5, dtype=torch.float64), atol=1e-5)  # same elevation


@pytest.mark.parametrize("kind", ["orbit", "spiral", "interpolate"])
def test_camera_path_around_training_cameras(kind: str) -> None:
    rng = np.random.default_rng(1)
    az = rng.permutation(np.linspace(0, 2 * np.pi, 10, endpoint=False))  # random order, as in blender data
    eyes = np.c_[4 * np.cos(az), 4 * np.sin(az), np.full(10, 2.0)] + rng.normal(0, 0.05, (10, 3))
    cams = look_at(eyes, (0.0, 0.0, 0.5), up=(0, 0, 1.0)) if kind != "spiral" else llff_like_poses()
    path = camera_path(cams, kind, 16)
    assert path.shape == (16, 4, 4)
    assert_rigid(path)
    if kind == "orbit":
        assert looks_at(path, (0.0, 0.0, 0.5)).min() > 1 - 1e-4
        assert (
            path[:, :3, 3].double().sub(torch.tensor([0, 0, 0.5], dtype=torch.float64)).norm(dim=-1).std()
            < 1e-5
        )
    if kind == "interpolate":  # neighbours stay close: azimuth order, no jumps across the circle
        steps = (torch.roll(path[:, :3, 3], -1, 0) - path[:, :3, 3]).norm(dim=-1)
        assert steps.max() < 2.5 * steps.median()
    with pytest.raises(ValueError, match="kind"):
        camera_path(cams, "zigzag", 4)


def test_read_nerfstudio_camera_path(tmp_path) -> None:
    import json

    from common.errors import DataError
    from common.trajectories import read_camera_path

    c2w = np.eye(4)
    c2w[:3, 3] = (1.0, 2.0, 3.0)
    meta = {"camera_type": "perspective", "render_height": 20, "render_width": 30, "fps": 12,
            "camera_path": [{"camera_to_world": c2w.ravel().tolist(), "fov": 90.0, "aspect": 1.5},
                            {"camera_to_world": np.eye(4).ravel().tolist(), "fov": 60.0}]}  # fmt: skip
    p = tmp_path / "camera_path.json"
    p.write_text(json.dumps(meta))
    cp = read_camera_path(p)
    assert (cp.height, cp.width, cp.fps) == (20, 30, 12.0) and cp.c2w[0, :3, 3].tolist() == [1.0, 2.0, 3.0]
    # vertical fov: fy = 0.5 H / tan(fov / 2); 90 deg -> 10 px, 60 deg -> 10 sqrt(3)
    assert cp.K[0].tolist() == [[10.0, 0.0, 15.0], [0.0, 10.0, 10.0], [0.0, 0.0, 1.0]]
    assert float(cp.K[1, 0, 0]) == pytest.approx(10 * math.sqrt(3), rel=1e-6)
    meta["camera_type"] = "fisheye"
    p.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="camera_path.json: camera_type 'fisheye' is not supported"):
        read_camera_path(p)
