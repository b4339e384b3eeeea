"""Segment your own RGB + aux images and write colour overlays:
`python scripts/predict_smmcl.py -c conf/smmcl/llrgbd.yaml --checkpoint epoch-500.pth --rgb a.png --aux a_depth.png`."""

from __future__ import annotations

from pathlib import Path

from common.config import build_parser, cli_overrides, load_config
from common.runtime import keep_freed_memory
from smmcl.experiment import ExperimentConfig, build_model_from, load_trained, predict_files


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser("Predict SMMCL segmentations for user images (writes <out>/<stem>_overlay.png).")
    parser.add_argument("--checkpoint", type=Path, required=True, help="epoch-N.pth (ours or official)")
    parser.add_argument("--rgb", type=Path, nargs="+", required=True, help="RGB images")
    parser.add_argument(
        "--aux", type=Path, nargs="+", required=True, help="depth/thermal/HHA images, same order"
    )
    args = parser.parse_args(argv)
    if len(args.rgb) != len(args.aux):
        parser.error(f"{len(args.rgb)} --rgb images but {len(args.aux)} --aux images")
    cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
    model = build_model_from(cfg)
    load_trained(model, args.checkpoint)
    out = args.out_dir or Path(cfg.train.out_dir) / "predictions"
    for path in predict_files(model, cfg, args.rgb, args.aux, out):
        print(path)


if __name__ == "__main__":
    main()
