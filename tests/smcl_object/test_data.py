"""NMR/SRN loaders (pixelNeRF conventions), ray generation, Mir-180 triplet index (spec 1.4, 4.1, 4.2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import DataError
from smcl.object.data.mir180 import Mir180Dataset, build_triplet_index, export_flat_folders, triplet_views
from smcl.object.data.nmr import (
    NMRDataset,
    NMRDatasetConfig,
    pixelnerf_rays,
    write_nmr_object,
)
from smcl.object.data.srn import SRNDataset, SRNDatasetConfig
from tests.smcl_object.ellipsoids import orbit_poses, write_ellipsoid_nmr

# DVR's y-up world -> our z-up world, written out independently of the loader
T_WORLD = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


@pytest.fixture(scope="module")
def nmr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ellipsoid_nmr(tmp_path_factory.mktemp("nmr"), n_objects=3, image_size=32, seed=0)


def test_mir180_triplet_table_matches_spec() -> None:
    assert triplet_views() == [
        (1, 23, 13), (2, 22, 14), (3, 21, 15), (4, 20, 16), (5, 19, 17),
        (7, 17, 19), (8, 16, 20), (9, 15, 21), (10, 14, 22), (11, 13, 23),
    ]  # fmt: skip
    idx = build_triplet_index(Path("."), "s", ["a", "b"])
    assert len(idx) == 20 and idx[10].obj == "b" and (idx[10].anchor, idx[10].mirror) == (1, 23)


def test_nmr_loader_poses_focal_bbox(nmr_root: Path) -> None:
    ds = NMRDataset(NMRDatasetConfig(root=str(nmr_root), split="train"))
    obj = ds[0]
    assert obj["images"].shape == (24, 3, 32, 32) and 0 <= obj["images"].min() and obj["images"].max() <= 1
    torch.testing.assert_close(obj["poses"], orbit_poses(), atol=1e-5, rtol=1e-5)
    assert math.isclose(float(obj["focal"]), 16 / math.tan(math.radians(15)), rel_tol=1e-5)
    bb = obj["bbox"][0]
    assert 0 < bb[0] < bb[2] < 31 and 0 < bb[1] < bb[3] < 31


def test_nmr_world_and_camera_axis_changes(tmp_path: Path) -> None:
    """A DVR camera (OpenCV, y-up world) at (0, 0, 2) looking at the origin -> z-up world, OpenGL camera."""
    obj = tmp_path / "s" / "o"
    (obj / "image").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(obj / "image" / "0000.png")
    # OpenCV camera at DVR-world (0,0,2), +z forward towards -z world: R flips y and z.
    w2c = np.array([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.0]])
    cm = np.diag([2.0, 2.0, 1.0, 1.0])
    np.savez(obj / "cameras.npz", world_mat_0=w2c, camera_mat_0=cm)
    (tmp_path / "s" / "softras_test.lst").write_text("o\n")
    item = NMRDataset(NMRDatasetConfig(root=str(tmp_path), split="test"))[0]
    pose = item["poses"][0].numpy()
    np.testing.assert_allclose(pose[:3, 3], [0, -2, 0], atol=1e-6)  # (x, y, z) -> (x, -z, y)
    np.testing.assert_allclose(pose[:3, 2], [0, -1, 0], atol=1e-6)  # OpenGL +z points away from target
    assert float(item["focal"]) == 8.0  # camera_mat[0,0] * W / 2
    # the centre ray (integer pixel W/2, H/2) goes straight at the origin
    rays = pixelnerf_rays(item["poses"][:1], item["focal"], item["c"], 8, 8, 1.2, 4.0)
    np.testing.assert_allclose(rays[0, 4, 4, 3:6].numpy(), [0, 1, 0], atol=1e-6)


def test_mirror_view_is_horizontal_flip_for_symmetric_object(nmr_root: Path) -> None:
    imgs = NMRDataset(NMRDatasetConfig(root=str(nmr_root), split="train"))[0]["images"]
    for a, m, _ in triplet_views():
        # integer-pixel rays: column c mirrors to column W - c
        torch.testing.assert_close(
            imgs[m][..., 1:], torch.flip(imgs[a], dims=(-1,))[..., :-1], atol=0.02, rtol=0
        )
    assert (imgs[13] - imgs[1]).abs().mean() > 0.01  # the 180-degree view differs


def test_mir180_dataset_and_flat_export(nmr_root: Path, tmp_path: Path) -> None:
    ds = Mir180Dataset(nmr_root, "train")
    assert len(ds) == 10 * 2  # 2 train objects of 3
    item = ds[0]
    assert item["anchor"].shape == (3, 32, 32)
    export_flat_folders(nmr_root, ds.triplets[:3], tmp_path / "flat")
    assert sorted(p.name for p in (tmp_path / "flat" / "180_views").iterdir()) == [
        "0000.png",
        "0001.png",
        "0002.png",
    ]


def test_loader_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        NMRDataset(NMRDatasetConfig(root=str(tmp_path / "nope")))
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "softras_train.lst").write_text("missing_obj\n")
    with pytest.raises(DataError, match="missing_obj"):
        NMRDataset(NMRDatasetConfig(root=str(tmp_path)))


def _lego_to_nmr(lego: Path, out: Path, size: int = 64) -> tuple[np.ndarray, float]:
    meta = json.loads((lego / "transforms_train.json").read_text())
    imgs, masks, poses = [], [], []
    for fr in meta["frames"]:
        with Image.open(lego / (fr["file_path"].removeprefix("./") + ".png")) as im:
            rgba = (
                np.asarray(im.convert("RGBA").resize((size, size), Image.BILINEAR)).astype(np.float32) / 255
            )
        a = rgba[..., 3:]
        imgs.append(rgba[..., :3] * a + (1 - a))
        masks.append(a[..., 0] > 0.5)
        poses.append(np.array(fr["transform_matrix"]))  # Blender: OpenGL camera, z-up world
    focal = 0.5 * size / math.tan(0.5 * meta["camera_angle_x"])
    write_nmr_object(out / "lego" / "r", np.stack(imgs), np.stack(poses), focal, np.stack(masks))
    (out / "lego" / "softras_train.lst").write_text("r\n")
    return np.stack(poses), focal


def test_nmr_loader_on_real_lego_frames(shared_data: Path, tmp_path: Path) -> None:
    poses, focal = _lego_to_nmr(shared_data / "nerf_synthetic" / "lego", tmp_path)
    item = NMRDataset(NMRDatasetConfig(root=str(tmp_path)))[0]
    np.testing.assert_allclose(item["poses"].numpy(), poses, atol=1e-5)
    assert math.isclose(float(item["focal"]), focal, rel_tol=1e-5)
    # rays through the mask bbox centre pass near the scene origin (lego is centred)
    rays = pixelnerf_rays(item["poses"], item["focal"], item["c"], 64, 64, 2.0, 6.0)
    o, d = rays[:, 32, 32, :3], rays[:, 32, 32, 3:6]
    dist = torch.linalg.cross(-o, d).norm(dim=-1)  # distance from origin to the central ray
    assert float(dist.max()) < 0.5
    assert (item["bbox"][:, 2] > item["bbox"][:, 0]).all()


def test_srn_loader_on_nsvf_lego(shared_data: Path, tmp_path: Path) -> None:
    """NSVF lego is an SRN-style instance (rgb/, pose/ OpenCV c2w, multi-line intrinsics.txt)."""
    split = tmp_path / "lego_train"
    split.mkdir()
    (split / "inst").symlink_to(shared_data / "nsvf" / "lego")
    item = SRNDataset(SRNDatasetConfig(root=str(tmp_path), name="lego", split="train", image_size=64))[0]
    raw = np.loadtxt(sorted((shared_data / "nsvf" / "lego" / "pose").glob("*.txt"))[0])
    np.testing.assert_allclose(item["poses"][0].numpy(), raw @ np.diag([1.0, -1.0, -1.0, 1.0]), atol=1e-5)
    assert math.isclose(float(item["focal"]), 1111.1110311937682 * 64 / 800, rel_tol=1e-6)
    assert item["images"].shape[1:] == (3, 64, 64) and item["near"] == 0.8


def test_loader_and_mir180_on_common_synthetic_nmr(tmp_path: Path) -> None:
    from common.synthetic import write_nmr_dataset
    from smcl.object.data.mir180 import build_mir180

    root = write_nmr_dataset(tmp_path / "nmr", category="display", n_objects=3, image_size=32, seed=0)
    synset = next(p.name for p in Path(root).iterdir() if p.is_dir())
    counts = build_mir180(root, synset, tmp_path / "mir", split_fractions=(0.67, 0.0), seed=0)
    assert counts == {"train": 2, "val": 0, "test": 1}
    fs = tmp_path / "mir" / "For_Synthesis"
    obj = NMRDataset(NMRDatasetConfig(root=str(fs), split="train"))[0]
    assert obj["images"].shape == (24, 3, 32, 32) and obj["bbox"].shape == (24, 4)
    item = Mir180Dataset(fs, "train")[0]  # writer documents: image 24 - i is the left-right flip of image i
    torch.testing.assert_close(item["positive"], torch.flip(item["anchor"], dims=(-1,)), atol=2 / 255, rtol=0)
    assert (tmp_path / "mir" / f"viewlist_{synset}.txt").read_text().split()[2] == "0"


def test_pixel_centers_option_matches_common_writer_geometry(tmp_path: Path) -> None:
    """common.synthetic renders through pixel centres; with pixel_centers=True our integer-pixel rays hit the
    object exactly where the written mask says so, with pixelNeRF's default they are half a pixel off."""
    from common.synthetic import write_nmr_dataset
    from common.synthetic.multiview import nmr_object
    from common.synthetic.render import cast
    from smcl.object.data.nmr import pixelnerf_rays, pixelnerf_rays_at

    root = write_nmr_dataset(tmp_path / "nmr", category="display", n_objects=3, image_size=32, seed=0)
    obj_id, scene = nmr_object(0, "display", 0)
    wrong = {}
    for centers in (True, False):
        ds = NMRDataset(NMRDatasetConfig(root=str(root), split="train", pixel_centers=centers))
        assert ds.objects[0][1] == obj_id
        obj = ds[0]
        mask = np.asarray(Image.open(ds.object_dir(0) / "mask" / "0005.png")) > 0
        rays = pixelnerf_rays(obj["poses"][5].double(), obj["focal"], obj["c"].double(), 32, 32, 1.2, 4.0)
        o = rays[..., :3].reshape(-1, 3).numpy() @ T_WORLD[:3, :3]  # z-up world -> the writer's y-up world
        d = rays[..., 3:6].reshape(-1, 3).numpy() @ T_WORLD[:3, :3]
        hit = (cast(scene, o, d)[1] >= 0).reshape(32, 32)
        wrong[centers] = int((hit != mask).sum())
        rows, cols = torch.tensor([3, 17, 30]), torch.tensor([9, 0, 31])
        at = pixelnerf_rays_at(
            obj["poses"][[5, 5, 5]].double(), obj["focal"], obj["c"].double(), rows, cols, 1.2, 4.0
        )
        torch.testing.assert_close(at, rays[rows, cols])
    assert wrong[True] <= 1 and wrong[False] >= 10, wrong


def test_srn_loader_resizes_to_64_with_scaled_intrinsics(tmp_path: Path) -> None:
    """SRN views are area-resized to 64 by default (SMCL's head needs 64x64); focal, centre, bbox scale."""
    from common.synthetic import write_srn_dataset

    root = write_srn_dataset(
        tmp_path / "srn", name="displays", n_instances=(1, 0, 0), n_views=2, image_size=128
    )
    assert SRNDatasetConfig().image_size == 64
    small = SRNDataset(SRNDatasetConfig(root=str(root), name="displays"))[0]
    full = SRNDataset(SRNDatasetConfig(root=str(root), name="displays", image_size=128))[0]
    assert small["images"].shape == (2, 3, 64, 64) and full["images"].shape == (2, 3, 128, 128)
    # area interpolation by an exact factor 2 is the 2x2 mean
    pooled = torch.nn.functional.avg_pool2d(full["images"], 2)
    torch.testing.assert_close(small["images"], pooled, atol=1e-5, rtol=0)
    assert math.isclose(float(small["focal"]), 1.025 * 128 / 2, rel_tol=1e-6)
    torch.testing.assert_close(small["c"], full["c"] / 2)
    torch.testing.assert_close(small["bbox"], full["bbox"] / 2)
    torch.testing.assert_close(small["poses"], full["poses"])
    assert math.isclose(float(small["near"]), 0.8, rel_tol=1e-6) and math.isclose(
        float(small["far"]), 1.8, rel_tol=1e-6
    )


def test_common_writer_object_scale(tmp_path: Path) -> None:
    """object_scale (used by the demo) scales the objects about the origin: the same objects, masks ~s^2
    larger, the written masks still match rays cast at the scaled scene, mirror views still flips; the
    default scale writes the same bytes as before the option existed."""
    from dataclasses import replace

    from common.synthetic import write_nmr_dataset
    from common.synthetic.multiview import nmr_object, scaled
    from common.synthetic.render import cast

    kw = dict(category="display", n_objects=3, image_size=32, seed=0)
    base = write_nmr_dataset(tmp_path / "a", **kw)
    same = write_nmr_dataset(tmp_path / "b", object_scale=1.0, **kw)
    big = write_nmr_dataset(tmp_path / "c", object_scale=1.8, **kw)
    files = sorted(p.relative_to(base) for p in base.rglob("*") if p.is_file())
    assert all((base / f).read_bytes() == (same / f).read_bytes() for f in files)
    ds_a = NMRDataset(NMRDatasetConfig(root=str(base), pixel_centers=True))
    ds_c = NMRDataset(NMRDatasetConfig(root=str(big), pixel_centers=True))
    assert ds_a.objects == ds_c.objects

    def area(ds: NMRDataset) -> float:
        return float(
            np.mean([(np.asarray(Image.open(p)) > 0).mean() for p in ds.object_dir(0).glob("mask/*")])
        )

    assert 2.3 < area(ds_c) / area(ds_a) < 4.5
    obj = ds_c[0]
    torch.testing.assert_close(
        obj["images"][19], torch.flip(obj["images"][5], dims=(-1,)), atol=2 / 255, rtol=0
    )
    _, scene = nmr_object(0, "display", 0)
    rays = pixelnerf_rays(obj["poses"][7].double(), obj["focal"], obj["c"].double(), 32, 32, 1.2, 4.0)
    o = rays[..., :3].reshape(-1, 3).numpy() @ T_WORLD[:3, :3]
    d = rays[..., 3:6].reshape(-1, 3).numpy() @ T_WORLD[:3, :3]
    hit = (cast(replace(scene, shapes=scaled(scene.shapes, 1.8)), o, d)[1] >= 0).reshape(32, 32)
    mask = np.asarray(Image.open(ds_c.object_dir(0) / "mask" / "0007.png")) > 0
    assert int((hit != mask).sum()) <= 1
    with pytest.raises(ValueError, match="object_scale"):
        write_nmr_dataset(tmp_path / "d", object_scale=3.0, **kw)
