"""Evaluate NVS-SQA features on a labelled benchmark bank with the official protocol (+ pooled statistics).

Official weights by default; `--checkpoint PATH` evaluates a training checkpoint, rebuilt from the config
stored in it (-c / --set are optional overrides, printed when they differ). Writes the tri-vision.eval/1
JSON report (per test item: prediction and label) and its CSV to --report (default <out-dir>/report.json).
"""

from __future__ import annotations

from pathlib import Path

from common.cli import run_script
from common.config import build_parser, config_from_checkpoint
from common.io import check_outputs
from common.runtime import keep_freed_memory


def main() -> None:

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = build_parser(__doc__)
    p.add_argument(
        "--bank", type=Path, required=True, help="benchmark_bank/<dataset>/<Scene>/<method>/frames/"
    )
    p.add_argument("--labels", type=Path, required=True, help="flat split JSON (tr_keys, tt_keys, labels)")
    p.add_argument(
        "--features-cache", type=Path, help="npz of features, keyed by model weights and bank contents"
    )
    p.add_argument(
        "--standardize", action="store_true", help="standardised ridge (not the official protocol)"
    )
    p.add_argument("--save-regressor", type=Path, help="write the refitted read-out (.json)")
    p.add_argument("-d", "--devices", default="cpu", help="cpu or one CUDA index")
    args = p.parse_args()
    import numpy as np

    from common.evaluation import model_info, write_report
    from nvs_sqa.assessor import QualityAssessor
    from nvs_sqa.evaluation import (
        evaluate_features,
        features_with_cache,
        format_report,
        load_labels,
        report_blocks,
    )
    from nvs_sqa.experiment import ExperimentConfig, load_encoder_checkpoint
    from nvs_sqa.models import build_model
    from nvs_sqa.ridge import RidgeReadout

    report_path = args.report or Path(args.out_dir or "runs/eval_nvs_sqa") / "report.json"
    outputs = [report_path, report_path.with_suffix(".csv"), args.features_cache, args.save_regressor]
    # distinct (--features-cache X --report X), none over an input (ck.csv and --report ck.json), writable
    check_outputs(outputs, [args.bank, args.labels, args.checkpoint])
    split = load_labels(args.labels)
    if args.checkpoint:
        cfg, diffs = config_from_checkpoint(args.checkpoint, ExperimentConfig, args.config, args.overrides)
        for key, old, new in diffs:
            print(f"config differs from {args.checkpoint}: {key}: {old!r} -> {new!r}")
        model = load_encoder_checkpoint(build_model(cfg=cfg.model), args.checkpoint)
        unused = RidgeReadout(np.zeros(cfg.model.angular_feat_size, np.float32), 0.0)  # refitted below
        qa = QualityAssessor(device=args.devices, model=model, ridge=unused)
        block = model_info("nvs_sqa", checkpoint=args.checkpoint, config=cfg)
    else:
        qa = QualityAssessor(device=args.devices)
        block = model_info("nvs_sqa", weights="official")
    feats = features_with_cache(qa, args.bank, split["tr_keys"] + split["tt_keys"], args.features_cache)
    report, ridge = evaluate_features(feats, split, standardize=args.standardize)
    print(format_report(report))
    if args.save_regressor:
        ridge.save(args.save_regressor)
    aggregate, items, extra = report_blocks(report, split["labels"])
    settings = (
        f"NVS-SQA official protocol: frozen features, Ridge(alpha=1{', standardised' if args.standardize else ''}) "
        f"fitted on tr_keys, per-scene SRCC/PLCC over tt_keys averaged per dataset; labels {args.labels.name}"
    )
    write_report(
        report_path,
        task="nvs_sqa.evaluation",
        model=block,
        settings=settings,
        aggregate=aggregate,
        items=items,
        extra=extra,
    )
    print(f"report: {report_path}")


def cli() -> None:
    """Console-script entry point (`tv-eval-nvs-sqa`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
