"""HHA against the MATLAB reference of NYU frame 1, and the normal fit against an analytic plane."""

from __future__ import annotations

import cv2
import numpy as np

from smmcl.hha import NYU_INTRINSICS, hha_from_files, normals, point_cloud


def test_hha_matches_matlab_reference(shared_data, tmp_path):
    frame = shared_data / "nyu_depth_v2" / "frame0001"
    ref = cv2.imread(str(frame / "hha_matlab_reference.png"), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(int)
    for raw in (None, frame / "raw_depth.png"):
        diff = np.abs(hha_from_files(frame / "depth.png", raw, 10000.0).astype(int) - ref)
        stats = [(float(diff[..., c].mean()), float(np.percentile(diff[..., c], 99))) for c in range(3)]
        print(f"HHA vs MATLAB (raw mask={raw is not None}): (mean, p99) disparity/height/angle = {stats}")
    diff = np.abs(hha_from_files(frame / "depth.png", None, 10000.0).astype(int) - ref)
    assert diff.mean(axis=(0, 1)).max() < 1.0 and np.percentile(diff, 99) <= 2


def test_normals_of_a_tilted_plane():
    fx, fy, cx, cy = NYU_INTRINSICS
    h, w = 60, 80
    n_true = np.array([0.2, -0.6, 0.5])
    n_true /= np.linalg.norm(n_true)
    xx, yy = np.meshgrid(np.arange(1, w + 1), np.arange(1, h + 1))
    rays = np.stack([(xx - cx) / fx, (yy - cy) / fy, np.ones_like(xx, dtype=float)], -1)
    z = 300.0 / (rays @ n_true)  # plane n . P = 300 cm
    x, y, zz = point_cloud(z, fx, fy, cx, cy)
    assert np.allclose(np.stack([x, y, zz], -1) @ n_true, 300.0)
    n = normals(z, np.zeros_like(z, bool), 3, NYU_INTRINSICS)
    assert np.allclose(n[10:-10, 10:-10], n_true, atol=1e-6)
