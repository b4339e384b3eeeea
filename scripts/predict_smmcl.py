"""Segment your own RGB + aux images, folders in, folders out (mmsegmentation's inference outputs):
`python scripts/predict_smmcl.py --checkpoint epoch-500.pth --rgb rgb/ --aux depth/ -o out/ -d 0` writes
out/pred/<stem>.png (class indices), out/vis/<stem>.png (RGB | overlay | legend), with --save-probs
out/probs/<stem>.npy. MFNet's release PNGs (thermal in channel 4) need no --aux. An authors' checkpoint,
which holds no config, also needs `-c conf/smmcl/llrgbd.yaml`."""

from __future__ import annotations

from pathlib import Path

from common.cli import run_script
from common.config import build_parser, cli_overrides
from common.distributed import init_distributed, parse_devices
from common.io import check_outputs_outside_inputs, check_writable
from common.runtime import keep_freed_memory


def main(argv: list[str] | None = None) -> None:

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser(
        "Predict SMMCL segmentations for user images (index masks, overlays, probabilities)."
    )
    parser.add_argument("--rgb", type=Path, nargs="+", required=True, help="RGB images or folders of them")
    parser.add_argument(
        "--aux",
        type=Path,
        nargs="+",
        default=None,
        help="depth/thermal/HHA images in the same order, or one folder with an image of each RGB stem; "
        "left out: the aux is channel 4 of each RGB PNG (MFNet release)",
    )
    parser.add_argument(
        "--save-probs", action="store_true", help="also write (K,H,W) float32 .npy probabilities"
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    args = parser.parse_args(argv)
    from smmcl.experiment import from_checkpoint
    from smmcl.inference import pair_inputs, predict_files

    if args.checkpoint is None:
        parser.error("--checkpoint PATH is required")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must lie in [0, 1], got {args.alpha}")
    devices = parse_devices(args.devices)
    if devices != "cpu" and len(devices) > 1:
        parser.error("prediction runs on one device: give -d cpu or a single GPU index")
    device = init_distributed(devices).device  # -d honoured; "CUDA is not available" before any work
    pairs = pair_inputs(args.rgb, args.aux)
    cfg, model, _ = from_checkpoint(args.checkpoint, args.config, cli_overrides(args))
    out = Path(args.out_dir) if args.out_dir else Path(cfg.train.out_dir) / "predictions"
    check_outputs_outside_inputs([out], [*args.rgb, *(args.aux or []), args.checkpoint])
    check_writable(out, is_dir=True)
    model.to(device)
    for path in predict_files(model, cfg, pairs, out, save_probs=args.save_probs, alpha=args.alpha):
        print(path)


def cli() -> None:
    """Console-script entry point (`tv-predict-smmcl`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
