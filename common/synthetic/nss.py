"""Neurally-synthesized-scene (NSS) look-alikes for NVS-SQA (spec §3): a camera path through one
procedural scene rendered cleanly ("gt") and by several "methods" with graded distortions (blur,
noise, floaters, ghosting, colour shift, temporal flicker), in the ns-render layout
renders/<scene>__<method>/00000.png, plus a small labelled benchmark bank
benchmark_bank/<dataset>/<Scene>/<method>/frames/frame0000000.jpg with a flat labels JSON
(tr_keys, tt_keys, labels "<dataset>+<Scene>+<method>" -> JOD offset by the reference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from common.synthetic.files import child_rng, hw, prepare_root, write_image, write_json
from common.synthetic.multiview import orbit_c2w, scaled
from common.synthetic.objects import make_object, random_texture
from common.synthetic.render import Light, Scene, Shape, Texture, intrinsics, render


@dataclass(frozen=True)
class Distortion:
    """Strengths in [0, 1] of each artefact type (0 = clean)."""

    blur: float = 0.0
    noise: float = 0.0
    floaters: float = 0.0
    ghosting: float = 0.0
    color_shift: float = 0.0
    flicker: float = 0.0

    def scaled(self, s: float) -> Distortion:
        return Distortion(**{k: v * s for k, v in asdict(self).items()})

    @property
    def severity(self) -> float:
        """A scalar quality proxy (0 = clean), used for JOD-like labels."""
        w = {"blur": 1.0, "noise": 0.8, "floaters": 0.9, "ghosting": 0.7, "color_shift": 0.5, "flicker": 0.6}
        return float(sum(w[k] * v for k, v in asdict(self).items()))


def as_distortion(name: str, params: Distortion | Mapping[str, float]) -> Distortion:
    """Accept a Distortion or a plain dict of strengths (e.g. from YAML); unknown keys are errors."""
    if isinstance(params, Distortion):
        return params
    bad = set(params) - set(Distortion.__dataclass_fields__)
    if bad:
        raise ValueError(
            f"method {name!r}: unknown distortion keys {sorted(bad)}; valid: {list(Distortion.__dataclass_fields__)}"
        )
    return Distortion(**{k: float(v) for k, v in params.items()})


MIXED = Distortion(blur=0.6, noise=0.4, floaters=0.5, ghosting=0.4, color_shift=0.4, flicker=0.4)
DEFAULT_METHODS: dict[str, Distortion] = {
    "method_q1": MIXED.scaled(0.15),
    "method_q2": MIXED.scaled(0.4),
    "method_q3": MIXED.scaled(0.7),
    "method_q4": MIXED.scaled(1.0),
}


def make_outdoor_scene(rng: np.random.Generator) -> Scene:
    """A ground plane with a few objects standing on it, under a sky-coloured background."""
    shapes = [
        Shape(
            "box",
            (0.0, -0.05, 0.0),
            (6.0, 0.05, 6.0),
            texture=Texture("checker", (0.55, 0.5, 0.4), (0.35, 0.45, 0.3), 1.5),
        )
    ]
    for k in range(3):
        ang = 2 * np.pi * k / 3 + rng.uniform(-0.4, 0.4)
        r = rng.uniform(0.6, 1.3)
        obj = scaled(make_object(rng, mirror_symmetric=False), float(rng.uniform(1.0, 1.6)))
        base = min(sh.center[1] - sh.dims[-1] for sh in obj)
        off = np.array([r * math.sin(ang), -base, r * math.cos(ang)])
        obj = tuple(replace(sh, center=tuple(float(v) for v in np.asarray(sh.center) + off)) for sh in obj)
        shapes.extend(obj)
    for _ in range(3):
        p = rng.uniform(-2.0, 2.0, size=2)
        s = float(rng.uniform(0.15, 0.35))
        shapes.append(
            Shape("sphere", (float(p[0]), s, float(p[1])), (s,), texture=random_texture(rng), shininess=16.0)
        )
    return Scene(
        tuple(shapes), lights=(Light((0.4, 1.0, 0.3), 0.65),), ambient=0.35, background=(0.62, 0.78, 0.95)
    )


def camera_path(n_frames: int, rng: np.random.Generator, distance: float = 4.5) -> list[np.ndarray]:
    """A smooth arc (60-90 degrees of azimuth, gently varying height): an interpolated ns-render path."""
    a0 = rng.uniform(0, 2 * np.pi)
    span = np.radians(rng.uniform(60, 90))
    out = []
    for k in range(n_frames):
        s = k / max(n_frames - 1, 1)
        el = math.radians(18.0 + 6.0 * math.sin(np.pi * s))
        out.append(orbit_c2w(a0 + span * s, el, distance))
    return out


def _floater_scene(scene: Scene, rng: np.random.Generator, count: int) -> Scene:
    """Scene plus `count` small blobs floating above the ground (3D-consistent floaters)."""
    extra = []
    for _ in range(count):
        c = rng.uniform([-2.5, 0.3, -2.5], [2.5, 2.0, 2.5])
        extra.append(
            Shape(
                "sphere",
                tuple(float(v) for v in c),
                (float(rng.uniform(0.05, 0.2)),),
                texture=Texture("solid", tuple(float(v) for v in rng.uniform(0.3, 0.9, 3))),
            )
        )
    return replace(scene, shapes=scene.shapes + tuple(extra))


def distort_frames(
    clean: list[np.ndarray],
    params: Distortion,
    rng: np.random.Generator,
    floater_frames: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Apply the artefacts of `params` to a clean [0, 1] frame sequence. Random draws depend only on
    `rng` (not on the strengths), so the same rng with larger strengths gives stronger artefacts."""
    n = len(clean)
    h, w = clean[0].shape[:2]
    gains = rng.uniform(-1.0, 1.0, size=n)
    cast = rng.normal(size=3)
    cast /= np.linalg.norm(cast)
    noise_seed = int(rng.integers(2**31))
    nrng = np.random.default_rng(noise_seed)
    out = []
    for t, img in enumerate(clean):
        x = img.astype(np.float64)
        if floater_frames is not None and params.floaters > 0:
            x = (1 - 0.8 * params.floaters) * x + 0.8 * params.floaters * floater_frames[t]
        if params.ghosting > 0:
            shift = max(1, round(0.06 * w * params.ghosting))
            prev = clean[max(t - 1, 0)].astype(np.float64)
            x = (1 - 0.5 * params.ghosting) * x + 0.5 * params.ghosting * np.roll(prev, shift, axis=1)
        if params.blur > 0:
            x = cv2.GaussianBlur(x, (0, 0), sigmaX=0.3 + 2.5 * params.blur)
        if params.color_shift > 0:
            x = x * (1.0 + 0.35 * params.color_shift * cast)[None, None]
        if params.flicker > 0:
            x = x * (1.0 + 0.3 * params.flicker * gains[t])
        noise = nrng.normal(size=x.shape)
        if params.noise > 0:
            x = x + 0.12 * params.noise * noise
        out.append(np.clip(x, 0.0, 1.0))
    return out


def render_sequence(
    scene: Scene, poses: list[np.ndarray], size: tuple[int, int], fov_x_deg: float = 60.0
) -> list[np.ndarray]:
    h, w = size
    K = intrinsics(0.5 * w / math.tan(math.radians(fov_x_deg) / 2), w, h)
    return [render(scene, K, c2w, h, w).rgb for c2w in poses]


def _scene_frames(seed: int, key: str, n_frames: int, size: tuple[int, int]):
    rng = child_rng(seed, "nss-scene", key)
    scene = make_outdoor_scene(rng)
    poses = camera_path(n_frames, rng)
    clean = render_sequence(scene, poses, size)
    floaters = render_sequence(_floater_scene(scene, rng, 25), poses, size)
    return clean, floaters


def write_nss_renders(
    root: str | Path,
    *,
    n_scenes: int = 2,
    methods: Mapping[str, Distortion | Mapping[str, float]] | None = None,
    n_frames: int = 8,
    size: int | tuple[int, int] = (48, 64),
    seed: int = 0,
) -> Path:
    """renders/<scene>__<method>/NNNNN.png for method "gt" (clean) and every entry of `methods`
    (default DEFAULT_METHODS, graded strength), plus quality.json (next to renders/) with each method's
    distortion strengths and severity. Frames with the same index are pixel-aligned across methods."""
    size = hw(size)
    root = prepare_root(
        root, "write_nss_renders", n_scenes=n_scenes, n_frames=n_frames, height=size[0], width=size[1]
    )
    methods = {m: as_distortion(m, p) for m, p in (DEFAULT_METHODS if methods is None else methods).items()}
    if "gt" in methods:
        raise ValueError('write_nss_renders: "gt" is reserved for the clean reference frames')
    info = {}
    for s in range(n_scenes):
        scene_name = f"scene{s:02d}"
        clean, floaters = _scene_frames(seed, scene_name, n_frames, size)
        seqs = {"gt": clean}
        for m, params in methods.items():
            seqs[m] = distort_frames(clean, params, child_rng(seed, "nss-method", scene_name, m), floaters)
        for m, frames in seqs.items():
            for t, f in enumerate(frames):
                write_image(root / "renders" / f"{scene_name}__{m}" / f"{t:05d}.png", f)
        info[scene_name] = {m: {**asdict(p), "severity": p.severity} for m, p in methods.items()}
    write_json(root / "quality.json", info)
    return root


BANK_DATASETS = ("fieldwork", "lab")


def write_nss_bank(
    root: str | Path,
    *,
    datasets: tuple[str, ...] = BANK_DATASETS,
    n_scenes: int = 2,
    n_methods: int = 6,
    n_frames: int = 6,
    size: int | tuple[int, int] = (48, 64),
    image_ext: str = "jpg",
    seed: int = 0,
) -> Path:
    """benchmark_bank/<dataset>/<Scene>/<method>/frames/frame0000000.<ext> (plus a "reference" method
    with the clean frames), benchmark_bank/all_labels_offset_by_ref.json (nested dataset -> scene ->
    method -> JOD) and benchmark_bank/labels.json in the flat split format: tr_keys, tt_keys and
    labels "<dataset>+<Scene>+<method>" -> JOD (reference = 0, lower = worse). Within each scene
    half of the methods are train and half test (a "scenewise" split)."""
    if n_methods < 2:
        raise ValueError(f"n_methods must be >= 2 for a train/test split, got {n_methods}")
    size = hw(size)
    root = prepare_root(
        root, "write_nss_bank", n_scenes=n_scenes, n_frames=n_frames, height=size[0], width=size[1]
    )
    if image_ext not in ("jpg", "png"):
        raise ValueError(f"image_ext must be 'jpg' or 'png', got {image_ext!r}")
    bank = root / "benchmark_bank"
    nested: dict[str, dict[str, dict[str, float]]] = {}
    tr_keys, tt_keys, labels = [], [], {}
    for ds in datasets:
        nested[ds] = {}
        for s in range(n_scenes):
            scene = f"Scene{s}" if ds != "llff" else f"scene{s}"
            rng = child_rng(seed, "bank", ds, scene)
            clean, floaters = _scene_frames(seed, f"{ds}/{scene}", n_frames, size)
            strengths = np.sort(rng.uniform(0.05, 1.0, n_methods))
            names = [f"method{m}" for m in range(n_methods)]
            nested[ds][scene] = {}
            for t, f in enumerate(clean):
                write_image(bank / ds / scene / "reference" / "frames" / f"frame{t:07d}.{image_ext}", f)
            for name, st in zip(names, strengths):
                mix = Distortion(*rng.uniform(0.2, 1.0, size=6))
                params = mix.scaled(float(st))
                frames = distort_frames(clean, params, rng, floaters)
                for t, f in enumerate(frames):
                    write_image(bank / ds / scene / name / "frames" / f"frame{t:07d}.{image_ext}", f)
                jod = -2.0 * params.severity + float(rng.normal(0.0, 0.05))
                nested[ds][scene][name] = round(jod, 4)
                labels[f"{ds}+{scene}+{name}"] = round(jod, 4)
            order = rng.permutation(n_methods)
            half = n_methods // 2
            tr_keys += [f"{ds}+{scene}+{names[i]}" for i in sorted(order[:half])]
            tt_keys += [f"{ds}+{scene}+{names[i]}" for i in sorted(order[half:])]
    write_json(bank / "all_labels_offset_by_ref.json", nested)
    write_json(bank / "labels.json", {"tr_keys": tr_keys, "tt_keys": tt_keys, "labels": labels})
    return root
