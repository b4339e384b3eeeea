"""Render a scene's test split with a trained model and report PSNR/SSIM/LPIPS (official-compat and
standard) per view and on average (tri-vision.eval/1 JSON + CSV), per-view PNGs and a fly-through GIF.

  --checkpoint runs/smcl_scene/lego/checkpoints/step-00250000.pth   (model and settings from the
      checkpoint alone; -c / --set are optional overrides, printed when they differ)
  -c conf/smcl/nerf_synthetic/lego.yaml --official model.pth [--weights official|official_step|papr]
  --nvs-sqa adds a no-reference column: NVS-SQA on the test views in camera order and on a rendered
      novel trajectory through the test cameras (needs `python scripts/fetch_weights.py nvs_sqa`)."""

from __future__ import annotations

from pathlib import Path

from common.cli import run_script
from common.config import build_parser, cli_overrides, load_config
from common.distributed import init_distributed, maybe_relaunch, parse_devices
from common.errors import TriVisionError
from common.io import check_outputs
from common.runtime import keep_freed_memory


def main() -> None:
    from common.evaluation import model_info
    from smcl.scene.experiment import ExperimentConfig, evaluate_split, from_checkpoint

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser(__doc__)
    parser.add_argument("--official", type=Path, help="an official / PAPR scene file (needs -c for the data)")
    parser.add_argument("--weights", default="official", help="format tag of --official (default official)")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (needs fetched trunk weights)")
    parser.add_argument("--nvs-sqa", action="store_true", help="no-reference NVS-SQA scores")
    parser.add_argument("--trajectory-frames", type=int, default=60, help="frames of the novel trajectory")
    args = parser.parse_args()
    if (args.checkpoint is None) == (args.official is None):
        raise TriVisionError("give exactly one of --checkpoint PATH and --official PATH")
    devices = parse_devices(args.devices)
    maybe_relaunch(devices)
    info = init_distributed(devices)
    if args.official:
        from smcl.scene.official import load_official_scene

        if args.config is None:
            raise TriVisionError("--official needs -c <scene config> (data, coordinate scale, architecture)")
        cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
        model = load_official_scene(args.official, args.weights, cfg.model).eval()
        meta = model_info("smcl_rmsa_renderer", weights=args.weights, checkpoint=args.official, config=cfg)
    else:
        model, cfg = from_checkpoint(args.checkpoint, args.config, cli_overrides(args))
        meta = model_info("smcl_rmsa_renderer", checkpoint=args.checkpoint, config=cfg)
    out = Path(cfg.train.out_dir) / "test"
    report = args.report or out / "eval.json"
    inputs = [cfg.data.root, args.checkpoint or args.official]
    check_outputs([report, report.with_suffix(".csv")], inputs, dirs=[out])  # before any rendering
    scorer = None
    if args.nvs_sqa:
        from nvs_sqa import QualityAssessor

        qa = QualityAssessor.from_official(device=info.device)

        def scorer(frames):
            return qa.score_frames(frames).jod

        scorer.name = "nvs_sqa"
    agg = evaluate_split(
        model.to(info.device),
        cfg,
        out,
        lpips=not args.no_lpips,
        report_path=report,
        model_info=meta,
        no_reference=scorer,
        trajectory_frames=args.trajectory_frames,
    )
    if info.rank == 0:
        print("\n".join(f"{k:>24s} {v:.4f}" for k, v in agg.items()))
        print(f"report: {report} (+ .csv); renders: {out}")


def cli() -> None:
    """Console-script entry point (`tv-test-smcl-scene`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
