"""Write the project's procedural synthetic datasets (common.synthetic) in the papers' layouts."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common.cli import run_script

KINDS = ("nmr", "srn", "nerf_synthetic", "nsvf", "rgbx", "nss", "nss_bank")


def main() -> None:
    from common.synthetic import (
        write_nerf_synthetic,
        write_nmr_dataset,
        write_nss_bank,
        write_nss_renders,
        write_nsvf,
        write_rgbx_scenes,
        write_srn_dataset,
    )

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("kind", choices=(*KINDS, "all"), help="which dataset layout to write")
    p.add_argument("--out", required=True, type=Path, help="output folder (one sub-folder per kind)")
    p.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical files")
    p.add_argument("--size", type=int, default=None, help="image size (square kinds) or width")
    p.add_argument("--n-objects", type=int, default=6, help="nmr: objects per category")
    p.add_argument("--category", default="display", help="nmr: ShapeNet category name")
    p.add_argument("--no-mirror", action="store_true", help="nmr: objects not mirror-symmetric")
    p.add_argument("--n-train", type=int, default=8, help="views (nerf/nsvf) or images (rgbx) for training")
    p.add_argument("--n-test", type=int, default=4, help="views or images for testing")
    p.add_argument("--modality", choices=("depth", "thermal"), default="depth", help="rgbx: aux channel")
    p.add_argument("--depth-format", choices=("uint16", "uint8"), default="uint16", help="rgbx: depth PNG")
    p.add_argument("--no-low-light", action="store_true", help="rgbx: keep the RGB well lit")
    p.add_argument("--n-scenes", type=int, default=2, help="nss / nss_bank: scenes (per dataset)")
    p.add_argument("--n-frames", type=int, default=8, help="nss / nss_bank: frames per sequence")
    a = p.parse_args()
    s = a.size
    jobs = {
        "nmr": lambda d: write_nmr_dataset(
            d,
            category=a.category,
            n_objects=a.n_objects,
            image_size=s or 64,
            mirror_symmetric=not a.no_mirror,
            seed=a.seed,
        ),
        "srn": lambda d: write_srn_dataset(d, image_size=s or 64, seed=a.seed),
        "nerf_synthetic": lambda d: write_nerf_synthetic(
            d / "object", n_train=a.n_train, n_test=a.n_test, size=s or 64, seed=a.seed
        ),
        "nsvf": lambda d: write_nsvf(
            d / "object",
            n_train=a.n_train,
            n_test=a.n_test,
            width=s or 80,
            height=(s or 80) * 3 // 5,
            seed=a.seed,
        ),
        "rgbx": lambda d: write_rgbx_scenes(
            d,
            modality=a.modality,
            depth_format=a.depth_format,
            low_light=not a.no_low_light,
            n_train=a.n_train,
            n_test=a.n_test,
            size=((s or 80) * 3 // 4, s or 80),
            seed=a.seed,
        ),
        "nss": lambda d: write_nss_renders(
            d, n_scenes=a.n_scenes, n_frames=a.n_frames, size=((s or 64) * 3 // 4, s or 64), seed=a.seed
        ),
        "nss_bank": lambda d: write_nss_bank(
            d, n_scenes=a.n_scenes, n_frames=a.n_frames, size=((s or 64) * 3 // 4, s or 64), seed=a.seed
        ),
    }
    for kind in KINDS if a.kind == "all" else (a.kind,):
        t0 = time.perf_counter()
        out = jobs[kind](a.out / kind)
        print(f"{kind}: wrote {out} in {time.perf_counter() - t0:.1f} s")


def cli() -> None:
    """Console-script entry point (`tv-make-synthetic`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
