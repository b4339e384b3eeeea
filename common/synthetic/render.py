"""A small, deterministic, vectorised (numpy) ray caster for analytic textured shapes.

Why: every paper package needs image data with exactly known geometry (cameras, depth, masks, labels)
that is produced in seconds on a CPU and is identical for a given seed. Shapes are intersected
analytically (sphere, box, capped cylinder) or by sphere tracing of the exact SDF (torus), in each
shape's local frame; colour comes from a procedural texture of the local hit point and a simple
ambient + Lambert + Blinn-Phong model with directional lights (no shadows).

Conventions: cameras are given as 4x4 camera-to-world matrices in OpenCV axes (x right, y down,
z forward) and a 3x3 pixel intrinsic matrix; pixel (u, v) is sampled at its centre (u + 0.5, v + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("sphere", "box", "cylinder", "torus")
TEXTURES = ("solid", "checker", "stripes", "rings", "noise")
_EPS = 1e-6


@dataclass(frozen=True)
class Texture:
    """Procedural texture evaluated on the shape's local hit point.

    `symmetry` makes textures compatible with mirror-symmetric objects: "abs" evaluates on |x|
    (for shapes centred on the x = 0 mirror plane), "flip" evaluates on -x (the mirrored copy of a
    shape pair), "none" on x as is.
    """

    kind: str = "solid"
    color_a: tuple[float, float, float] = (0.8, 0.8, 0.8)
    color_b: tuple[float, float, float] = (0.2, 0.2, 0.2)
    scale: float = 4.0
    freqs: tuple[tuple[float, float, float, float], ...] = ()  # (fx, fy, fz, phase) for "noise"
    symmetry: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in TEXTURES:
            raise ValueError(f"unknown texture kind {self.kind!r}; expected one of {TEXTURES}")
        if self.symmetry not in ("none", "abs", "flip"):
            raise ValueError(f"unknown texture symmetry {self.symmetry!r}")

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """(N, 3) local points -> (N, 3) albedo in [0, 1]."""
        p = p.copy()
        if self.symmetry == "abs":
            p[:, 0] = np.abs(p[:, 0])
        elif self.symmetry == "flip":
            p[:, 0] = -p[:, 0]
        a = np.asarray(self.color_a, dtype=np.float64)
        b = np.asarray(self.color_b, dtype=np.float64)
        s = self.scale
        if self.kind == "solid":
            w = np.zeros(len(p))
        elif self.kind == "checker":
            w = (np.floor(p * s).sum(axis=1) % 2).astype(np.float64)
        elif self.kind == "stripes":
            w = 0.5 + 0.5 * np.tanh(6.0 * np.sin(np.pi * s * p[:, 1]))
        elif self.kind == "rings":
            w = 0.5 + 0.5 * np.tanh(6.0 * np.sin(np.pi * s * np.linalg.norm(p, axis=1)))
        else:  # noise: a smooth sum of sinusoids
            acc = np.zeros(len(p))
            for fx, fy, fz, ph in self.freqs:
                acc += np.sin(s * (fx * p[:, 0] + fy * p[:, 1] + fz * p[:, 2]) + ph)
            w = 0.5 + 0.5 * np.tanh(acc / max(1.0, np.sqrt(len(self.freqs))))
        return a[None] * (1.0 - w[:, None]) + b[None] * w[:, None]


@dataclass(frozen=True)
class Shape:
    """One analytic primitive in its local frame, placed by `center` and rotation `rotation`.

    dims: sphere (radius,), box (hx, hy, hz) half extents, cylinder (radius, half_height) with its
    axis along local y, torus (major_radius, minor_radius) around local y.
    `label` is the semantic class written into label maps, `temperature` feeds thermal images.
    """

    kind: str
    center: tuple[float, float, float]
    dims: tuple[float, ...]
    rotation: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    texture: Texture = field(default_factory=Texture)
    label: int = 1
    temperature: float = 0.5
    shininess: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown shape kind {self.kind!r}; expected one of {KINDS}")
        need = {"sphere": 1, "box": 3, "cylinder": 2, "torus": 2}[self.kind]
        if len(self.dims) != need:
            raise ValueError(f"{self.kind} needs {need} dims, got {self.dims}")

    @property
    def R(self) -> np.ndarray:
        return np.asarray(self.rotation, dtype=np.float64)

    @property
    def c(self) -> np.ndarray:
        return np.asarray(self.center, dtype=np.float64)

    def bounding_radius(self) -> float:
        """Radius of a sphere around `center` that contains the shape."""
        d = self.dims
        if self.kind == "sphere":
            return d[0]
        if self.kind == "box":
            return float(np.linalg.norm(d))
        if self.kind == "cylinder":
            return float(np.hypot(d[0], d[1]))
        return d[0] + d[1]


@dataclass(frozen=True)
class Light:
    """Directional light; `direction` points from the scene towards the light (world frame)."""

    direction: tuple[float, float, float]
    intensity: float = 0.8


@dataclass(frozen=True)
class Scene:
    """Shapes plus lighting; background is used where no shape is hit."""

    shapes: tuple[Shape, ...]
    lights: tuple[Light, ...] = (Light((0.3, 1.0, 0.6), 0.7),)
    ambient: float = 0.35
    headlight: float = 0.0  # extra light along the viewing direction (view-independent look)
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass
class RenderResult:
    """Per-pixel outputs (H, W, ...) of one view; `depth` is the z-depth in the camera frame, `dist`
    the distance along the ray; both are +inf on background. `label` is 0 on background."""

    rgb: np.ndarray  # (H, W, 3) float in [0, 1]
    mask: np.ndarray  # (H, W) bool
    depth: np.ndarray  # (H, W) float
    dist: np.ndarray  # (H, W) float
    label: np.ndarray  # (H, W) int
    shape_id: np.ndarray  # (H, W) int, -1 on background
    normal: np.ndarray  # (H, W, 3) world normals facing the camera
    temperature: np.ndarray  # (H, W) float, 0 on background


def rotation_matrix(axis: str, angle: float) -> np.ndarray:
    """Right-handed rotation by `angle` radians about the x, y or z axis."""
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    raise ValueError(f"axis must be x, y or z, got {axis!r}")


def as_rotation(m: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    """Numpy 3x3 -> the nested tuple stored in a frozen Shape."""
    return tuple(tuple(float(v) for v in row) for row in np.asarray(m))


def pixel_rays(K: np.ndarray, c2w: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """World-space ray origins and unit directions (H*W, 3) through pixel centres; OpenCV c2w."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    d_cam = pix @ np.linalg.inv(K).T
    d = d_cam @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(c2w[:3, 3], d.shape).copy()
    return o, d


def _sphere(o: np.ndarray, d: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    b = (o * d).sum(1)
    c = (o * o).sum(1) - r * r
    disc = b * b - c
    t = np.full(len(o), np.inf)
    ok = disc >= 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    t0, t1 = -b - sq, -b + sq
    t = np.where(ok & (t0 > _EPS), t0, np.where(ok & (t1 > _EPS), t1, np.inf))
    p = o + d * np.where(np.isfinite(t), t, 0.0)[:, None]
    return t, p / r


def _box(o: np.ndarray, d: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
    t1, t2 = (-h - o) * inv, (h - o) * inv
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    tn, tf = tmin.max(1), tmax.min(1)
    hit = tf >= np.maximum(tn, _EPS)
    t = np.where(hit, np.where(tn > _EPS, tn, tf), np.inf)
    ax = np.where(tn > _EPS, tmin.argmax(1), tmax.argmin(1))
    n = np.zeros_like(o)
    n[np.arange(len(o)), ax] = 1.0
    n *= -np.sign(d[np.arange(len(o)), ax])[:, None]
    return t, n


def _cylinder(o: np.ndarray, d: np.ndarray, r: float, hh: float) -> tuple[np.ndarray, np.ndarray]:
    n_rays = len(o)
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - r * r
    disc = b * b - a * c
    ok = (disc >= 0) & (a > 1e-12)
    sq = np.sqrt(np.where(ok, disc, 0.0))
    aa = np.where(a > 1e-12, a, 1.0)
    cands, norms = [], []
    for sgn in (-1.0, 1.0):
        t = (-b + sgn * sq) / aa
        y = o[:, 1] + t * d[:, 1]
        valid = ok & (t > _EPS) & (np.abs(y) <= hh)
        cands.append(np.where(valid, t, np.inf))
        p = o + d * t[:, None]
        nn = np.stack([p[:, 0], np.zeros(n_rays), p[:, 2]], 1) / r
        norms.append(nn)
    dy = np.where(np.abs(d[:, 1]) < 1e-12, 1e-12, d[:, 1])
    for cap in (-hh, hh):
        t = (cap - o[:, 1]) / dy
        p = o + d * t[:, None]
        valid = (t > _EPS) & (p[:, 0] ** 2 + p[:, 2] ** 2 <= r * r)
        cands.append(np.where(valid, t, np.inf))
        nn = np.zeros_like(o)
        nn[:, 1] = np.sign(cap)
        norms.append(nn)
    ts = np.stack(cands, 1)
    k = ts.argmin(1)
    t = ts[np.arange(n_rays), k]
    n = np.stack(norms, 1)[np.arange(n_rays), k]
    return t, n


def _torus(o: np.ndarray, d: np.ndarray, big: float, small: float) -> tuple[np.ndarray, np.ndarray]:
    n_rays = len(o)
    t = np.full(n_rays, np.inf)
    n = np.zeros_like(o)
    rb = big + small
    b = (o * d).sum(1)
    disc = b * b - ((o * o).sum(1) - rb * rb)
    idx = np.nonzero(disc > 0)[0]
    if len(idx) == 0:
        return t, n
    sq = np.sqrt(disc[idx])
    t_lo = np.maximum(-b[idx] - sq, 0.0)
    t_hi = -b[idx] + sq
    oo, dd = o[idx], d[idx]
    tt = t_lo.copy()
    for _ in range(96):  # sphere tracing of the exact (1-Lipschitz) SDF
        p = oo + dd * tt[:, None]
        q = np.hypot(np.hypot(p[:, 0], p[:, 2]) - big, p[:, 1])
        tt = np.minimum(tt + (q - small), t_hi + 1.0)
    p = oo + dd * tt[:, None]
    rxz = np.hypot(p[:, 0], p[:, 2])
    sdf = np.hypot(rxz - big, p[:, 1]) - small
    hit = (np.abs(sdf) < 1e-4) & (tt <= t_hi) & (tt > _EPS)
    ring = np.stack([p[:, 0], np.zeros(len(p)), p[:, 2]], 1) * (big / np.maximum(rxz, 1e-12))[:, None]
    nn = p - ring
    nn /= np.maximum(np.linalg.norm(nn, axis=1, keepdims=True), 1e-12)
    t[idx[hit]] = tt[hit]
    n[idx[hit]] = nn[hit]
    return t, n


def intersect_shape(shape: Shape, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World rays (N, 3) -> hit distance t (N,) (+inf on miss) and local-frame normals (N, 3)."""
    R = shape.R
    ol = (o - shape.c) @ R  # R^T (o - c) for row vectors
    dl = d @ R
    if shape.kind == "sphere":
        return _sphere(ol, dl, shape.dims[0])
    if shape.kind == "box":
        return _box(ol, dl, np.asarray(shape.dims, dtype=np.float64))
    if shape.kind == "cylinder":
        return _cylinder(ol, dl, *shape.dims)
    return _torus(ol, dl, *shape.dims)


def cast(scene: Scene, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit over all shapes: t (N,), shape index (N,) (-1 on miss), world normal (N, 3)."""
    n_rays = len(o)
    best_t = np.full(n_rays, np.inf)
    best_i = np.full(n_rays, -1, dtype=np.int64)
    best_n = np.zeros((n_rays, 3))
    for i, shape in enumerate(scene.shapes):
        # cheap bounding-sphere rejection keeps scenes with many shapes fast
        oc = o - shape.c
        b = (oc * d).sum(1)
        disc = b * b - ((oc * oc).sum(1) - shape.bounding_radius() ** 2)
        cand = np.nonzero((disc >= 0) & (-b + np.sqrt(np.maximum(disc, 0)) > _EPS))[0]
        if len(cand) == 0:
            continue
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            t, nl = intersect_shape(shape, o[cand], d[cand])
        closer = t < best_t[cand]
        sel = cand[closer]
        best_t[sel] = t[closer]
        best_i[sel] = i
        best_n[sel] = nl[closer] @ shape.R.T
    return best_t, best_i, best_n


def shade(scene: Scene, o: np.ndarray, d: np.ndarray, t: np.ndarray, idx: np.ndarray, n: np.ndarray):
    """Colour, label and temperature per ray from the nearest hits of `cast`."""
    n_rays = len(o)
    rgb = np.broadcast_to(np.asarray(scene.background, dtype=np.float64), (n_rays, 3)).copy()
    label = np.zeros(n_rays, dtype=np.int64)
    temp = np.zeros(n_rays)
    hit = idx >= 0
    # normals face the viewer
    flip = (n * d).sum(1) > 0
    n = np.where(flip[:, None], -n, n)
    p = o + d * np.where(hit, t, 0.0)[:, None]
    for i, shape in enumerate(scene.shapes):
        sel = np.nonzero(idx == i)[0]
        if len(sel) == 0:
            continue
        pl = (p[sel] - shape.c) @ shape.R
        albedo = shape.texture(pl)
        nn = n[sel]
        light = np.full(len(sel), scene.ambient)
        spec = np.zeros(len(sel))
        for lt in scene.lights:
            ldir = np.asarray(lt.direction, dtype=np.float64)
            ldir = ldir / np.linalg.norm(ldir)
            light += lt.intensity * np.clip(nn @ ldir, 0.0, None)
            if shape.shininess > 0:
                h = ldir[None] - d[sel]
                h /= np.linalg.norm(h, axis=1, keepdims=True)
                spec += 0.3 * lt.intensity * np.clip((nn * h).sum(1), 0.0, None) ** shape.shininess
        if scene.headlight > 0:
            light += scene.headlight * np.clip(-(nn * d[sel]).sum(1), 0.0, None)
        rgb[sel] = np.clip(albedo * light[:, None] + spec[:, None], 0.0, 1.0)
        label[sel] = shape.label
        temp[sel] = shape.temperature
    return rgb, label, temp, n


def render(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int, width: int) -> RenderResult:
    """Render one view; K is the 3x3 pixel intrinsic matrix, c2w a 4x4 OpenCV camera-to-world."""
    K = np.asarray(K, dtype=np.float64)
    c2w = np.asarray(c2w, dtype=np.float64)
    if K.shape != (3, 3) or c2w.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"render: K must be 3x3 and c2w 3x4/4x4, got {K.shape} and {c2w.shape}")
    o, d = pixel_rays(K, c2w, height, width)
    t, idx, n = cast(scene, o, d)
    rgb, label, temp, n = shade(scene, o, d, t, idx, n)
    z_axis = c2w[:3, 2]
    depth = np.where(idx >= 0, t * (d @ z_axis), np.inf)
    hw = (height, width)
    return RenderResult(
        rgb=rgb.reshape(*hw, 3),
        mask=(idx >= 0).reshape(hw),
        depth=depth.reshape(hw),
        dist=t.reshape(hw),
        label=label.reshape(hw),
        shape_id=idx.reshape(hw),
        normal=n.reshape(*hw, 3),
        temperature=temp.reshape(hw),
    )


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """4x4 OpenCV camera-to-world (x right, y down, z forward) looking from `eye` at `target`."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)  # right = forward x up  (with y down)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to `up`")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def intrinsics(focal: float, width: int, height: int) -> np.ndarray:
    """Pixel intrinsics with the principal point at the image centre."""
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def sample_surface(scene: Scene, n_points: int, rng: np.random.Generator, radius: float = 3.0) -> np.ndarray:
    """(n_points, 3) points on the visible outer surface: first hits of random rays shot inwards
    from a sphere of `radius` around the origin towards random points near the centre."""
    pts: list[np.ndarray] = []
    have = 0
    for _ in range(50):
        m = max(4 * n_points, 1024)
        o = rng.normal(size=(m, 3))
        o = radius * o / np.linalg.norm(o, axis=1, keepdims=True)
        target = rng.uniform(-0.5, 0.5, size=(m, 3)) * radius / 3.0
        d = target - o
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        t, idx, _ = cast(scene, o, d)
        ok = idx >= 0
        pts.append(o[ok] + d[ok] * t[ok, None])
        have += int(ok.sum())
        if have >= n_points:
            break
    allp = np.concatenate(pts, 0) if pts else np.zeros((0, 3))
    if len(allp) < n_points:
        raise RuntimeError(f"sample_surface: only {len(allp)} of {n_points} rays hit the scene")
    return allp[:n_points]
