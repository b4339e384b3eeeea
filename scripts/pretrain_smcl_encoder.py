"""Contrastive pretraining of the SMCL dual-domain encoder: python scripts/pretrain_smcl_encoder.py -c conf/smcl/pretrain.yaml."""

from __future__ import annotations

from common.cli import run_options, run_script
from common.config import build_parser, cli_overrides, load_config
from common.runtime import keep_freed_memory


def main() -> None:
    from common.engine import Trainer, prepare_run
    from smcl.object.experiment import PretrainExperiment, build_pretrain

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser(__doc__)
    parser.add_argument("-D", "--datadir", default=None, help="NMR-layout root holding the Mir-180 objects")
    args = parser.parse_args()
    overrides = [f"data.root={args.datadir}"] if args.datadir else []
    cfg = load_config(args.config, PretrainExperiment, overrides + cli_overrides(args))
    opts = run_options(args)
    prepare_run(cfg, opts["devices"], resume=opts["resume"], overwrite=opts["overwrite"],
                allow_config_change=opts["allow_config_change"])  # fmt: skip
    Trainer(cfg.train, **build_pretrain(cfg), config=cfg, **opts).fit()  # build_pretrain seeds first


def cli() -> None:
    """Console-script entry point (`tv-pretrain-smcl-encoder`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
