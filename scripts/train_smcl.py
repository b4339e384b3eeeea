"""Train the SMCL object-level view synthesizer: python scripts/train_smcl.py -c conf/smcl/mir180.yaml -n display -D <root>."""

from __future__ import annotations

from common.cli import run_options, run_script
from common.config import build_parser, cli_overrides, load_config
from common.runtime import keep_freed_memory


def main() -> None:
    import numpy as np

    from common.engine import Trainer, prepare_run
    from smcl.object.experiment import SynthExperiment, build_synth

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
    opts = run_options(args)
    prepare_run(cfg, opts["devices"], resume=opts["resume"], overwrite=opts["overwrite"],
                allow_config_change=opts["allow_config_change"])  # fmt: skip
    parts = build_synth(cfg)  # seeds before building
    callbacks = []
    if cfg.no_reference.every > 0:  # NVS-SQA of a novel orbit every N steps (off by default)
        from common.callbacks import NoReferenceQuality
        from common.viz import to_uint8
        from nvs_sqa import QualityAssessor
        from nvs_sqa.frames import MIN_SIDE
        from smcl.object.experiment import orbit_renderer
        from smcl.object.metrics import upscale_for

        qa = QualityAssessor.from_official()

        def score(frames):  # (T, 3, H, W) in [0, 1] -> JOD
            u8 = np.stack([to_uint8(f, chw=True) for f in frames])
            return qa.score_frames(upscale_for(u8, MIN_SIDE)).jod

        callbacks.append(NoReferenceQuality(orbit_renderer(cfg), score, cfg.no_reference.every))
    Trainer(cfg.train, **parts, config=cfg, callbacks=callbacks, **opts).fit()


def cli() -> None:
    """Console-script entry point (`tv-train-smcl`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
