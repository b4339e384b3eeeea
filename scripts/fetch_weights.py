"""Fetch pinned pretrained weights into the weights cache ($TRIVISION_WEIGHTS); run once, offline after."""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["all", "nvs_sqa", "lpips"], nargs="?", default="all")
    parser.add_argument("--force", action="store_true", help="re-download and re-convert LPIPS trunks")
    args = parser.parse_args()
    if args.what in ("all", "lpips"):
        from common.weights import fetch_lpips_weights

        for net, path in fetch_lpips_weights(force=args.force).items():
            print(f"lpips {net}: {path}")
    if args.what in ("all", "nvs_sqa"):
        from nvs_sqa.weights import fetch_official_weights  # written by the nvs_sqa package

        print(f"nvs_sqa: {fetch_official_weights()}")


if __name__ == "__main__":
    main()
