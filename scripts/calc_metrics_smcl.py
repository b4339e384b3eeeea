"""PSNR / SSIM (uniform 7x7 and Gaussian) / LPIPS-VGG on saved renders: python scripts/calc_metrics_smcl.py -D <root> -O eval_out/display [--report PATH.json] [--allow-missing]."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import run_script
from common.io import check_outputs
from common.runtime import keep_freed_memory


def main() -> None:

    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-D", "--datadir", type=Path, required=True, help="NMR-layout root with ground truth")
    p.add_argument(
        "-O", "--output", type=Path, default=Path("eval_out"), help="folder written by eval_smcl.py"
    )
    p.add_argument("--list-name", default="softras_test")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS-VGG")
    p.add_argument("--allow-missing", action="store_true",
                   help="skip objects/views without a render (named in the log, counted in the report)")  # fmt: skip
    p.add_argument("--report", type=Path, default=None, help="JSON report (default: <output>/metrics.json)")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    a = p.parse_args()
    from smcl.object.metrics import calc_metrics

    report = a.report or a.output / "metrics.json"
    check_outputs([report, report.with_suffix(".csv")], [a.datadir])  # the ground truth is never written to
    res = calc_metrics(a.datadir, a.output, a.list_name, lpips=not a.no_lpips, allow_missing=a.allow_missing,
                       report_path=report)  # fmt: skip
    skipped = len(res.extra["missing_objects"]) + len(res.extra["missing_views"])
    print(" ".join(f"{k} {v:.4f}" for k, v in res.aggregate.items()), f"({len(res.items)} objects"
          + (f", {skipped} missing objects/views skipped" if skipped else "") + ")")  # fmt: skip
    print(f"report: {res.path}")


def cli() -> None:
    """Console-script entry point (`tv-calc-metrics-smcl`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
