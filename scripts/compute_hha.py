"""Depth PNG (+ optional raw depth for the missing mask) -> HHA PNG (written B,G,R = angle, height, disparity
like the MATLAB/OpenCV tools). `python scripts/compute_hha.py --depth d.png --out hha.png --depth-scale 10000`."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import run_script
from common.io import check_outputs_outside_inputs, check_writable


def main(argv: list[str] | None = None) -> None:
    from smmcl.hha import NYU_INTRINSICS  # the parser's default (numpy and cv2, not the models)

    p = argparse.ArgumentParser(description="Compute the HHA encoding of a depth image (vectorised).")
    p.add_argument("--depth", type=Path, required=True, help="16-bit depth PNG (filled)")
    p.add_argument("--raw-depth", type=Path, default=None, help="raw depth PNG: zeros mark missing data")
    p.add_argument(
        "--depth-scale",
        type=float,
        default=10000.0,
        help="PNG value per metre (NYU toolbox: 10000, millimetres: 1000; a mostly saturated or farther "
        "than indoor result is warned about)",
    )
    p.add_argument(
        "--intrinsics",
        type=float,
        nargs=4,
        default=NYU_INTRINSICS,
        metavar=("FX", "FY", "CX", "CY"),
        help="pixel intrinsics of this image (default: NYU's 640x480 colour camera; another size, or a "
        "principal point far from the centre, is warned about)",
    )
    p.add_argument(
        "--mask-mode",
        choices=["official", "exclude"],
        default="official",
        help="official: the raw-depth mask does not change the fit, as in the MATLAB tools (matches their "
        "output); exclude: leave missing pixels out of the normal fits",
    )
    p.add_argument("--allow-8bit", action="store_true", help="accept 8-bit depth (refused by default)")
    p.add_argument("--allow-zero", action="store_true", help="accept all-zero depth (refused by default)")
    p.add_argument("--out", type=Path, required=True, help="output HHA PNG")
    p.add_argument("--debug", action="store_true", help="show tracebacks of input errors")
    a = p.parse_args(argv)
    from common.image_io import write_image
    from smmcl.hha import check_depth_scale, hha_from_files

    check_depth_scale(a.depth_scale)
    check_outputs_outside_inputs([a.out], [a.depth, a.raw_depth])
    check_writable(a.out)
    hha = hha_from_files(
        a.depth,
        a.raw_depth,
        a.depth_scale,
        tuple(a.intrinsics),
        a.mask_mode,
        allow_8bit=a.allow_8bit,
        allow_zero=a.allow_zero,
    )
    write_image(a.out, hha)  # (disparity, height, angle) as R, G, B: the file stores B,G,R = A, H, D


def cli() -> None:
    """Console-script entry point (`tv-compute-hha`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
