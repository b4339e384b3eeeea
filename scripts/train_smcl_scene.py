"""Train the SMCL scene-level point renderer (R-MSA + U-Net) on one scene: -c conf/smcl/nerf_synthetic/lego.yaml.

Runs through common.engine: checkpoints in <out_dir>/checkpoints, --resume auto continues at any step
(also after point pruning / growth), -d 0-3 trains with one DDP process per GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.cli import run_options, run_script
from common.config import build_parser, cli_overrides, load_config
from common.runtime import keep_freed_memory

if TYPE_CHECKING:
    from smcl.scene.experiment import ExperimentConfig


def check_nvs_sqa_inputs(cfg: ExperimentConfig) -> None:
    """Before the first step: the NVS-SQA weights are fetched and the test views are large enough
    (a missing file or a small view would otherwise stop the run at its first check, minutes in)."""
    from common.config import ConfigError
    from common.weights import cached_file
    from nvs_sqa.frames import MIN_SIDE
    from nvs_sqa.weights import OFFICIAL
    from smcl.scene.experiment import load_scene

    for f in OFFICIAL.files:
        cached_file(OFFICIAL, f.name)  # WeightsError naming the file and the fetch command
    h, w = load_scene(cfg.data, cfg.data.test_split).hw
    if min(h, w) < MIN_SIDE:
        raise ConfigError(
            f"nvs_sqa_every: NVS-SQA needs views of at least {MIN_SIDE} px, the {cfg.data.test_split} views "
            f"are {w}x{h}; use a smaller data.factor or nvs_sqa_every=0"
        )


def nvs_sqa_callback(cfg: ExperimentConfig, devices: str):
    """nvs_sqa_every > 0: NVS-SQA of a rendered novel trajectory, logged as eval/nvs_sqa (off by default)."""
    from common.callbacks import NoReferenceQuality
    from common.distributed import parse_devices
    from nvs_sqa import QualityAssessor
    from smcl.scene.experiment import trajectory_render_fn

    cpu = parse_devices(devices) == "cpu"
    check_nvs_sqa_inputs(cfg)
    qa: list = []  # built at the first event, on the main training process (after any relaunch)

    def score(frames) -> float:  # (T, 3, H, W) in [0, 1]
        if not qa:
            qa.append(QualityAssessor.from_official(device="cpu" if cpu else "cuda"))
        return qa[0].score_frames((frames.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()).jod

    return NoReferenceQuality(trajectory_render_fn(cfg, cfg.nvs_sqa_frames), score, cfg.nvs_sqa_every)


def main() -> None:
    from smcl.scene.experiment import ExperimentConfig, train

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    args = build_parser(__doc__).parse_args()
    cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
    extra = (nvs_sqa_callback(cfg, args.devices),) if cfg.nvs_sqa_every > 0 else ()
    train(cfg, **run_options(args), callbacks=extra)


def cli() -> None:
    """Console-script entry point (`tv-train-smcl-scene`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
