"""Train the SMCL object-level view synthesizer: python scripts/train_smcl.py -c conf/smcl/mir180.yaml -n display -D <root>."""

from __future__ import annotations

from common.config import build_parser, cli_overrides, load_config
from common.engine import Trainer
from common.runtime import keep_freed_memory
from smcl.object.experiment import SynthExperiment, build_synth


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser(__doc__)
    parser.add_argument(
        "-n", "--name", default=None, help="experiment name; run dir runs/smcl/<name> unless -o"
    )
    parser.add_argument("-D", "--datadir", default=None, help="NMR-layout root (Mir-180 For_Synthesis)")
    args = parser.parse_args()
    overrides = [f"data.root={args.datadir}"] if args.datadir else []
    if args.name and args.out_dir is None:
        overrides.append(f"train.out_dir=runs/smcl/{args.name}")
    cfg = load_config(args.config, SynthExperiment, overrides + cli_overrides(args))
    Trainer(cfg.train, **build_synth(cfg), devices=args.devices, resume=args.resume, config=cfg).fit()


if __name__ == "__main__":
    main()
