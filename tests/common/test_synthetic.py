"""Tests of common.synthetic: file layouts of the specs, camera consistency, mirror symmetry, depth vs
geometry, graded distortions, reproducibility. Small sizes keep the suite within its time budget."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest
import yaml
from scipy.stats import spearmanr

from common.synthetic import (
    CLASS_NAMES,
    DEFAULT_METHODS,
    Distortion,
    write_nerf_synthetic,
    write_nmr_dataset,
    write_nss_bank,
    write_nss_renders,
    write_nsvf,
    write_rgbx_scenes,
    write_srn_dataset,
)
from common.synthetic.files import child_rng
from common.synthetic.multiview import nmr_object
from common.synthetic.nss import distort_frames
from common.synthetic.render import Scene, Shape, intrinsics, look_at, render, sample_surface

REPO = Path(__file__).resolve().parents[2]


def _read(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    assert img is not None, f"cannot read {path}"
    return img


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def _on_mask(mask: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    """Fraction of pixels (u, v) on the mask grown by one pixel (thin parts can fall between pixel
    centres at these tiny test resolutions)."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return float(grown[v, u].mean())


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- renderer


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (Shape("sphere", (0, 0, 0), (0.5,)), 2.5),
        (Shape("box", (0, 0, 0), (0.3, 0.4, 0.2)), 2.8),  # front face z = +0.2
        (Shape("cylinder", (0, 0, 0), (0.25, 0.5)), 2.75),  # side at radius 0.25
        (Shape("torus", (0, 0, 0), (0.5, 0.1)), 2.4),  # axis along y: hits z = R + r
        (Shape("torus", (0, 0, 0), (0.5, 0.1), ((1, 0, 0), (0, 0, -1), (0, 1, 0))), math.inf),  # hole
    ],
)
def test_centre_ray_depth_matches_analytic_distance(shape: Shape, expected: float) -> None:
    # camera on +z at distance 3 looking at the origin; odd size puts a pixel centre on the axis
    c2w = look_at(np.array([0, 0, 3.0]), np.zeros(3), np.array([0, 1.0, 0]))
    res = render(Scene((shape,)), intrinsics(20.0, 9, 9), c2w, 9, 9)
    assert res.depth[4, 4] == pytest.approx(expected, abs=1e-4)
    assert res.mask[4, 4] == math.isfinite(expected)


def test_sample_surface_points_lie_on_the_sphere() -> None:
    scene = Scene((Shape("sphere", (0.1, 0.0, 0.0), (0.4,)),))
    pts = sample_surface(scene, 200, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(pts - [0.1, 0, 0], axis=1), 0.4, atol=1e-6)


# ---------------------------------------------------------------- NMR / DVR


@pytest.fixture(scope="module")
def nmr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nmr_dataset(tmp_path_factory.mktemp("nmr"), n_objects=3, image_size=32, seed=3)


def test_nmr_layout(nmr_root: Path) -> None:
    meta = json.loads((nmr_root / "metadata.yaml").read_text())
    assert list(meta) == ["03211117"] and meta["03211117"]["name"].startswith("display")
    cat = nmr_root / "03211117"
    ids = [line for s in ("train", "val", "test") for line in (cat / f"softras_{s}.lst").read_text().split()]
    assert len(ids) == 3 and len(set(ids)) == 3
    for obj in ids:
        imgs = sorted((cat / obj / "image").glob("*.png"))
        assert [p.name for p in imgs] == [f"{i:04d}.png" for i in range(24)]
        img = _read(imgs[0])
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        mask = _read(cat / obj / "mask" / "0000.png")
        assert mask.shape == (32, 32) and set(np.unique(mask)) == {0, 255}
        assert (img[mask == 0] == 255).all()  # white background
        cams = np.load(cat / obj / "cameras.npz")
        for i in range(24):
            wm, cm = cams[f"world_mat_{i}"], cams[f"camera_mat_{i}"]
            assert wm.shape == (4, 4) and cm.shape == (4, 4)
            np.testing.assert_allclose(wm @ cams[f"world_mat_inv_{i}"], np.eye(4), atol=1e-9)
            np.testing.assert_allclose(wm[:3, :3] @ wm[:3, :3].T, np.eye(3), atol=1e-9)
            assert cm[0, 0] == cm[1, 1]
            cam_centre = cams[f"world_mat_inv_{i}"][:3, 3]
            assert np.linalg.norm(cam_centre) == pytest.approx(2.732)
            # azimuth steps of 15 degrees about the y axis, elevation 30 degrees
            assert math.degrees(math.asin(cam_centre[1] / 2.732)) == pytest.approx(30.0)
            az = math.degrees(math.atan2(cam_centre[0], cam_centre[2])) % 360
            assert az == pytest.approx(15.0 * i, abs=1e-6)


def _project_nmr(cams: dict, i: int, pts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices of world points through the DVR cameras (camera_mat maps to [-1, 1])."""
    x = (cams[f"camera_mat_{i}"] @ cams[f"world_mat_{i}"] @ np.c_[pts, np.ones(len(pts))].T).T
    ndc = x[:, :2] / x[:, 2:3]
    u, v = (np.floor((ndc[:, j] + 1) * size / 2).astype(int) for j in (0, 1))
    assert ((u >= 0) & (u < size) & (v >= 0) & (v < size)).all()
    return u, v


def test_nmr_surface_points_project_into_masks(nmr_root: Path) -> None:
    cat = nmr_root / "03211117"
    for k in range(3):
        obj_id, scene = nmr_object(3, "display", k)
        pts = sample_surface(scene, 300, np.random.default_rng(k))
        cams = dict(np.load(cat / obj_id / "cameras.npz"))
        for i in (0, 5, 17):
            mask = _read(cat / obj_id / "mask" / f"{i:04d}.png") > 0
            assert _on_mask(mask, *_project_nmr(cams, i, pts, 32)) > 0.99
            assert mask[_project_nmr(cams, i, pts, 32)[::-1]].mean() > 0.8  # without slack
            # the check can fail: points moved by half an object height miss the mask
            assert _on_mask(mask, *_project_nmr(cams, i, pts + [0.0, 0.5, 0.0], 32)) < 0.8


def test_nmr_mirror_views_are_left_right_flips(nmr_root: Path, tmp_path: Path) -> None:
    obj = (nmr_root / "03211117" / "softras_train.lst").read_text().split()[0]
    img = nmr_root / "03211117" / obj / "image"
    for i in (1, 4, 7, 11):
        a, b = _read(img / f"{i:04d}.png"), _read(img / f"{24 - i:04d}.png")
        diff = np.abs(a[:, ::-1].astype(int) - b.astype(int))
        assert diff.max() <= 2, f"view {i} vs {24 - i}"
        assert np.abs(a.astype(int) - b.astype(int)).max() > 50  # not trivially identical
    # asymmetric objects break the relation (so the check above can fail)
    asym = write_nmr_dataset(tmp_path, n_objects=3, image_size=32, mirror_symmetric=False, seed=3)
    obj = (asym / "03211117" / "softras_train.lst").read_text().split()[0]
    a = _read(asym / "03211117" / obj / "image" / "0004.png")
    b = _read(asym / "03211117" / obj / "image" / "0020.png")
    assert np.abs(a[:, ::-1].astype(int) - b.astype(int)).max() > 50


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    for run in ("a", "b"):
        write_nmr_dataset(tmp_path / run / "nmr", n_objects=3, image_size=16, seed=5)
        write_rgbx_scenes(tmp_path / run / "rgbx", n_train=2, n_test=1, size=(12, 16), seed=5)
        write_nerf_synthetic(
            tmp_path / run / "nerf", n_train=2, n_val=1, n_test=1, size=12, n_points=50, seed=5
        )
        write_nsvf(tmp_path / run / "nsvf", n_train=2, n_test=1, width=16, height=12, n_points=50, seed=5)
        write_srn_dataset(tmp_path / run / "srn", n_instances=(1, 1, 1), n_views=2, image_size=12, seed=5)
        write_nss_renders(tmp_path / run / "nss", n_scenes=1, n_frames=2, size=(12, 16), seed=5)
        write_nss_bank(
            tmp_path / run / "bank",
            datasets=("lab",),
            n_scenes=1,
            n_methods=2,
            n_frames=2,
            size=(12, 16),
            seed=5,
        )
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 100
    assert all(a[k] == b[k] for k in a)
    write_nmr_dataset(tmp_path / "c", n_objects=3, image_size=16, seed=6)
    c = _tree_bytes(tmp_path / "c")
    c_imgs = {v for k, v in c.items() if "/image/" in k}
    a_imgs = {v for k, v in a.items() if k.startswith("nmr/") and "/image/" in k}
    assert len(c_imgs) == len(a_imgs) == 72 and not c_imgs & a_imgs  # another seed, other objects


# ---------------------------------------------------------------- NeRF-Synthetic, NSVF, SRN


def test_nerf_synthetic_layout_and_cameras(tmp_path: Path) -> None:
    root = write_nerf_synthetic(
        tmp_path / "scene", n_train=3, n_val=1, n_test=2, size=40, n_points=300, seed=1
    )
    pcd = o3d.io.read_point_cloud(str(root / "points3d.ply"))
    pts = np.asarray(pcd.points)
    assert pts.shape == (300, 3)
    assert len(o3d.io.read_point_cloud(str(root / "points3d.pcd")).points) == 300
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        meta = json.loads((root / f"transforms_{split}.json").read_text())
        assert len(meta["frames"]) == n
        focal = 0.5 * 40 / math.tan(0.5 * meta["camera_angle_x"])
        for fr in meta["frames"]:
            rgba = _read(root / (fr["file_path"] + ".png"))
            assert rgba.shape == (40, 40, 4) and rgba.dtype == np.uint8
            c2w = np.asarray(fr["transform_matrix"])
            assert c2w.shape == (4, 4)
            assert c2w[2, 3] > 0  # z-up world, cameras in the upper hemisphere
            # OpenGL camera: looks down -z, y up
            cam = (np.linalg.inv(c2w) @ np.c_[pts, np.ones(len(pts))].T).T
            assert (cam[:, 2] < 0).all()
            u = np.floor(20 + focal * cam[:, 0] / -cam[:, 2]).astype(int)
            v = np.floor(20 - focal * cam[:, 1] / -cam[:, 2]).astype(int)
            assert _on_mask(rgba[..., 3] > 0, u, v) > 0.99


def test_nsvf_layout_and_cameras(tmp_path: Path) -> None:
    root = write_nsvf(tmp_path / "scene", n_train=3, n_test=2, width=40, height=24, n_points=300, seed=2)
    lines = (root / "intrinsics.txt").read_text().splitlines()
    assert len(lines) == 5  # as in the NSVF lego sample
    f, cx, cy, _ = map(float, lines[0].split())
    assert [int(x) for x in lines[-1].split()] == [24, 40] and (cx, cy) == (20.0, 12.0)
    rgbs = sorted(p.name for p in (root / "rgb").glob("*.png"))
    assert rgbs == ["0_0000.png", "0_0001.png", "0_0002.png", "1_0003.png", "1_0004.png"]
    bbox = np.array((root / "bbox.txt").read_text().split(), dtype=float)
    pts = np.asarray(o3d.io.read_point_cloud(str(root / "points3d.ply")).points)
    assert (pts >= bbox[:3]).all() and (pts <= bbox[3:6]).all() and bbox[6] > 0
    for name in rgbs:
        img = _read(root / "rgb" / name)
        assert img.shape == (24, 40, 3)
        c2w = np.loadtxt(root / "pose" / name.replace(".png", ".txt"))
        cam = (np.linalg.inv(c2w) @ np.c_[pts, np.ones(len(pts))].T).T  # OpenCV: z forward
        assert (cam[:, 2] > 0).all()
        u = np.floor(cx + f * cam[:, 0] / cam[:, 2]).astype(int)
        v = np.floor(cy + f * cam[:, 1] / cam[:, 2]).astype(int)
        inside = (u >= 0) & (u < 40) & (v >= 0) & (v < 24)
        fg = (img < 255).any(axis=2)  # SRN/NSVF-style mask: not pure white
        assert _on_mask(fg, u[inside], v[inside]) > 0.98


def test_srn_layout(tmp_path: Path) -> None:
    root = write_srn_dataset(tmp_path, name="cars", n_instances=(2, 1, 1), n_views=3, image_size=24, seed=0)
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        insts = sorted((root / f"cars_{split}").iterdir())
        assert len(insts) == n
        for inst in insts:
            lines = (inst / "intrinsics.txt").read_text().splitlines()
            assert len(lines[0].split()) == 4 and lines[-1].split() == ["24", "24"]
            assert sorted(p.name for p in (inst / "rgb").iterdir()) == [f"{i:06d}.png" for i in range(3)]
            pose = np.loadtxt(inst / "pose" / "000000.txt")
            np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-6)
            # OpenCV c2w: the optical axis (column 2) points at the object at the origin
            np.testing.assert_allclose(pose[:3, 2], -pose[:3, 3] / np.linalg.norm(pose[:3, 3]), atol=1e-6)


# ---------------------------------------------------------------- RGB-X


def test_rgbx_depth_layout_labels_and_geometry(tmp_path: Path) -> None:
    root = write_rgbx_scenes(tmp_path, modality="depth", n_train=3, n_test=2, size=(30, 40), seed=4)
    train = (root / "train.txt").read_text().split()
    test = (root / "test.txt").read_text().split()
    assert len(train) == 3 and len(test) == 2 and not set(train) & set(test)
    meta = yaml.safe_load((root / "meta.yaml").read_text())
    assert meta["num_classes"] == len(CLASS_NAMES) == len(meta["class_names"]) and meta["gt_transform"]
    cams = np.load(root / "cameras.npz")
    seen = set()
    for name in train + test:
        depth = _read(root / "Depth" / f"{name}.png")
        label = _read(root / "Label" / f"{name}.png")
        rgb, normal = _read(root / "RGB" / f"{name}.png"), _read(root / "RGB_normal" / f"{name}.png")
        assert depth.dtype == np.uint16 and depth.shape == (30, 40)
        assert label.dtype == np.uint8 and label.max() <= len(CLASS_NAMES)
        assert rgb.shape == (30, 40, 3) and rgb.mean() < 0.4 * normal.mean()  # low light
        seen |= set(np.unique(label).tolist())
        # back-project with the written camera: floor pixels lie on y = 0, wall pixels on |x|,|z| = 2
        K, c2w = cams[f"K_{name}"], cams[f"c2w_{name}"]
        v, u = np.mgrid[0:30, 0:40]
        pix = np.stack([u + 0.5, v + 0.5, np.ones_like(u)], -1).reshape(-1, 3).astype(float)
        X_cam = (pix @ np.linalg.inv(K).T) * (depth.reshape(-1, 1) / 1000.0)
        X = X_cam @ c2w[:3, :3].T + c2w[:3, 3]
        lab = label.reshape(-1)
        assert (depth > 0).all()  # a closed room: every pixel hits a surface
        if (lab == 2).any():
            np.testing.assert_allclose(X[lab == 2, 1], 0.0, atol=0.01)
        walls = X[lab == 1]
        if len(walls):
            np.testing.assert_allclose(np.abs(walls[:, [0, 2]]).max(1), 2.0, atol=0.01)
    assert {1, 2} <= seen


def test_rgbx_uint8_depth_matches_uint16(tmp_path: Path) -> None:
    a = write_rgbx_scenes(tmp_path / "a", n_train=1, n_test=1, size=(12, 16), seed=2)
    b = write_rgbx_scenes(tmp_path / "b", depth_format="uint8", n_train=1, n_test=1, size=(12, 16), seed=2)
    meta = yaml.safe_load((b / "meta.yaml").read_text())
    d16 = _read(a / "Depth" / "00000.png").astype(float) / 1000.0
    d8 = _read(b / "Depth" / "00000.png")
    assert d8.dtype == np.uint8
    np.testing.assert_allclose(d8 / meta["depth_scale"], d16, atol=0.5 / meta["depth_scale"] + 1e-3)


def test_rgbx_thermal_variant(tmp_path: Path) -> None:
    root = write_rgbx_scenes(
        tmp_path, modality="thermal", low_light=False, n_train=2, n_test=1, size=(24, 32), seed=0
    )
    meta = yaml.safe_load((root / "meta.yaml").read_text())
    assert meta["num_classes"] == len(CLASS_NAMES) + 1 and not meta["gt_transform"]
    assert not (root / "Depth").exists() and not (root / "RGB_normal").exists()
    th = _read(root / "Thermal" / "00000.png")
    label = _read(root / "Label" / "00000.png")
    assert th.dtype == np.uint8 and th.shape == (24, 32)
    # warm objects (class 5) are hotter than walls (class 1) wherever both are visible
    for name in ("00000", "00001", "00002"):
        th, label = _read(root / "Thermal" / f"{name}.png"), _read(root / "Label" / f"{name}.png")
        if (label == 5).any() and (label == 1).any():
            assert th[label == 5].mean() > th[label == 1].mean() + 30


# ---------------------------------------------------------------- NSS renders and bank


def test_nss_renders_layout_and_graded_quality(tmp_path: Path) -> None:
    root = write_nss_renders(tmp_path, n_scenes=1, n_frames=4, size=(24, 32), seed=0)
    folders = sorted(p.name for p in (root / "renders").iterdir() if p.is_dir())
    assert folders == sorted(f"scene00__{m}" for m in ["gt", *DEFAULT_METHODS])
    psnrs = []
    for m in DEFAULT_METHODS:
        frames = sorted((root / "renders" / f"scene00__{m}").glob("*.png"))
        assert [p.name for p in frames] == [f"{t:05d}.png" for t in range(4)]
        psnrs.append(
            np.mean([_psnr(_read(p), _read(root / "renders" / "scene00__gt" / p.name)) for p in frames])
        )
    assert all(a > b for a, b in zip(psnrs, psnrs[1:])), psnrs
    quality = json.loads((root / "quality.json").read_text())
    assert set(quality["scene00"]) == set(DEFAULT_METHODS)


@pytest.mark.parametrize("kind", ["blur", "noise", "floaters", "ghosting", "color_shift", "flicker"])
def test_each_distortion_is_monotone_in_psnr(kind: str) -> None:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.uniform(0.2, 0.8, size=(24, 32, 3)), (0, 0), 1.0)
    clean = [np.roll(base, t, axis=1) for t in range(4)]
    floaters = [np.clip(c + 0.3, 0, 1) for c in clean]
    psnrs = []
    for s in (0.2, 0.5, 1.0):
        out = distort_frames(clean, Distortion(**{kind: s}), np.random.default_rng(1), floaters)
        psnrs.append(np.mean([_psnr(255 * o, 255 * c) for o, c in zip(out, clean)]))
    assert psnrs[0] > psnrs[1] > psnrs[2], psnrs


def test_nss_bank_layout_labels_and_split(tmp_path: Path) -> None:
    root = write_nss_bank(
        tmp_path, datasets=("fieldwork", "lab"), n_scenes=2, n_methods=4, n_frames=3, size=(24, 32), seed=0
    )
    bank = root / "benchmark_bank"
    flat = json.loads((bank / "labels.json").read_text())
    assert set(flat) == {"tr_keys", "tt_keys", "labels"}
    assert len(flat["tr_keys"]) == len(flat["tt_keys"]) == 8 and len(flat["labels"]) == 16
    assert set(flat["tr_keys"]) | set(flat["tt_keys"]) == set(flat["labels"])
    assert not set(flat["tr_keys"]) & set(flat["tt_keys"])
    nested = json.loads((bank / "all_labels_offset_by_ref.json").read_text())
    jods, psnrs = [], []
    for key, jod in flat["labels"].items():
        ds, scene, method = key.split("+")
        assert nested[ds][scene][method] == jod and jod < 0.5
        frames = sorted((bank / ds / scene / method / "frames").glob("*.jpg"))
        assert [p.name for p in frames] == [f"frame{t:07d}.jpg" for t in range(3)]
        ref = bank / ds / scene / "reference" / "frames"
        jods.append(jod)
        psnrs.append(np.mean([_psnr(_read(p), _read(ref / p.name)) for p in frames]))
    # JOD-like labels follow the measurable degradation
    assert spearmanr(jods, psnrs).statistic > 0.6


def test_child_rng_keys_are_independent() -> None:
    a = child_rng(0, "x", 1).uniform(size=4)
    assert np.array_equal(a, child_rng(0, "x", 1).uniform(size=4))
    assert not np.array_equal(a, child_rng(0, "x", 2).uniform(size=4))
    assert not np.array_equal(a, child_rng(1, "x", 1).uniform(size=4))


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="category"):
        write_nmr_dataset(tmp_path, category="teapot", n_objects=3)
    with pytest.raises(ValueError, match="at least 3"):
        write_nmr_dataset(tmp_path, n_objects=2)
    with pytest.raises(ValueError, match="modality"):
        write_rgbx_scenes(tmp_path, modality="radar")
    with pytest.raises(ValueError, match="n_frames must be a positive integer"):
        write_nss_renders(tmp_path, n_frames=0)
    with pytest.raises(ValueError, match="unknown distortion keys"):
        write_nss_renders(tmp_path, methods={"m": {"blurr": 0.5}})
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="afile"):
        write_nerf_synthetic(tmp_path / "afile")


def test_cli_help_and_run(tmp_path: Path) -> None:
    script = REPO / "scripts" / "make_synthetic.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True)
    assert "nss_bank" in out.stdout
    subprocess.run(
        [
            sys.executable,
            str(script),
            "nerf_synthetic",
            "--out",
            str(tmp_path),
            "--seed",
            "0",
            "--size",
            "24",
            "--n-train",
            "2",
            "--n-test",
            "1",
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    assert (tmp_path / "nerf_synthetic" / "object" / "transforms_train.json").is_file()


def test_formats_match_the_genuine_samples(shared_data: Path, tmp_path: Path) -> None:
    """Our Blender/NSVF files have the same structure as the real lego samples."""
    ours = write_nerf_synthetic(tmp_path / "nerf", n_train=1, n_val=1, n_test=1, size=8, n_points=10, seed=0)
    real = json.loads((shared_data / "nerf_synthetic" / "lego" / "transforms_train.json").read_text())
    mine = json.loads((ours / "transforms_train.json").read_text())
    assert set(mine) == set(real) and set(mine["frames"][0]) == set(real["frames"][0])
    assert mine["frames"][0]["file_path"].startswith("./train/r_")
    real_png = _read(shared_data / "nerf_synthetic" / "lego" / (real["frames"][0]["file_path"] + ".png"))
    assert _read(ours / (mine["frames"][0]["file_path"] + ".png")).shape[2] == real_png.shape[2] == 4
    nsvf = write_nsvf(tmp_path / "nsvf", n_train=1, n_test=1, width=8, height=8, n_points=10, seed=0)
    real_nsvf = shared_data / "nsvf" / "lego"
    real_lines = (real_nsvf / "intrinsics.txt").read_text().split("\n")
    mine_lines = (nsvf / "intrinsics.txt").read_text().split("\n")
    assert [len(x.split()) for x in mine_lines] == [len(x.split()) for x in real_lines]
    assert (
        len((nsvf / "bbox.txt").read_text().split()) == len((real_nsvf / "bbox.txt").read_text().split()) == 7
    )
    real_pose = np.loadtxt(sorted((real_nsvf / "pose").glob("0_*.txt"))[0])
    assert np.loadtxt(nsvf / "pose" / "0_0000.txt").shape == real_pose.shape == (4, 4)
