"""Segment your own RGB + aux images and write colour overlays:
`python scripts/predict_smmcl.py --checkpoint epoch-500.pth --rgb a.png --aux a_depth.png -o out/ -d 0`
(an authors' checkpoint, which holds no config, also needs `-c conf/smmcl/llrgbd.yaml`)."""

from __future__ import annotations

from pathlib import Path

from common.cli import run_script
from common.config import build_parser, cli_overrides
from common.distributed import init_distributed, parse_devices
from common.io import check_outputs_outside_inputs, check_writable
from common.runtime import keep_freed_memory
from smmcl.experiment import from_checkpoint, predict_files


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser("Predict SMMCL segmentations for user images (writes <out>/<stem>_overlay.png).")
    parser.add_argument("--rgb", type=Path, nargs="+", required=True, help="RGB images")
    parser.add_argument(
        "--aux", type=Path, nargs="+", required=True, help="depth/thermal/HHA images, same order"
    )
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        parser.error("--checkpoint PATH is required")
    if len(args.rgb) != len(args.aux):
        parser.error(f"{len(args.rgb)} --rgb images but {len(args.aux)} --aux images")
    devices = parse_devices(args.devices)
    if devices != "cpu" and len(devices) > 1:
        parser.error("prediction runs on one device: give -d cpu or a single GPU index")
    device = init_distributed(devices).device  # -d honoured; "CUDA is not available" before any work
    cfg, model, _ = from_checkpoint(args.checkpoint, args.config, cli_overrides(args))
    out = Path(args.out_dir) if args.out_dir else Path(cfg.train.out_dir) / "predictions"
    check_outputs_outside_inputs([out], [*args.rgb, *args.aux, args.checkpoint])
    check_writable(out, is_dir=True)
    model.to(device)
    for path in predict_files(model, cfg, args.rgb, args.aux, out):
        print(path)


def cli() -> None:
    """Console-script entry point (`tv-predict-smmcl`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
