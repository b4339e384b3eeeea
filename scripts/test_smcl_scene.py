"""Render a scene's test split with a trained model; PSNR/SSIM/LPIPS (official-compat and standard),
per-view PNGs and a fly-through GIF: -c conf/smcl/nerf_synthetic/lego.yaml --checkpoint PATH."""

from __future__ import annotations

import json
from pathlib import Path

from common.config import build_parser, cli_overrides, load_config
from smcl.scene.experiment import ExperimentConfig, evaluate_split, load_trained


def main() -> None:
    parser = build_parser(__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True, help="engine checkpoint (.pth)")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (needs fetched trunk weights)")
    args = parser.parse_args()
    cfg = load_config(args.config, ExperimentConfig, cli_overrides(args))
    model = load_trained(cfg, args.checkpoint)
    out = Path(cfg.train.out_dir) / "test"
    metrics = evaluate_split(model, cfg, out, lpips=not args.no_lpips)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
