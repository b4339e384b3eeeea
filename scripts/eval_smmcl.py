"""Evaluate SMMCL: `python scripts/eval_smmcl.py -c conf/smmcl/llrgbd.yaml -d 0-3 -e 500`."""

from __future__ import annotations

import json
from pathlib import Path

from common.config import build_parser, cli_overrides, load_config
from common.distributed import init_distributed, maybe_relaunch, parse_devices
from common.runtime import keep_freed_memory
from smmcl.experiment import (
    ExperimentConfig,
    build_model_from,
    evaluate,
    iou_table,
    load_trained,
    test_dataset,
)


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser("Evaluate an SMMCL checkpoint (mIoU, per-class IoU, overlays).")
    parser.add_argument(
        "-e", "--epoch", type=int, default=None, help="load <out_dir>/checkpoints/epoch-N.pth"
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="explicit checkpoint (ours or official)"
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
    out = Path(cfg.train.out_dir)
    ckpt = args.checkpoint or (
        out / "checkpoints" / f"epoch-{args.epoch}.pth" if args.epoch is not None else None
    )
    if ckpt is None:
        parser.error("give -e/--epoch or --checkpoint")
    devices = parse_devices(args.devices)
    maybe_relaunch(devices)
    info = init_distributed(devices)
    model = build_model_from(cfg)
    load_trained(model, ckpt)
    model.to(info.device)
    metrics = evaluate(
        model, test_dataset(cfg), cfg.eval, cfg.model.num_classes, info, overlay_dir=out / "overlays"
    )
    if info.rank == 0:
        table = iou_table(metrics, cfg.class_names)
        print(table)
        (out / "eval.md").write_text(f"Checkpoint `{ckpt}`\n\n{table}\n")
        summary = {
            k: float(v)
            for k, v in metrics.items()
            if k in ("miou", "miou_all", "pixel_acc", "mean_acc", "fw_iou")
        }
        (out / "eval.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
