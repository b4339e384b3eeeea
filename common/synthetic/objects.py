"""Random composite objects (ShapeNet-"display"-like: screen, stand, base, ornaments) built from
textured primitives, optionally exactly mirror-symmetric about the x = 0 plane.

Why mirror symmetry: SMCL's Mir-180 triplets assume that view i and view 24 - i of a canonically
aligned object are mirror images; with the NMR camera ring (azimuth about the y axis, azimuth 0 on
the +z axis) that holds exactly when the object, its textures and the lights are symmetric under
x -> -x. Objects live in a y-up frame and fit inside the cube [-0.5, 0.5]^3 (the NMR/DVR scale).
"""

from __future__ import annotations

import numpy as np

from common.synthetic.render import Shape, Texture, as_rotation, rotation_matrix


def random_color(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.95) -> tuple[float, float, float]:
    """A saturated-ish random colour."""
    c = rng.uniform(lo, hi, size=3)
    c[rng.integers(3)] = rng.uniform(0.05, 0.3)
    return tuple(float(v) for v in c)


def random_texture(rng: np.random.Generator, symmetry: str = "none") -> Texture:
    """One of the procedural textures with random colours and frequency."""
    kind = str(rng.choice(["solid", "checker", "stripes", "rings", "noise"]))
    freqs = tuple(
        (float(a), float(b), float(c), float(ph))
        for a, b, c, ph in zip(
            rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0, 2 * np.pi, 3)
        )
    )
    return Texture(
        kind=kind,
        color_a=random_color(rng),
        color_b=random_color(rng),
        scale=float(rng.uniform(3.0, 9.0)),
        freqs=freqs,
        symmetry=symmetry,
    )


def mirrored(shape: Shape) -> Shape:
    """The x -> -x mirror image of `shape` (centre, orientation and texture)."""
    M = np.diag([-1.0, 1.0, 1.0])
    c = np.asarray(shape.center) * np.array([-1.0, 1.0, 1.0])
    tex = shape.texture
    sym = {"none": "flip", "flip": "none", "abs": "abs"}[tex.symmetry]
    return Shape(
        kind=shape.kind,
        center=tuple(float(v) for v in c),
        dims=shape.dims,
        rotation=as_rotation(M @ shape.R @ M),
        texture=Texture(tex.kind, tex.color_a, tex.color_b, tex.scale, tex.freqs, sym),
        label=shape.label,
        temperature=shape.temperature,
        shininess=shape.shininess,
    )


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _ornament(rng: np.random.Generator, symmetry: str) -> Shape:
    kind = str(rng.choice(["sphere", "torus", "cylinder", "box"]))
    s = float(rng.uniform(0.06, 0.11))
    dims = {
        "sphere": (s,),
        "torus": (s, s * 0.45),
        "cylinder": (s * 0.6, s),
        "box": (s, s * 0.7, s * 0.8),
    }[kind]
    center = (float(rng.uniform(0.22, 0.36)), float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.3, 0.3)))
    return Shape(
        kind=kind,
        center=center,
        dims=dims,
        rotation=as_rotation(_random_rotation(rng)),
        texture=random_texture(rng, symmetry),
        shininess=float(rng.choice([0.0, 16.0])),
    )


def make_object(rng: np.random.Generator, *, mirror_symmetric: bool = True) -> tuple[Shape, ...]:
    """A random display-like object in [-0.5, 0.5]^3 (y up, front facing +z).

    With mirror_symmetric every part is either centred on x = 0 with an x-even texture and an
    orientation that commutes with the mirror (rotation about x), or has an exact mirrored twin.
    Without it the parts get independent textures and an extra off-centre part.
    """
    sym = "abs" if mirror_symmetric else "none"
    tilt = as_rotation(rotation_matrix("x", float(rng.uniform(-0.25, 0.25))))
    hx, hy, hz = (
        float(rng.uniform(0.28, 0.42)),
        float(rng.uniform(0.18, 0.28)),
        float(rng.uniform(0.03, 0.08)),
    )
    top = float(rng.uniform(0.4, 0.47))
    body_y = top - hy
    shapes = [
        Shape("box", (0.0, body_y, 0.0), (hx, hy, hz), tilt, random_texture(rng, sym), shininess=16.0),
    ]
    stand_top = body_y - hy * 0.8
    base_y = -0.45
    stand_h = max((stand_top - base_y) / 2, 0.03)
    shapes.append(
        Shape(
            "cylinder",
            (0.0, (stand_top + base_y) / 2, -0.02),
            (float(rng.uniform(0.05, 0.075)), stand_h),
            texture=random_texture(rng, sym),
        )
    )
    if rng.uniform() < 0.5:
        base = Shape(
            "box", (0.0, base_y, 0.0), (float(rng.uniform(0.15, 0.3)), 0.03, float(rng.uniform(0.1, 0.2)))
        )
    else:
        base = Shape("cylinder", (0.0, base_y, 0.0), (float(rng.uniform(0.12, 0.22)), 0.03))
    shapes.append(Shape(base.kind, base.center, base.dims, texture=random_texture(rng, sym), shininess=8.0))
    # a torus "logo" centred on the mirror plane, its axis along z (rotation about x keeps symmetry)
    if rng.uniform() < 0.6:
        shapes.append(
            Shape(
                "torus",
                (0.0, body_y, hz + 0.02),
                (float(rng.uniform(0.05, 0.1)), 0.02),
                as_rotation(rotation_matrix("x", np.pi / 2)),
                random_texture(rng, sym),
            )
        )
    for _ in range(int(rng.integers(1, 3))):
        orn = _ornament(rng, "none")
        shapes.append(orn)
        if mirror_symmetric:
            shapes.append(mirrored(orn))
        else:
            twin = mirrored(orn)
            shapes.append(
                Shape(twin.kind, twin.center, twin.dims, twin.rotation, random_texture(rng, "none"))
            )
    if not mirror_symmetric:
        shapes.append(
            Shape(
                "sphere",
                (float(rng.uniform(0.1, 0.35)), float(rng.uniform(-0.35, 0.0)), float(rng.uniform(0.1, 0.3))),
                (float(rng.uniform(0.06, 0.12)),),
                texture=random_texture(rng),
            )
        )
    return tuple(shapes)
