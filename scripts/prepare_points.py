"""Prepare the renderer's point file: read PLY/PCD/COLMAP points3D.{bin,txt}/.npy, down-sample to a
fixed count (official uniform+random, or voxel) and write .npy/.pcd/.ply.

A COLMAP cloud of an LLFF scene is in COLMAP units; the LLFF loader scales the cameras (nearest depth
1/0.75), so pass --llff SCENE to write the cloud in the cameras' frame (fern: x 0.0785)."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import run_script
from common.io import check_outputs_outside_inputs
from smcl.scene.points import prepare_points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("src", type=Path, help="input cloud")
    p.add_argument("dst", type=Path, help="output file (.npy recommended)")
    p.add_argument("-n", "--num-points", type=int, default=10000)
    p.add_argument("--method", choices=["uniform_random", "voxel"], default="uniform_random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--llff", type=Path, default=None, metavar="SCENE", help="scale into this LLFF scene's frame"
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    a = p.parse_args()
    check_outputs_outside_inputs([a.dst], [a.src])
    scale = 1.0
    if a.llff is not None:
        from smcl.scene.data.scenes import llff_world_scale

        scale = llff_world_scale(a.llff)
    pts = prepare_points(a.src, a.dst, a.num_points, a.method, a.seed, scale=scale)
    print(f"wrote {pts.shape[0]} points (x {scale:.6g}) to {a.dst}; bbox {pts.min(0)} .. {pts.max(0)}")


def cli() -> None:
    """Console-script entry point (`tv-prepare-points`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
