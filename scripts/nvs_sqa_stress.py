"""Artefact stress report for NVS-SQA: score one NSS under graded artefacts (nvs_sqa.stress).

    python scripts/nvs_sqa_stress.py ../shared/data/nvs_sqa_examples/Giraffe+NeRF --out report/ --scale 0.5

Writes report/stress.{json,md,png}; never writes into the input folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common.cli import run_script
from common.io import check_outputs
from common.runtime import keep_freed_memory


def main(argv: list[str] | None = None) -> None:
    from nvs_sqa.constants import ARTEFACT_LEVELS  # the parser's choices (plain data)

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nss_folder", type=Path, help="one NSS: a folder of frames")
    ap.add_argument("--out", type=Path, required=True, help="report folder")
    ap.add_argument("--frames", type=int, default=None, help="pick N frames evenly (default: all)")
    ap.add_argument("--scale", type=float, default=1.0, help="resize frames by this factor (default 1)")
    ap.add_argument("--artefacts", nargs="+", default=list(ARTEFACT_LEVELS), choices=list(ARTEFACT_LEVELS))
    ap.add_argument("--levels", type=int, default=None, help="strengths per artefact (default: all 5)")
    ap.add_argument("--lengths", type=int, nargs="*", default=[8, 15, 30, 60], help="length sweep (T values)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from nvs_sqa.assessor import QualityAssessor
    from nvs_sqa.stress import length_sweep, load_sequence, run_stress, write_report

    check_outputs(inputs=[args.nss_folder], dirs=[args.out])  # before loading and scoring

    frames = load_sequence(args.nss_folder, frames=args.frames, scale=args.scale)
    qa = QualityAssessor.from_official(device=args.device)
    t0 = time.perf_counter()
    rows = run_stress(
        frames,
        lambda f: qa.score_frames(f).jod,
        artefacts=args.artefacts,
        max_levels=args.levels,
        seed=args.seed,
        progress=lambda s: print(s, flush=True),
    )
    lengths = length_sweep(frames, lambda f: qa.score_frames(f).jod, args.lengths) if args.lengths else []
    t, h, w = frames.shape[:3]
    settings = {
        "nss": args.nss_folder.name,
        "frames": t,
        "size": [w, h],
        "scale": args.scale,
        "seed": args.seed,
        "device": args.device,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    paths = write_report(
        args.out, rows, settings=settings, lengths=lengths, title=f"{args.nss_folder.name}, {w}x{h}"
    )
    print(paths["md"].read_text())
    print("wrote", ", ".join(str(p) for p in paths.values()))


def cli() -> None:
    """Console-script entry point (`tv-nvs-sqa-stress`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
