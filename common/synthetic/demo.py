"""Demo stage for scripts/demo.py: write every synthetic layout with default sizes, time it and save
an overview sheet (NMR ring with a mirror pair, RGB-D room, graded NSS methods)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from common.synthetic.files import write_image
from common.synthetic.multiview import write_nerf_synthetic, write_nmr_dataset, write_nsvf, write_srn_dataset
from common.synthetic.nss import DEFAULT_METHODS, write_nss_bank, write_nss_renders
from common.synthetic.rgbx import write_rgbx_scenes


def _rgb(path: Path, height: int, width: int) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"demo: cannot read {path}")
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / max(int(img.max()), 1) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = cv2.resize(img[..., :3], (width, height), interpolation=cv2.INTER_NEAREST)
    return img[..., ::-1]


def run_demo(out_dir: Path, minutes: float = 1.0, seed: int = 0) -> str:
    """Write all datasets under out_dir/data; return a markdown section. `minutes` is unused (the
    generator takes seconds) but kept for the demo driver's interface."""
    out_dir = Path(out_dir)
    data = out_dir / "data"
    jobs = {
        "nmr (6 objects x 24 views, 64 px, mirror-symmetric)": lambda: write_nmr_dataset(
            data / "nmr", seed=seed
        ),
        "srn (5 instances x 12 views, 64 px)": lambda: write_srn_dataset(data / "srn", seed=seed),
        "nerf_synthetic (8/2/4 views, 64 px)": lambda: write_nerf_synthetic(
            data / "nerf_synthetic", seed=seed
        ),
        "nsvf (8/4 views, 80x48)": lambda: write_nsvf(data / "nsvf", seed=seed),
        "rgbx depth (8/4 rooms, 80x60, low light)": lambda: write_rgbx_scenes(data / "rgbd", seed=seed),
        "rgbx thermal (8/4 rooms, 80x60)": lambda: write_rgbx_scenes(
            data / "rgbt", modality="thermal", low_light=False, seed=seed
        ),
        "nss renders (2 scenes x 5 methods x 8 frames)": lambda: write_nss_renders(data / "nss", seed=seed),
        "nss bank (2 datasets x 2 scenes x 6 methods)": lambda: write_nss_bank(data / "nss_bank", seed=seed),
    }
    rows = []
    for name, job in jobs.items():
        t0 = time.perf_counter()
        job()
        rows.append(f"| {name} | {time.perf_counter() - t0:.2f} |")
    nmr_obj = sorted(p for p in (data / "nmr" / "03211117").iterdir() if p.is_dir())[0]
    ring = [_rgb(nmr_obj / "image" / f"{i:04d}.png", 64, 64) for i in range(0, 24, 2)]
    pair = [_rgb(nmr_obj / "image" / f"{i:04d}.png", 64, 64) for i in (3, 21)]
    pair.append(pair[0][:, ::-1])
    room = [
        _rgb(data / "rgbd" / d / f"00000{e}", 64, 85)
        for d, e in [("RGB_normal", ".png"), ("RGB", ".png"), ("Depth", ".png")]
    ]
    label = cv2.imread(str(data / "rgbd" / "Label" / "00000.png"), cv2.IMREAD_GRAYSCALE)
    room.append(cv2.applyColorMap((label * 40).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1])
    room[-1] = cv2.resize(room[-1], (85, 64), interpolation=cv2.INTER_NEAREST)
    nss = [
        _rgb(data / "nss" / "renders" / f"scene00__{m}" / "00003.png", 64, 85)
        for m in ["gt", *DEFAULT_METHODS]
    ]
    width = 64 * 12
    lines = [np.concatenate(ring, 1), np.concatenate(pair + room, 1), np.concatenate(nss, 1)]
    sheet = np.concatenate(
        [np.pad(x, ((0, 4), (0, width - x.shape[1]), (0, 0)), constant_values=255) for x in lines]
    )
    write_image(out_dir / "synthetic_overview.png", sheet)
    return "\n".join(
        [
            "Procedural ray-cast data in the papers' layouts (written under `data/`).",
            "",
            "| dataset | seconds |",
            "|---|---|",
            *rows,
            "",
            "Row 1: NMR ring (every 2nd view). Row 2: views 3 and 21, view 3 flipped (mirror pair); low-light room:"
            " normal RGB, dark RGB, depth, labels. Row 3: NSS frame, gt then methods q1..q4.",
            "",
            "![overview](synthetic_overview.png)",
        ]
    )
