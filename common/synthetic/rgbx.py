"""Indoor RGB-X segmentation scenes in the CMX folder layout (SMMCL spec §4): procedural rooms
(floor, walls, ceiling, furniture boxes, objects, pictures) with per-pixel labels, 16-bit depth or a
thermal-like channel, and a low-light version of the RGB (exposure/gamma drop + noise).

Labels are stored LLRGBD-style: 0 = void, 1..K the classes of CLASS_NAMES; the loader maps gt - 1
(0 -> 255 ignore) for depth data. Thermal data follow MFNet: class 0 ("unlabelled") is a real class,
no gt transform. meta.yaml records which convention applies.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

from common.synthetic.files import child_rng, hw, prepare_root, write_image, write_lines
from common.synthetic.multiview import _savez_deterministic
from common.synthetic.objects import random_color, random_texture
from common.synthetic.render import (
    Light,
    Scene,
    Shape,
    Texture,
    as_rotation,
    intrinsics,
    look_at,
    render,
    rotation_matrix,
)

CLASS_NAMES = ("wall", "floor", "ceiling", "furniture", "object", "picture")  # stored as labels 1..6
VOID = 0
ROOM_HALF = 2.0
ROOM_HEIGHT = 2.6
DEPTH_SCALE = 1000.0  # Depth PNG units per metre (uint16 millimetres)
DEPTH_UINT8_RANGE = 6.0  # metres mapped to grey 0..255 with depth_format="uint8"


def _tex(rng: np.random.Generator, kind: str | None = None) -> Texture:
    t = random_texture(rng)
    if kind is not None:
        t = Texture(kind, t.color_a, t.color_b, t.scale, t.freqs)
    return t


def make_room(rng: np.random.Generator) -> Scene:
    """A random furnished room in a y-up world with the floor at y = 0 and walls at |x|, |z| = 2."""
    h, R = ROOM_HEIGHT, ROOM_HALF
    wall_tex = Texture(
        "noise",
        random_color(rng, 0.6, 0.95),
        random_color(rng, 0.5, 0.9),
        2.0,
        ((1, 0.5, 0.3, 0.0), (0.2, 1.0, 0.7, 1.0)),
    )
    shapes = [
        Shape(
            "box",
            (0.0, -0.05, 0.0),
            (R + 0.1, 0.05, R + 0.1),
            texture=_tex(rng, "checker"),
            label=2,
            temperature=0.35,
        ),
        Shape(
            "box",
            (0.0, h + 0.05, 0.0),
            (R + 0.1, 0.05, R + 0.1),
            texture=Texture("solid", (0.9, 0.9, 0.88)),
            label=3,
            temperature=0.3,
        ),
    ]
    for sx, sz in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        c = (sx * (R + 0.05), h / 2, sz * (R + 0.05))
        dims = (0.05, h / 2 + 0.1, R + 0.1) if sx else (R + 0.1, h / 2 + 0.1, 0.05)
        shapes.append(Shape("box", c, dims, texture=wall_tex, label=1, temperature=0.3))
    # furniture along the walls, objects on top of it
    for _ in range(int(rng.integers(2, 5))):
        side = int(rng.integers(4))
        hx, hy, hz = rng.uniform(0.25, 0.6), rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.4)
        along = rng.uniform(-R + 0.7, R - 0.7)
        off = R - max(hx, hz) - 0.02
        cx, cz = [(off, along), (-off, along), (along, off), (along, -off)][side]
        shapes.append(
            Shape(
                "box",
                (float(cx), float(hy), float(cz)),
                (float(hx), float(hy), float(hz)),
                as_rotation(np.eye(3)),
                _tex(rng),
                label=4,
                temperature=0.4,
            )
        )
        if rng.uniform() < 0.8:
            kind = str(rng.choice(["sphere", "cylinder", "torus"]))
            s = float(rng.uniform(0.08, 0.18))
            dims = {"sphere": (s,), "cylinder": (s * 0.6, s), "torus": (s, s * 0.35)}[kind]
            lift = {"sphere": s, "cylinder": s, "torus": s * 0.35}[kind]
            shapes.append(
                Shape(
                    kind,
                    (float(cx), float(2 * hy + lift), float(cz)),
                    dims,
                    texture=_tex(rng),
                    label=5,
                    temperature=float(rng.uniform(0.7, 1.0)),
                    shininess=16.0,
                )
            )
    # pictures on walls
    for _ in range(int(rng.integers(1, 3))):
        side = int(rng.integers(4))
        along, y = float(rng.uniform(-1.2, 1.2)), float(rng.uniform(1.3, 1.9))
        w, hh = float(rng.uniform(0.2, 0.45)), float(rng.uniform(0.15, 0.3))
        off = R - 0.02
        center, dims = [
            ((off, y, along), (0.02, hh, w)),
            ((-off, y, along), (0.02, hh, w)),
            ((along, y, off), (w, hh, 0.02)),
            ((along, y, -off), (w, hh, 0.02)),
        ][side]
        shapes.append(Shape("box", center, dims, texture=_tex(rng, "stripes"), label=6, temperature=0.32))
    # unlabelled clutter on the floor (void pixels)
    shapes.append(
        Shape(
            "cylinder",
            (float(rng.uniform(-0.6, 0.6)), 0.15, float(rng.uniform(-0.6, 0.6))),
            (float(rng.uniform(0.05, 0.12)), 0.15),
            as_rotation(rotation_matrix("y", 0.0)),
            _tex(rng),
            label=VOID,
            temperature=0.6,
        )
    )
    light = Light((float(rng.uniform(-0.5, 0.5)), 1.0, float(rng.uniform(-0.5, 0.5))), 0.6)
    return Scene(
        tuple(shapes), lights=(light, Light((0.3, -0.2, 0.4), 0.2)), ambient=0.35, background=(0, 0, 0)
    )


def room_camera(rng: np.random.Generator) -> np.ndarray:
    """OpenCV c2w inside the room, looking roughly horizontally and slightly down."""
    eye = np.array([rng.uniform(-0.8, 0.8), rng.uniform(1.1, 1.6), rng.uniform(-0.8, 0.8)])
    ang = rng.uniform(0, 2 * np.pi)
    target = np.array([1.5 * math.sin(ang), rng.uniform(0.3, 0.9), 1.5 * math.cos(ang)])
    return look_at(eye, target, np.array([0.0, 1.0, 0.0]))


def darken(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark version of a [0, 1] image: exposure drop, gamma, colour cast and signal-dependent noise."""
    exposure = rng.uniform(0.08, 0.2)
    gamma = rng.uniform(1.2, 1.6)
    cast = 1.0 + rng.uniform(-0.15, 0.15, size=3)
    dark = exposure * np.power(rgb, gamma) * cast
    noise = rng.normal(size=rgb.shape) * np.sqrt(0.0004 + 0.01 * dark)
    return np.clip(dark + noise, 0.0, 1.0)


def thermal_image(
    res_temp: np.ndarray, mask: np.ndarray, depth: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Thermal-like grey image: per-surface temperature, mild distance falloff, blur-free noise."""
    d = np.where(mask, depth, 10.0)
    t = res_temp * (1.0 - 0.05 * np.clip(d, 0, 6))
    return np.clip(t + rng.normal(0.0, 0.02, size=t.shape), 0.0, 1.0)


def write_rgbx_scenes(
    root: str | Path,
    *,
    modality: str = "depth",
    depth_format: str = "uint16",
    low_light: bool = True,
    n_train: int = 8,
    n_test: int = 4,
    size: int | tuple[int, int] = (60, 80),
    fov_x_deg: float = 70.0,
    seed: int = 0,
) -> Path:
    """CMX layout in `root`: RGB/<name>.png, Depth/<name>.png (uint16 millimetres, or with
    depth_format="uint8" grey levels of DEPTH_UINT8_RANGE metres, as 8-bit LLRGBD-style loaders read) or
    Thermal/<name>.png (uint8), Label/<name>.png (uint8), RGB_normal/<name>.png (the well-lit image,
    when low-light), train.txt / test.txt (bare stems), meta.yaml, cameras.npz (K_<name> 3x3 pixel
    intrinsics and c2w_<name> 4x4 OpenCV camera-to-world; world y up, floor at y = 0)."""
    if modality not in ("depth", "thermal"):
        raise ValueError(f"modality must be 'depth' or 'thermal', got {modality!r}")
    if depth_format not in ("uint16", "uint8"):
        raise ValueError(f"depth_format must be 'uint16' or 'uint8', got {depth_format!r}")
    height, width = hw(size)
    root = prepare_root(root, "write_rgbx_scenes", n_train=n_train, n_test=n_test, height=height, width=width)
    K = intrinsics(0.5 * width / math.tan(math.radians(fov_x_deg) / 2), width, height)
    aux_dir = "Depth" if modality == "depth" else "Thermal"
    names = [f"{i:05d}" for i in range(n_train + n_test)]
    cams: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        rng = child_rng(seed, "rgbx", i)
        scene = make_room(rng)
        c2w = room_camera(rng)
        res = render(scene, K, c2w, height, width)
        label = res.label.astype(np.uint8)
        if low_light:
            write_image(root / "RGB" / f"{name}.png", darken(res.rgb, rng))
            write_image(root / "RGB_normal" / f"{name}.png", res.rgb)
        else:
            write_image(root / "RGB" / f"{name}.png", res.rgb)
        if modality == "depth":
            if depth_format == "uint16":
                d_img = np.where(res.mask, np.rint(res.depth * DEPTH_SCALE), 0).astype(np.uint16)
            else:
                d_img = np.rint(np.clip(np.where(res.mask, res.depth, 0) / DEPTH_UINT8_RANGE, 0, 1) * 255)
                d_img = d_img.astype(np.uint8)
            write_image(root / aux_dir / f"{name}.png", d_img)
        else:
            write_image(
                root / aux_dir / f"{name}.png", thermal_image(res.temperature, res.mask, res.depth, rng)
            )
        write_image(root / "Label" / f"{name}.png", label)
        cams[f"K_{name}"] = K
        cams[f"c2w_{name}"] = c2w
    write_lines(root / "train.txt", names[:n_train])
    write_lines(root / "test.txt", names[n_train:])
    _savez_deterministic(root / "cameras.npz", cams)
    if modality == "depth":  # LLRGBD convention
        meta = {
            "num_classes": len(CLASS_NAMES),
            "class_names": list(CLASS_NAMES),
            "gt_transform": True,
            "label_note": "stored 0 = void, 1..K classes; use gt - 1 with 0 -> 255 (ignore)",
        }
    else:  # MFNet convention: 0 is a class
        meta = {
            "num_classes": len(CLASS_NAMES) + 1,
            "class_names": ["unlabelled", *CLASS_NAMES],
            "gt_transform": False,
            "label_note": "stored 0 = unlabelled (a class), 1..K classes; no gt transform",
        }
    meta.update(
        {
            "modality": modality,
            "x_dir": aux_dir,
            "x_is_single_channel": True,
            "depth_format": depth_format if modality == "depth" else None,
            "depth_scale": (DEPTH_SCALE if depth_format == "uint16" else 255 / DEPTH_UINT8_RANGE)
            if modality == "depth"
            else None,
            "low_light": bool(low_light),
            "image_size": [height, width],
            "ignore_index": 255,
            "world": "y up, floor plane y = 0; cameras.npz c2w in OpenCV axes",
        }
    )
    (root / "meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return root
