"""Render a scene's test split with a trained model; PSNR/SSIM/LPIPS (official-compat and standard),
per-view PNGs and a fly-through GIF: -c conf/smcl/nerf_synthetic/lego.yaml --checkpoint PATH
(ours) or --official PATH (an official/PAPR model.pth or model_<step>.pth, spec smcl.md 7.4)."""

from __future__ import annotations

import json
from pathlib import Path

from common.config import build_parser, cli_overrides, load_config
from common.runtime import keep_freed_memory
from smcl.scene.experiment import ExperimentConfig, evaluate_split, load_trained


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    parser = build_parser(__doc__)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="engine checkpoint (.pth)")
    src.add_argument(
        "--official", type=Path, help="official model.pth ({'<step>': state_dict}) or model_<step>.pth"
    )
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (needs fetched trunk weights)")
    args = parser.parse_args()
    cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
    if args.official:
        from smcl.scene.official import load_official_scene

        model, report = load_official_scene(args.official, cfg.model)
        model.eval()
        print(f"loaded official checkpoint (step {report['step']}, {model.points.shape[0]} points)")
    else:
        model = load_trained(cfg, args.checkpoint)
    out = Path(cfg.train.out_dir) / "test"
    metrics = evaluate_split(model, cfg, out, lpips=not args.no_lpips)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
