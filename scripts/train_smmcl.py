"""Train SMMCL: `python scripts/train_smmcl.py -c conf/smmcl/llrgbd.yaml -d 0-3` (DDP over GPUs 0-3)."""

from __future__ import annotations

from common.config import build_parser, cli_overrides, load_config
from common.engine import Trainer
from common.runtime import keep_freed_memory
from smmcl.experiment import ExperimentConfig, build


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    args = build_parser(
        "Train SMMCL (dual-branch MSCAN + multi-modal contrast) on an RGB-X dataset."
    ).parse_args(argv)
    cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
    Trainer(cfg.train, **build(cfg), devices=args.devices, resume=args.resume, config=cfg).fit()


if __name__ == "__main__":
    main()
