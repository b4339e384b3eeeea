"""Graph contrastive pretraining of the point encoder on one prepared cloud, through common.engine:
-c conf/smcl/point_gcl.yaml --set points=<cloud.npy> -o runs/point_gcl/lego [-d 0-3] [--resume auto].

Writes checkpoints to <out_dir>/checkpoints and the encoder's state dict to <out_dir>/point_gcl.pth,
the file a scene config's points.gcl_weights names."""

from __future__ import annotations

from pathlib import Path

from common.cli import run_options, run_script
from common.config import build_parser, cli_overrides, load_config
from common.io import check_outputs_outside_inputs
from common.runtime import keep_freed_memory


def main() -> None:
    from smcl.scene.pretrain import ENCODER_FILE, PointPretrainConfig, run

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    args = build_parser(__doc__).parse_args()
    cfg = load_config(args.config, PointPretrainConfig, cli_overrides(args))
    check_outputs_outside_inputs([cfg.train.out_dir], [cfg.points])
    _, hist = run(cfg, **run_options(args))
    if hist:
        print(f"InfoNCE per epoch {hist[0]:.4f} -> {hist[-1]:.4f}")
    print(f"wrote {Path(cfg.train.out_dir) / ENCODER_FILE}")


def cli() -> None:
    """Console-script entry point (`tv-pretrain-smcl-points`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
