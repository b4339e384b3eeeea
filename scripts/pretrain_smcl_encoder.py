"""Contrastive pretraining of the SMCL dual-domain encoder: python scripts/pretrain_smcl_encoder.py -c conf/smcl/pretrain.yaml."""

from __future__ import annotations

from common.config import build_parser, cli_overrides, load_config
from common.engine import Trainer
from common.runtime import keep_freed_memory
from smcl.object.experiment import PretrainExperiment, build_pretrain


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser(__doc__)
    parser.add_argument("-D", "--datadir", default=None, help="NMR-layout root holding the Mir-180 objects")
    args = parser.parse_args()
    overrides = [f"data.root={args.datadir}"] if args.datadir else []
    cfg = load_config(args.config, PretrainExperiment, overrides + cli_overrides(args))
    Trainer(cfg.train, **build_pretrain(cfg), devices=args.devices, resume=args.resume, config=cfg).fit()


if __name__ == "__main__":
    main()
