"""Point preparation: readers, down-sampling, clear errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from smcl.scene.points import (
    PointCloudError,
    cube_count,
    downsample_uniform_random,
    downsample_voxel,
    prepare_points,
    read_points,
    write_points,
)


def test_ply_pcd_roundtrip_and_count(tmp_path):
    x = np.random.default_rng(0).random((25000, 3))
    write_points(tmp_path / "a.ply", x)
    out = prepare_points(tmp_path / "a.ply", tmp_path / "b.pcd", n=10000)
    assert out.shape == (10000, 3)
    back = read_points(tmp_path / "b.pcd")
    assert np.allclose(back, out, atol=1e-6)
    from scipy.spatial import cKDTree

    assert cKDTree(x).query(out)[0].max() < 1e-6  # a subset of the input points


def test_uniform_random_stride():
    x = np.arange(30, dtype=float)[:, None].repeat(3, 1)
    y = downsample_uniform_random(x, 10)  # stride 3 -> exactly the 0, 3, 6, ... points
    assert np.array_equal(y[:, 0], np.arange(0, 30, 3))


def test_voxel_spreads_points():
    rng = np.random.default_rng(0)
    dense = rng.random((5000, 3)) * 0.01
    sparse = rng.random((500, 3)) + 1.0
    y = downsample_voxel(np.concatenate([dense, sparse]), 200)
    assert y.shape == (200, 3)
    assert (y[:, 0] > 0.5).mean() > 0.5  # voxel grid does not follow the dense clump


def test_colmap_bin_and_txt(tmp_path):
    pts = [(1, (0.1, 0.2, 0.3)), (7, (1.0, 2.0, 3.0))]
    buf = struct.pack("<Q", len(pts))
    for pid, xyz in pts:
        buf += (
            struct.pack("<Q3d3Bd", pid, *xyz, 1, 2, 3, 0.5)
            + struct.pack("<Q", 2)
            + struct.pack("<4i", 0, 1, 2, 3)
        )
    (tmp_path / "points3D.bin").write_bytes(buf)
    assert np.allclose(read_points(tmp_path / "points3D.bin"), [p[1] for p in pts])
    (tmp_path / "points3D.txt").write_text("# comment\n1 0.1 0.2 0.3 1 2 3 0.5 0 1\n7 1 2 3 1 2 3 0.5 2 3\n")
    assert np.allclose(read_points(tmp_path / "points3D.txt"), [p[1] for p in pts])


def test_errors_name_file(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(PointCloudError, match="empty.npy.*empty"):
        read_points(tmp_path / "empty.npy")
    np.save(tmp_path / "same.npy", np.ones((50, 3)))
    with pytest.raises(PointCloudError, match="degenerate"):
        read_points(tmp_path / "same.npy")
    with pytest.raises(PointCloudError, match="too few"):
        downsample_uniform_random(np.random.rand(5, 3), 10)
    with pytest.raises(PointCloudError, match="not found"):
        read_points(tmp_path / "nope.ply")


def test_cube_count():
    assert cube_count(10000) == (9261, 739)
