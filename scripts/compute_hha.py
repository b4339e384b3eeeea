"""Depth PNG (+ optional raw depth for the missing mask) -> HHA PNG (written B,G,R = angle, height, disparity
like the MATLAB/OpenCV tools). `python scripts/compute_hha.py --depth d.png --out hha.png --depth-scale 10000`."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from smmcl.hha import NYU_INTRINSICS, hha_from_files


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Compute the HHA encoding of a depth image (vectorised).")
    p.add_argument("--depth", type=Path, required=True, help="16-bit depth PNG (filled)")
    p.add_argument("--raw-depth", type=Path, default=None, help="raw depth PNG: zeros mark missing data")
    p.add_argument(
        "--depth-scale", type=float, default=10000.0, help="PNG value per metre (NYU toolbox: 10000)"
    )
    p.add_argument(
        "--intrinsics", type=float, nargs=4, default=NYU_INTRINSICS, metavar=("FX", "FY", "CX", "CY")
    )
    p.add_argument(
        "--mask-mode",
        choices=["official", "exclude"],
        default="official",
        help="official: the raw-depth mask does not change the fit, as in the MATLAB tools (matches their "
        "output); exclude: leave missing pixels out of the normal fits",
    )
    p.add_argument("--out", type=Path, required=True, help="output HHA PNG")
    a = p.parse_args(argv)
    hha = hha_from_files(a.depth, a.raw_depth, a.depth_scale, tuple(a.intrinsics), a.mask_mode)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), hha[..., ::-1])


if __name__ == "__main__":
    main()
