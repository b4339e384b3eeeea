"""Self-supervised NVS-SQA training on renders/<scene>__<method>/ frames (common.engine).

`python scripts/train_nvs_sqa.py -c conf/nvs_sqa/train.yaml -d 0`: the official recipe (one process, batch 16);
`-c conf/nvs_sqa/train_improved.yaml -d 0-3` runs the improved variant with DDP over GPUs 0-3. The soft targets
are computed in the training step on each process's device."""

from __future__ import annotations

from common.cli import run_options, run_script
from common.config import build_parser, cli_overrides, load_config
from common.runtime import keep_freed_memory


def main(argv: list[str] | None = None) -> None:

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    args = build_parser(__doc__).parse_args(argv)
    from common.engine import Trainer, prepare_run
    from nvs_sqa.experiment import ExperimentConfig, build

    cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
    opts = run_options(args)
    prepare_run(cfg, **opts)  # relaunch, run folder, config check on resume, seed: before building
    Trainer(cfg.train, **build(cfg), config=cfg, **opts).fit()


def cli() -> None:
    """Console-script entry point (`tv-train-nvs-sqa`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
