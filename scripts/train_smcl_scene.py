"""Train the SMCL scene-level point renderer (R-MSA + U-Net) on one scene: -c conf/smcl/nerf_synthetic/lego.yaml."""

from __future__ import annotations

from common.config import build_parser, cli_overrides, load_config
from common.engine import Trainer
from common.runtime import keep_freed_memory
from smcl.scene.experiment import ExperimentConfig, build


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    args = build_parser(__doc__).parse_args()
    cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
    Trainer(cfg.train, **build(cfg), devices=args.devices, resume=args.resume, config=cfg).fit()


if __name__ == "__main__":
    main()
