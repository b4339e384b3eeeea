"""PSNR / SSIM (uniform 7x7 and Gaussian) / LPIPS-VGG on saved renders: python scripts/calc_metrics_smcl.py -D <root> -O eval_out/display."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.runtime import keep_freed_memory
from smcl.object.metrics import calc_metrics


def main() -> None:
    keep_freed_memory()  # reuse large freed CPU buffers instead of page-faulting them in again
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-D", "--datadir", type=Path, required=True, help="NMR-layout root with ground truth")
    p.add_argument(
        "-O", "--output", type=Path, default=Path("eval_out"), help="folder written by eval_smcl.py"
    )
    p.add_argument("--list-name", default="softras_test")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS-VGG")
    a = p.parse_args()
    res = calc_metrics(a.datadir, a.output, a.list_name, lpips=not a.no_lpips)
    print(" ".join(f"{k} {v:.4f}" for k, v in res["mean"].items()), f"({len(res['per_object'])} objects)")


if __name__ == "__main__":
    main()
