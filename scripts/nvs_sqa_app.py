"""Score neurally synthesized scenes with NVS-SQA (official weights): a bank (a folder of NSS sub-folders
and/or videos, e.g. ns-render's output folder), one NSS folder of frames, or a video.

Results are written as they come (JSON report + CSV, NPZ of features); --resume scores only what a killed
run left out (reusing only unchanged frames scored by the same model); one run per output at a time. -d 0-3 (GPUs) or -d cpu --procs N shard the NSS over processes (torchrun re-launch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import run_script
from common.distributed import (
    barrier,
    cleanup_distributed,
    init_distributed,
    maybe_relaunch,
    parse_devices,
)
from common.io import check_outputs
from common.runtime import keep_freed_memory
from nvs_sqa.app import SCALE_NOTE, Outputs, run_bank
from nvs_sqa.assessor import QualityAssessor


def main() -> int:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = argparse.ArgumentParser(description=__doc__, epilog=SCALE_NOTE)
    p.add_argument(
        "paths", nargs="+", type=Path, help="bank folder (NSS sub-folders, videos) | NSS folder | video file"
    )
    p.add_argument("--json", type=Path, help="report (schema tri-vision.eval/1; its CSV is written beside)")
    p.add_argument("--csv", type=Path, help="per-NSS CSV")
    p.add_argument("--features", type=Path, help="write {key: 384-d float32} as .npz")
    p.add_argument("--plot", type=Path, help="bar chart of scores (.png)")
    p.add_argument("--resume", action="store_true", help="keep the results of an earlier (killed) run")
    p.add_argument(
        "-d", "--devices", default="cpu", help="cpu, a CUDA index, or several (0-3: one process each)"
    )
    p.add_argument("--procs", type=int, default=1, help="processes with -d cpu (torchrun re-launch)")
    p.add_argument("--threads", type=int, default=2, help="frame decoding threads per process")
    p.add_argument("--chunk", type=int, help="frames per CNN call (default: 2 on CPU, 16 on CUDA)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks of the project's own errors")
    args = p.parse_args()
    out = Outputs(json=args.json, csv=args.csv, features=args.features, plot=args.plot)
    check_outputs(out.files(), args.paths)  # before any process or model is started
    devices = parse_devices(args.devices)
    maybe_relaunch(devices, cpu_procs=args.procs)
    info = init_distributed(devices)
    try:
        qa = QualityAssessor(device=info.device, decode_threads=args.threads, chunk=args.chunk)
        failed = run_bank(
            qa,
            args.paths,
            out,
            resume=args.resume,
            rank=info.rank,
            world_size=info.world_size,
            barrier=barrier,
            show_progress=not args.no_progress and info.rank == 0,
        )
    finally:
        cleanup_distributed()
    return 1 if failed else 0


def cli() -> None:
    """Console-script entry point (`tv-nvs-sqa-app`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
