"""Multi-view object datasets in the layouts of SMCL spec §4.1-4.5: DVR/NMR, SRN, NeRF-Synthetic
(Blender) and NSVF, plus surface point clouds. Objects come from `objects.make_object` (y-up frame);
Blender/NSVF outputs are converted to a z-up world with T_world: (x, y, z) -> (x, -z, y).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from common.synthetic.files import (
    child_rng,
    format_matrix,
    prepare_root,
    write_image,
    write_json,
    write_lines,
    write_point_cloud,
)
from common.synthetic.objects import make_object
from common.synthetic.render import Light, Scene, Shape, intrinsics, look_at, render, sample_surface

# ShapeNet synset ids of the categories SMCL mentions
SYNSETS = {
    "display": ("03211117", "display,video display"),
    "car": ("02958343", "car,auto,automobile,machine,motorcar"),
    "chair": ("03001627", "chair"),
    "plane": ("02691156", "airplane,aeroplane,plane"),
    "bench": ("02828884", "bench"),
    "lamp": ("03636649", "lamp"),
    "speaker": ("03691459", "loudspeaker,speaker,speaker unit,loudspeaker system,speaker system"),
    "sofa": ("04256520", "sofa,couch,lounge"),
}
NMR_VIEWS = 24
NMR_DISTANCE = 2.732
NMR_ELEVATION_DEG = 30.0
NMR_FOCAL_NDC = 2.1875  # camera_mat[0, 0]: focal in units of half the image width
T_WORLD = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])  # y-up -> z-up
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])
# lights in the x = 0 plane keep mirror-symmetric objects mirror-symmetric in the images
OBJECT_LIGHTS = (Light((0.0, 1.0, 0.8), 0.55), Light((0.0, -0.3, -1.0), 0.25))


def object_scene(
    shapes: tuple[Shape, ...], background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> Scene:
    return Scene(shapes=shapes, lights=OBJECT_LIGHTS, ambient=0.3, headlight=0.25, background=background)


def scaled(shapes: tuple[Shape, ...], s: float) -> tuple[Shape, ...]:
    """Uniformly scale a shape list about the origin (textures keep their look)."""
    out = []
    for sh in shapes:
        tex = sh.texture
        tex = type(tex)(tex.kind, tex.color_a, tex.color_b, tex.scale / s, tex.freqs, tex.symmetry)
        out.append(
            Shape(
                sh.kind,
                tuple(float(v) * s for v in sh.center),
                tuple(float(v) * s for v in sh.dims),
                sh.rotation,
                tex,
                sh.label,
                sh.temperature,
                sh.shininess,
            )
        )
    return tuple(out)


def orbit_c2w(azimuth: float, elevation: float, distance: float) -> np.ndarray:
    """OpenCV c2w on a sphere around the origin, y-up world; azimuth 0 is on +z, positive towards +x."""
    eye = distance * np.array(
        [
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
            math.cos(elevation) * math.cos(azimuth),
        ]
    )
    return look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0]))


def nmr_c2w(view: int) -> np.ndarray:
    """Camera i of the NMR ring: azimuth 15 deg * i, elevation 30 deg, distance 2.732."""
    return orbit_c2w(math.radians(15.0 * view), math.radians(NMR_ELEVATION_DEG), NMR_DISTANCE)


def nmr_object(seed: int, category: str, index: int, *, mirror_symmetric: bool = True) -> tuple[str, Scene]:
    """Object id and scene of object `index` of `write_nmr_dataset` (lets tests re-create the geometry)."""
    rng = child_rng(seed, "nmr", category, index)
    obj_id = rng.bytes(16).hex()
    return obj_id, object_scene(make_object(rng, mirror_symmetric=mirror_symmetric))


def _split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    if n < 3:
        raise ValueError(f"need at least 3 objects for train/val/test splits, got n_objects={n}")
    n_val = max(1, round(n * fractions[1]))
    n_test = max(1, round(n * fractions[2]))
    return n - n_val - n_test, n_val, n_test


def write_nmr_dataset(
    root: str | Path,
    *,
    category: str = "display",
    n_objects: int = 6,
    image_size: int = 64,
    mirror_symmetric: bool = True,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    object_scale: float = 1.0,
) -> Path:
    """DVR/NMR layout: <root>/<synset>/<obj>/{image/NNNN.png, mask/NNNN.png, cameras.npz},
    <root>/<synset>/softras_{train,val,test}.lst and <root>/metadata.yaml (JSON text).

    cameras.npz holds per view i: world_mat_i (4x4 world->camera, OpenCV axes), world_mat_inv_i,
    camera_mat_i (4x4, normalised coordinates: image spans [-1, 1], focal NMR_FOCAL_NDC) and
    camera_mat_inv_i. With mirror_symmetric, image 24 - i is exactly the left-right flip of image i.
    object_scale scales every object about the origin. At 1 the objects fit in [-0.5, 0.5]^3 and cover
    about 6 % of a frame; at 1.8 about 22 % (mask bounding boxes about half the width and two thirds of
    the height, closer to real NMR renders); from 2 a few views touch the image border. Objects stay
    within 0.62 * object_scale of the origin, inside the loader's 1.2-4.0 depth bounds up to 2.4.
    """
    if category not in SYNSETS:
        raise ValueError(f"unknown category {category!r}; choose from {sorted(SYNSETS)}")
    if not 0 < object_scale <= 2.4:
        raise ValueError(f"object_scale must be in (0, 2.4], got {object_scale}")
    root = prepare_root(root, "write_nmr_dataset", n_objects=n_objects, image_size=image_size)
    synset, names = SYNSETS[category]
    cat_dir = root / synset
    n_tr, n_va, _ = _split_counts(n_objects, split_fractions)
    K = intrinsics(NMR_FOCAL_NDC * image_size / 2.0, image_size, image_size)
    cam_mat = np.diag([NMR_FOCAL_NDC, NMR_FOCAL_NDC, 1.0, 1.0])
    ids = []
    for k in range(n_objects):
        obj_id, scene = nmr_object(seed, category, k, mirror_symmetric=mirror_symmetric)
        if object_scale != 1.0:
            scene = replace(scene, shapes=scaled(scene.shapes, object_scale))
        ids.append(obj_id)
        cams: dict[str, np.ndarray] = {}
        for i in range(NMR_VIEWS):
            c2w = nmr_c2w(i)
            res = render(scene, K, c2w, image_size, image_size)
            write_image(cat_dir / obj_id / "image" / f"{i:04d}.png", res.rgb)
            write_image(cat_dir / obj_id / "mask" / f"{i:04d}.png", res.mask.astype(np.uint8) * 255)
            cams[f"world_mat_{i}"] = np.linalg.inv(c2w)
            cams[f"world_mat_inv_{i}"] = c2w
            cams[f"camera_mat_{i}"] = cam_mat
            cams[f"camera_mat_inv_{i}"] = np.linalg.inv(cam_mat)
        _savez_deterministic(cat_dir / obj_id / "cameras.npz", cams)
    write_lines(cat_dir / "softras_train.lst", ids[:n_tr])
    write_lines(cat_dir / "softras_val.lst", ids[n_tr : n_tr + n_va])
    write_lines(cat_dir / "softras_test.lst", ids[n_tr + n_va :])
    meta = {synset: {"id": synset, "name": names, "num_instances": n_objects}}
    (root / "metadata.yaml").write_text(json.dumps(meta, indent=2) + "\n")
    return root


def _savez_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez with fixed zip timestamps, so equal arrays give equal bytes."""
    import io
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, buf.getvalue())


def _random_hemisphere(rng: np.random.Generator, n: int, distance: float) -> list[np.ndarray]:
    az = rng.uniform(0, 2 * np.pi, n)
    el = np.radians(rng.uniform(10.0, 75.0, n))
    return [orbit_c2w(float(a), float(e), distance) for a, e in zip(az, el)]


def _ring(n: int, distance: float, elevation_deg: float = 30.0) -> list[np.ndarray]:
    return [orbit_c2w(2 * np.pi * k / n, math.radians(elevation_deg), distance) for k in range(n)]


def write_nerf_synthetic(
    root: str | Path,
    *,
    n_train: int = 8,
    n_val: int = 2,
    n_test: int = 4,
    size: int = 64,
    n_points: int = 2000,
    camera_angle_x: float = 0.6911112070083618,
    distance: float = 4.0,
    seed: int = 0,
) -> Path:
    """One Blender-layout scene in `root`: transforms_{train,val,test}.json (camera_angle_x, frames with
    file_path "./<split>/r_<i>" and 4x4 OpenGL c2w in a z-up world), <split>/r_<i>.png RGBA
    (alpha = coverage, colour black where empty), points3d.ply/.pcd sampled on the surface."""
    root = prepare_root(
        root,
        "write_nerf_synthetic",
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        size=size,
        n_points=n_points,
    )
    rng = child_rng(seed, "nerf_synthetic")
    shapes = scaled(make_object(rng, mirror_symmetric=False), 2.0)
    scene = object_scene(shapes, background=(0.0, 0.0, 0.0))
    focal = 0.5 * size / math.tan(0.5 * camera_angle_x)
    K = intrinsics(focal, size, size)
    splits = {
        "train": _random_hemisphere(rng, n_train, distance),
        "val": _random_hemisphere(rng, n_val, distance),
        "test": _ring(n_test, distance),
    }
    for split, poses in splits.items():
        frames = []
        for i, c2w in enumerate(poses):
            res = render(scene, K, c2w, size, size)
            rgba = np.concatenate([res.rgb, res.mask[..., None].astype(np.float64)], axis=2)
            write_image(root / split / f"r_{i}.png", rgba)
            gl = T_WORLD @ c2w @ CV_TO_GL
            frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.0, "transform_matrix": gl.tolist()})
        write_json(root / f"transforms_{split}.json", {"camera_angle_x": camera_angle_x, "frames": frames})
    pts = sample_surface(scene, n_points, rng) @ T_WORLD[:3, :3].T
    write_point_cloud(root / "points3d.ply", pts)
    write_point_cloud(root / "points3d.pcd", pts)
    return root


def write_nsvf(
    root: str | Path,
    *,
    n_train: int = 8,
    n_test: int = 4,
    width: int = 80,
    height: int = 48,
    fov_x: float = 0.9,
    distance: float = 4.0,
    n_points: int = 2000,
    seed: int = 0,
) -> Path:
    """One NSVF-layout scene in `root`: rgb/{0_,1_}NNNN.png (white background, no alpha; 0_ train,
    1_ test, numbered consecutively), pose/<same>.txt (4x4 OpenCV c2w, z-up world), intrinsics.txt
    (the 5-line variant of the NSVF lego sample: "f cx cy 0." / "0. 0. 0." / "0." / "1." / "H W"), bbox.txt (xmin ymin zmin xmax ymax zmax voxel),
    points3d.ply."""
    root = prepare_root(
        root, "write_nsvf", n_train=n_train, n_test=n_test, width=width, height=height, n_points=n_points
    )
    rng = child_rng(seed, "nsvf")
    shapes = scaled(make_object(rng, mirror_symmetric=False), 2.0)
    scene = object_scene(shapes)
    focal = 0.5 * width / math.tan(0.5 * fov_x)
    K = intrinsics(focal, width, height)
    idx = 0
    for prefix, poses in (("0", _random_hemisphere(rng, n_train, distance)), ("1", _ring(n_test, distance))):
        for c2w in poses:
            res = render(scene, K, c2w, height, width)
            write_image(root / "rgb" / f"{prefix}_{idx:04d}.png", res.rgb)
            (root / "pose").mkdir(parents=True, exist_ok=True)
            (root / "pose" / f"{prefix}_{idx:04d}.txt").write_text(format_matrix(T_WORLD @ c2w))
            idx += 1
    (root / "intrinsics.txt").write_text(
        f"{focal:.6f} {width / 2.0:.6f} {height / 2.0:.6f} 0.\n0. 0. 0.\n0.\n1.\n{height} {width}\n"
    )
    pts = sample_surface(scene, n_points, rng) @ T_WORLD[:3, :3].T
    lo, hi = pts.min(0) - 0.05, pts.max(0) + 0.05
    voxel = float((hi - lo).max() / 8.0)
    (root / "bbox.txt").write_text(" ".join(f"{v:.6f}" for v in [*lo, *hi, voxel]) + "\n")
    write_point_cloud(root / "points3d.ply", pts)
    return root


def write_srn_dataset(
    root: str | Path,
    *,
    name: str = "displays",
    n_instances: tuple[int, int, int] = (3, 1, 1),
    n_views: int = 12,
    image_size: int = 64,
    distance: float = 1.5,
    seed: int = 0,
) -> Path:
    """SRN layout: <root>/<name>_{train,val,test}/<instance>/{intrinsics.txt, rgb/NNNNNN.png,
    pose/NNNNNN.txt}; poses are 4x4 OpenCV c2w, white background, objects inside a sphere of radius
    0.7 (near/far 0.8/2.2 for distance 1.5); intrinsics first line "f cx cy 0.", last line "H W"."""
    root = prepare_root(
        root, "write_srn_dataset", n_views=n_views, image_size=image_size, n_train=n_instances[0]
    )
    focal = 1.025 * image_size
    K = intrinsics(focal, image_size, image_size)
    for split, count in zip(("train", "val", "test"), n_instances):
        for k in range(count):
            rng = child_rng(seed, "srn", name, split, k)
            inst = rng.bytes(16).hex()
            scene = object_scene(scaled(make_object(rng, mirror_symmetric=False), 0.8))
            poses = (
                _random_hemisphere(rng, n_views, distance) if split == "train" else _ring(n_views, distance)
            )
            d = root / f"{name}_{split}" / inst
            for v, c2w in enumerate(poses):
                res = render(scene, K, c2w, image_size, image_size)
                write_image(d / "rgb" / f"{v:06d}.png", res.rgb)
                (d / "pose").mkdir(parents=True, exist_ok=True)
                (d / "pose" / f"{v:06d}.txt").write_text(format_matrix(c2w))
            (d / "intrinsics.txt").write_text(
                f"{focal:.6f} {image_size / 2.0:.6f} {image_size / 2.0:.6f} 0.\n0. 0. 0.\n1.\n{image_size} {image_size}\n"
            )
    return root
