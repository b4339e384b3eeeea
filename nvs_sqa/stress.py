"""Where the quality model is blind: controlled artefacts at graded strengths (issue 14 §4).

Each `Artefact` maps a clean sequence `(T, H, W, 3)` uint8 and one strength to a distorted sequence of the
same shape; spatial strengths are relative to the frame width, so the artefacts look alike at any
resolution. `run_stress` scores the clean sequence and every (artefact, strength) with a scorer
(`QualityAssessor.score_frames` in the script) and `summarize` gives Kendall's tau between severity rank
(0 = clean) and score per artefact: a model that sees an artefact has tau near -1 (quality falls as the
artefact grows); tau >= 0 means it is blind to it, or rewards it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.io import atomic_write_json, atomic_write_text
from common.metrics.correlation import krcc
from common.viz import line_plot
from nvs_sqa.constants import ARTEFACT_LEVELS
from nvs_sqa.frames import FrameError, check_size, list_frames, read_frame
from nvs_sqa.ridge import LABEL_RANGE

__all__ = [
    "ARTEFACTS",
    "Artefact",
    "StressRow",
    "length_sweep",
    "load_sequence",
    "run_stress",
    "summarize",
    "write_report",
]

Frames = np.ndarray  # (T, H, W, 3) uint8


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _blob(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Gaussian blob (H, W) float32 in [0, 1] with std ry, rx pixels around (cy, cx)."""
    y = (np.arange(h, dtype=np.float32)[:, None] - cy) / ry
    x = (np.arange(w, dtype=np.float32)[None, :] - cx) / rx
    return np.exp(-0.5 * (y * y + x * x))


def _paths(
    t: int, h: int, w: int, n: int, rng: np.random.Generator, speed: float
) -> tuple[np.ndarray, np.ndarray]:
    """Screen paths (n, t) of y and x: a start point, a constant drift (parallax of a point fixed in 3D
    while the camera moves) and a slow sway, `speed` in frame widths per sequence."""
    y0, x0 = rng.uniform(0.15, 0.85, n) * h, rng.uniform(0.1, 0.9, n) * w
    depth = rng.uniform(0.5, 2.0, n)  # near blobs drift faster
    heading = rng.uniform(0, 2 * np.pi, n)
    s = np.linspace(0.0, 1.0, t)[None, :]
    drift = speed * w / depth[:, None] * s
    sway = 0.03 * w * np.sin(2 * np.pi * s + rng.uniform(0, 2 * np.pi, n)[:, None])
    ys = y0[:, None] + 0.3 * drift * np.sin(heading)[:, None] + 0.3 * sway
    xs = x0[:, None] + drift * np.cos(heading)[:, None] + sway
    return ys, xs


# ---- artefacts: (frames, strength, rng) -> frames ---------------------------------------------------
def gaussian_blur(frames: Frames, sigma_pct: float, rng: np.random.Generator) -> Frames:
    """Gaussian blur, std `sigma_pct` % of the frame width."""
    sigma = sigma_pct / 100.0 * frames.shape[2]
    return np.stack(
        [cv2.GaussianBlur(f, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT) for f in frames]
    )


def gaussian_noise(frames: Frames, std: float, rng: np.random.Generator) -> Frames:
    """Additive white Gaussian noise, std in 8-bit levels, independent per frame."""
    return _u8(frames.astype(np.float32) + rng.normal(0.0, std, frames.shape).astype(np.float32))


def jpeg(frames: Frames, quality: float, rng: np.random.Generator) -> Frames:
    """JPEG compression at `quality` (OpenCV's encoder, 4:2:0)."""
    out = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode a frame")
        out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return np.stack(out)


def floaters(frames: Frames, count: float, rng: np.random.Generator) -> Frames:
    """`count` semi-transparent blobs (NeRF floaters: opacity up to 0.6, hazy scene colour, 2-6 % of the
    width) fixed in space near the camera, so they drift across the screen with parallax."""
    t, h, w, _ = frames.shape
    n = int(count)
    ys, xs = _paths(t, h, w, n, rng, speed=0.35)
    radius = rng.uniform(0.02, 0.06, n) * w
    aspect = rng.uniform(0.6, 1.6, n)
    opacity = rng.uniform(0.35, 0.6, n)
    haze = rng.uniform(0.4, 0.8, n)  # mix of the scene colour under the blob and light grey
    out = frames.astype(np.float32)
    first = frames[0].astype(np.float32)
    for i in range(n):
        cy, cx = int(np.clip(ys[i, 0], 0, h - 1)), int(np.clip(xs[i, 0], 0, w - 1))
        colour = haze[i] * first[cy, cx] + (1 - haze[i]) * 200.0
        for k in range(t):
            a = opacity[i] * _blob(h, w, ys[i, k], xs[i, k], radius[i] * aspect[i], radius[i])[:, :, None]
            out[k] = (1 - a) * out[k] + a * colour
    return _u8(out)


def black_holes(frames: Frames, area_pct: float, rng: np.random.Generator) -> Frames:
    """Dark missing regions (no density: the black background shows) covering `area_pct` % of the frame,
    in 3 soft-edged ellipses that move with the scene."""
    t, h, w, _ = frames.shape
    n = 3
    ys, xs = _paths(t, h, w, n, rng, speed=0.08)
    share = rng.dirichlet(np.ones(n)) * area_pct / 100.0 * h * w  # area of each ellipse
    aspect = rng.uniform(0.5, 2.0, n)
    out = frames.astype(np.float32)
    for i in range(n):
        r = math.sqrt(share[i] / math.pi)  # radius of the equal-area circle
        for k in range(t):
            d = _blob(h, w, ys[i, k], xs[i, k], r * aspect[i] / 1.1774, r / aspect[i] / 1.1774)
            mask = np.clip((d - 0.35) / 0.3, 0.0, 1.0)[:, :, None]  # ~equal area at d=0.5, soft 0.35..0.65
            out[k] = (1 - mask) * out[k] + mask * 4.0
    return _u8(out)


def ghosting(frames: Frames, alpha: float, rng: np.random.Generator) -> Frames:
    """Double image: blend with weight `alpha` a copy shifted by 3 % of the width and 1 % of the height
    (duplicated geometry from inconsistent views)."""
    _, h, w, _ = frames.shape
    dx, dy = max(1, round(0.03 * w)), max(1, round(0.01 * h))
    shifted = np.roll(frames, (dy, dx), axis=(1, 2))
    shifted[:, :dy], shifted[:, :, :dx] = frames[:, :dy], frames[:, :, :dx]  # no wrap-around
    return _u8((1 - alpha) * frames.astype(np.float32) + alpha * shifted.astype(np.float32))


def colour_shift(frames: Frames, strength: float, rng: np.random.Generator) -> Frames:
    """Colour cast: red gain 1 + s, blue gain 1 - s, green unchanged (white balance off)."""
    gains = np.array([1 + strength, 1.0, 1 - strength], dtype=np.float32)
    return _u8(frames.astype(np.float32) * gains)


def flicker(frames: Frames, amplitude: float, rng: np.random.Generator) -> Frames:
    """Temporal flicker: each frame's brightness gain drawn uniformly in 1 +- amplitude."""
    gains = 1.0 + rng.uniform(-amplitude, amplitude, frames.shape[0]).astype(np.float32)
    return _u8(frames.astype(np.float32) * gains[:, None, None, None])


def frozen_frames(frames: Frames, fraction: float, rng: np.random.Generator) -> Frames:
    """Dropped frames shown as the last delivered one (stutter): `fraction` of frames 1..T-1, at random."""
    t = frames.shape[0]
    k = min(t - 1, round(fraction * (t - 1)))
    dropped = np.zeros(t, dtype=bool)
    dropped[1 + rng.choice(t - 1, size=k, replace=False)] = True
    shown = np.maximum.accumulate(np.where(dropped, 0, np.arange(t)))
    return frames[shown].copy()


@dataclass(frozen=True)
class Artefact:
    name: str
    apply: Callable[[Frames, float, np.random.Generator], Frames]
    levels: tuple[float, ...]  # parameter values in order of increasing severity
    unit: str


_APPLY = {
    "blur": gaussian_blur,
    "noise": gaussian_noise,
    "jpeg": jpeg,
    "floaters": floaters,
    "black_holes": black_holes,
    "ghosting": ghosting,
    "colour_shift": colour_shift,
    "flicker": flicker,
    "frozen": frozen_frames,
}
ARTEFACTS: dict[str, Artefact] = {n: Artefact(n, _APPLY[n], *spec) for n, spec in ARTEFACT_LEVELS.items()}


@dataclass(frozen=True)
class StressRow:
    artefact: str  # "clean" for the undistorted sequence
    level: int  # severity rank, 0 = clean
    param: float | None
    unit: str
    jod: float


def load_sequence(folder: Path, *, frames: int | None = None, scale: float = 1.0) -> Frames:
    """The NSS frames of `folder` as the assessor reads them, `frames` of them picked evenly (first and last
    kept) and resized by `scale` (OpenCV area filter) when asked."""
    paths = list_frames(Path(folder))
    if len(paths) < 2:
        raise FrameError(f"{folder}: needs at least 2 png/jpg frames, found {len(paths)}")
    if frames is not None and frames < len(paths):
        paths = [paths[i] for i in np.unique(np.round(np.linspace(0, len(paths) - 1, frames)).astype(int))]
    out = []
    for p in paths:
        f = read_frame(p)
        if scale != 1.0:
            size = (max(1, round(f.shape[1] * scale)), max(1, round(f.shape[0] * scale)))
            f = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
        check_size(f.shape[0], f.shape[1], str(p))
        if out and f.shape != out[0].shape:
            raise FrameError(f"{p}: frame size {f.shape[1]}x{f.shape[0]} differs from {paths[0]}")
        out.append(f)
    return np.stack(out)


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 2:
        raise ValueError(f"stress: frames must be (T >= 2, H, W, 3) uint8, got {frames.shape} {frames.dtype}")


def run_stress(
    frames: Frames,
    score: Callable[[Frames], float],
    *,
    artefacts: Iterable[str] | None = None,
    max_levels: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[StressRow]:
    """Score the clean sequence and each artefact at each of its levels (the first `max_levels`, spread
    over the range when fewer are asked). The random parts of an artefact (blob paths, noise) are seeded
    per artefact, so every level of one artefact uses the same layout."""
    _check_frames(frames)
    names = list(ARTEFACTS) if artefacts is None else list(artefacts)
    unknown = [n for n in names if n not in ARTEFACTS]
    if unknown:
        raise ValueError(f"stress: unknown artefact(s) {unknown}; known: {', '.join(ARTEFACTS)}")
    rows = [StressRow("clean", 0, None, "", float(score(frames)))]
    if progress:
        progress(f"clean: {rows[0].jod:.3f}")
    for a, name in enumerate(names):
        art = ARTEFACTS[name]
        levels = art.levels
        if max_levels is not None and max_levels < len(levels):
            idx = np.unique(np.round(np.linspace(len(levels) - 1, 0, max_levels)).astype(int))
            levels = tuple(levels[i] for i in sorted(idx))
        for k, p in enumerate(levels, start=1):
            out = art.apply(frames, p, np.random.default_rng([seed, a]))
            assert out.shape == frames.shape and out.dtype == np.uint8, name
            rows.append(StressRow(name, k, float(p), art.unit, float(score(out))))
            if progress:
                progress(f"{name} {p:g}: {rows[-1].jod:.3f}")
    return rows


def summarize(rows: Sequence[StressRow]) -> dict[str, dict[str, float]]:
    """Per artefact: Kendall's tau (severity rank incl. the clean score vs. JOD), the drop from clean to the
    strongest level, and the largest score at any level minus the clean score (> 0: the artefact helps)."""
    clean = next(r.jod for r in rows if r.artefact == "clean")
    out = {}
    for name in dict.fromkeys(r.artefact for r in rows if r.artefact != "clean"):
        rs = [r for r in rows if r.artefact == name]
        level = [0] + [r.level for r in rs]
        jod = [clean] + [r.jod for r in rs]
        out[name] = {
            "kendall_tau": krcc(level, jod) if len(set(jod)) > 1 else float("nan"),
            "drop_at_max": clean - rs[-1].jod,
            "max_gain": max(r.jod for r in rs) - clean,
        }
    return out


def length_sweep(frames: Frames, score: Callable[[Frames], float], lengths: Sequence[int]) -> list[dict]:
    """Score the same camera path with T frames picked evenly (first and last kept), for each T."""
    _check_frames(frames)
    rows = []
    for n in lengths:
        idx = np.unique(np.round(np.linspace(0, frames.shape[0] - 1, n)).astype(int))
        rows.append({"frames": int(len(idx)), "jod": float(score(frames[idx]))})
    return rows


def _in_range(jod: float) -> bool:
    """Inside the label range of the read-out (+-1 JOD, the assessor's warning threshold)."""
    return LABEL_RANGE[0] - 1.0 <= jod <= LABEL_RANGE[1] + 1.0


def _plot(rows: Sequence[StressRow], path: Path, title: str) -> Path:
    """Score change from the clean sequence per artefact; points outside the read-out's label range (a
    noise score of +20 would flatten every other line) are left out and marked in the table."""
    clean = next(r.jod for r in rows if r.artefact == "clean")
    series = {}
    for name in dict.fromkeys(r.artefact for r in rows if r.artefact != "clean"):
        rs = [r for r in rows if r.artefact == name and _in_range(r.jod)]
        series[name] = ([0] + [r.level for r in rs], [0.0] + [r.jod - clean for r in rs])
    return line_plot(series, path, "severity level (0 = clean; parameters in the table)",
                     "score - clean score (JOD; < 0: quality falls)", title, hlines={"clean": 0.0})  # fmt: skip


def markdown_table(rows: Sequence[StressRow], summary: dict[str, dict[str, float]]) -> str:
    clean = next(r.jod for r in rows if r.artefact == "clean")
    names = list(summary)
    n_levels = max(r.level for r in rows)
    head = "| artefact | parameter | " + " | ".join(f"L{k}" for k in range(1, n_levels + 1))
    lines = [
        f"Clean sequence: {clean:.3f} JOD.",
        "",
        head + " | Kendall tau | clean - strongest |",
        "|" + "---|" * (n_levels + 4),
    ]
    for name in names:
        rs = [r for r in rows if r.artefact == name]
        cells = [f"{r.jod:.3f}{'' if _in_range(r.jod) else ' †'} ({r.param:g})" for r in rs] + [""] * (
            n_levels - len(rs)
        )
        s = summary[name]
        lines.append(
            f"| {name} | {rs[0].unit} | "
            + " | ".join(cells)
            + f" | {s['kendall_tau']:+.2f} | {s['drop_at_max']:+.3f} |"
        )
    if any(not _in_range(r.jod) for r in rows):
        lines += ["", f"† outside the read-out's label range {LABEL_RANGE} +- 1 JOD (not plotted)."]
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: Path,
    rows: Sequence[StressRow],
    *,
    settings: dict,
    lengths: Sequence[dict] = (),
    title: str = "NVS-SQA score change vs. artefact strength",
) -> dict[str, Path]:
    """stress.json (rows, summary, settings, length sweep), stress.md (table) and stress.png (plot)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    data = {
        "settings": settings,
        "rows": [r.__dict__ for r in rows],
        "summary": summary,
        "length_sweep": list(lengths),
    }
    paths = {"json": out_dir / "stress.json", "md": out_dir / "stress.md", "png": out_dir / "stress.png"}
    atomic_write_json(paths["json"], data)
    md = markdown_table(rows, summary)
    if lengths:
        md += "\n| frames | " + " | ".join(str(r["frames"]) for r in lengths) + " |\n"
        md += "|---|" + "---|" * len(lengths) + "\n"
        md += "| JOD | " + " | ".join(f"{r['jod']:.3f}" for r in lengths) + " |\n"
    atomic_write_text(paths["md"], md)
    _plot(rows, paths["png"], title)
    return paths
