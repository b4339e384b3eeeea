"""Train every scene x method with nerfstudio and render the interpolated path (renders/<scene>__<method>/)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
from pathlib import Path

from common.cli import run_script
from common.errors import TriVisionError
from common.io import check_outputs_outside_inputs


def main() -> None:
    from nvs_sqa.constants import METHODS, SCENES  # the parser's choices (plain data)

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="nerfstudio captures: <data>/<scene>/")
    p.add_argument("--outputs", type=Path, required=True, help="ns-train output folder")
    p.add_argument("--renders", type=Path, required=True, help="folder that receives renders/")
    p.add_argument("--scenes", nargs="*", default=list(SCENES))
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args()
    from nvs_sqa.data.nerfstudio import dataset_commands

    check_outputs_outside_inputs([args.outputs, args.renders], [args.data])
    cmds = dataset_commands(args.data, args.outputs, args.renders, args.scenes, args.methods)
    if not args.dry_run and shutil.which("ns-train") is None:
        raise TriVisionError(
            "nerfstudio (ns-train, ns-render) is not installed; use --dry-run to see the commands"
        )
    for cmd in cmds:
        print(shlex.join(cmd))
        if not args.dry_run:
            subprocess.run(cmd, check=True)


def cli() -> None:
    """Console-script entry point (`tv-make-nss-dataset`)."""
    run_script(main)


if __name__ == "__main__":
    cli()
