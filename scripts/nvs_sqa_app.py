"""Score neurally synthesized scenes with NVS-SQA (official weights): folders of NSS, one NSS, or a video."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.runtime import keep_freed_memory
from nvs_sqa.app import format_table, score_paths, write_outputs
from nvs_sqa.assessor import QualityAssessor


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("paths", nargs="+", type=Path, help="folder of NSS sub-folders | NSS folder | video file")
    p.add_argument("--json", type=Path, help="write scores as JSON")
    p.add_argument("--csv", type=Path, help="write scores as CSV")
    p.add_argument("--features", type=Path, help="write {name: 384-d float32} as .npz")
    p.add_argument("--plot", type=Path, help="bar chart of scores (.png)")
    p.add_argument("-d", "--devices", default="cpu", help="cpu or a CUDA index (default cpu)")
    p.add_argument("--threads", type=int, default=2, help="JPEG decoding threads")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    assessor = QualityAssessor(device=args.devices, decode_threads=args.threads)
    results = score_paths(assessor, args.paths, show_progress=not args.no_progress)
    print(format_table(results))
    write_outputs(results, args.json, args.csv, args.features, args.plot)


if __name__ == "__main__":
    main()
