"""Evaluate NVS-SQA features on a labelled benchmark bank with the official protocol (+ pooled statistics)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common.runtime import keep_freed_memory
from nvs_sqa.assessor import QualityAssessor
from nvs_sqa.evaluation import evaluate_features, extract_features, format_report, load_labels
from nvs_sqa.experiment import load_encoder_checkpoint
from nvs_sqa.models import build_model


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--bank", type=Path, required=True, help="benchmark_bank/<dataset>/<Scene>/<method>/frames/"
    )
    p.add_argument("--labels", type=Path, required=True, help="flat split JSON (tr_keys, tt_keys, labels)")
    p.add_argument("--checkpoint", type=Path, help="our training checkpoint instead of the official weights")
    p.add_argument("--features-cache", type=Path, help="npz of features: read if present, else written")
    p.add_argument(
        "--standardize", action="store_true", help="standardised ridge (not the official protocol)"
    )
    p.add_argument("--save-regressor", type=Path, help="write the refitted read-out (.npz)")
    p.add_argument("--json", type=Path, help="write the full report")
    p.add_argument("-d", "--devices", default="cpu")
    args = p.parse_args()
    split = load_labels(args.labels)
    keys = split["tr_keys"] + split["tt_keys"]
    if args.features_cache and args.features_cache.exists():
        with np.load(args.features_cache) as z:
            feats = {k: z[k] for k in keys}
    else:
        model = None
        if args.checkpoint:
            model = load_encoder_checkpoint(build_model(), args.checkpoint)
        qa = (
            QualityAssessor(device=args.devices, model=model)
            if model
            else QualityAssessor(device=args.devices)
        )
        feats = extract_features(qa, args.bank, keys)
        if args.features_cache:
            np.savez(args.features_cache, **feats)
    report, ridge = evaluate_features(feats, split, standardize=args.standardize)
    print(format_report(report))
    if args.save_regressor:
        ridge.save(args.save_regressor)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
