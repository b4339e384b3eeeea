"""Evaluate SMMCL: `python scripts/eval_smmcl.py --checkpoint runs/x/checkpoints/epoch-500.pth -d 0-3`
(the config stored in the checkpoint; `-c`/`--set` optional overrides, printed when they differ), or
`-c conf/smmcl/llrgbd.yaml -e 500` for <out_dir>/checkpoints/epoch-500.pth, or an authors' checkpoint with -c.
Writes the tri-vision.eval/1 JSON report (+ CSV, confusion-matrix plot) to --report or <out_dir>/eval.json."""

from __future__ import annotations

from pathlib import Path

from common.cli import run_script
from common.config import build_parser, cli_overrides, load_config
from common.distributed import init_distributed, maybe_relaunch, parse_devices
from common.io import check_outputs
from common.runtime import keep_freed_memory


def main(argv: list[str] | None = None) -> None:

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser(
        "Evaluate an SMMCL checkpoint (mIoU, per-class/per-image IoU, confusion, overlays)."
    )
    parser.add_argument(
        "-e", "--epoch", type=int, default=None, help="evaluate <out_dir>/checkpoints/epoch-N.pth"
    )
    args = parser.parse_args(argv)
    from common.evaluation import model_info
    from smmcl.experiment import from_checkpoint, iou_table, run_evaluation, test_dataset
    from smmcl.models import MAIN_MODEL

    ckpt = args.checkpoint
    if ckpt is None:
        if args.epoch is None:
            parser.error("give --checkpoint PATH or -e/--epoch N")
        from smmcl.experiment import ExperimentConfig

        out = args.out_dir or load_config(args.config, ExperimentConfig, cli_overrides(args)).train.out_dir
        ckpt = Path(out) / "checkpoints" / f"epoch-{args.epoch}.pth"
    devices = parse_devices(args.devices)
    maybe_relaunch(devices)
    info = init_distributed(devices)
    cfg, model, diffs = from_checkpoint(ckpt, args.config, cli_overrides(args))
    for key, old, new in diffs if info.rank == 0 else ():
        print(f"config differs from the checkpoint's: {key}: {old!r} -> {new!r}")
    out = Path(cfg.train.out_dir)
    report = args.report or out / "eval.json"
    data = test_dataset(cfg)
    plot = report.with_name(report.stem + "_confusion.png")
    check_outputs([report, report.with_suffix(".csv"), plot], [ckpt, data.root], dirs=[out / "overlays"])
    model.to(info.device)
    block = model_info(MAIN_MODEL, weights=None, checkpoint=ckpt, config=cfg)
    result = run_evaluation(
        model,
        data,
        cfg.eval,
        cfg.model.num_classes,
        class_names=cfg.class_names,
        overlay_dir=out / "overlays",
        report_path=report,
        model_block=block,
    )
    if info.rank == 0:
        scores = {k.split(".", 1)[1]: v for k, v in result.aggregate.items() if k.startswith("seg.")}
        print(iou_table({**scores, "iou": result.extra["seg"]["iou"]}, cfg.class_names))
        for part, split in result.extra.get("splits", {}).items():
            print(f"{part}: mIoU {100 * split['miou']:.3f} % over {split['images']} images")
        if "splits_note" in result.extra:
            print(f"note: {result.extra['splits_note']}")
        print(f"report: {result.path}")


def cli() -> None:
    """Console-script entry point (`tv-eval-smmcl`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
