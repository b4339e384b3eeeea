"""Train SMMCL: `python scripts/train_smmcl.py -c conf/smmcl/llrgbd.yaml -d 0-3` (DDP over GPUs 0-3).

`train.global_batch_size` is the batch over all processes (LLRGBD: 16, the official recipe on 1 or 4 GPUs);
`loss.contrast_groups` likewise counts groups of the global batch."""

from __future__ import annotations

from common.cli import run_options, run_script
from common.config import build_parser, cli_overrides, load_config
from common.runtime import keep_freed_memory


def main(argv: list[str] | None = None) -> None:

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    args = build_parser(
        "Train SMMCL (dual-branch MSCAN + multi-modal contrast) on an RGB-X dataset."
    ).parse_args(argv)
    from common.engine import Trainer, prepare_run
    from smmcl.experiment import ExperimentConfig, build

    cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
    opts = run_options(args)
    info = prepare_run(cfg, **opts)  # relaunch, run folder, config check on resume, seed: before building
    Trainer(cfg.train, **build(cfg, info.world_size), config=cfg, **opts).fit()


def cli() -> None:
    """Console-script entry point (`tv-train-smmcl`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
