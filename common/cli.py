"""What every script does around its `main`: the project's errors as one line, and the run options.

Scripts end with::

    if __name__ == "__main__":
        run_script(main)

A :class:`common.errors.TriVisionError` (a problem with the user's files, config or arguments) is printed
as ``error: <message>`` on stderr and the script exits with status 2, without a traceback (``--debug`` on
the command line or ``TRIVISION_DEBUG=1`` shows it); Ctrl-C exits with 130; any other exception is a bug
and keeps its traceback. The process group of a distributed run is destroyed on the way out.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from common.distributed import cleanup_distributed, get_rank, get_world_size
from common.errors import TriVisionError

__all__ = ["run_script", "run_options", "debug_enabled"]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def debug_enabled(argv: list[str] | None = None) -> bool:
    """--debug among the arguments, or TRIVISION_DEBUG set to 1/true/yes."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("TRIVISION_DEBUG", "").lower() in ("1", "true", "yes")


def run_script(main: Callable[[], Any], argv: list[str] | None = None) -> NoReturn:
    """Run `main()` and exit: its int return value (0 for None), 2 for a TriVisionError, 130 on Ctrl-C."""
    code: int = 0
    try:
        result = main()
        code = result if isinstance(result, int) and not isinstance(result, bool) else 0
    except TriVisionError as exc:
        if debug_enabled(argv):
            traceback.print_exc()
        where = f"[rank {get_rank()}] " if get_world_size() > 1 else ""
        print(f"{where}error: {exc}", file=sys.stderr)
        code = EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        cleanup_distributed()
    sys.stdout.flush()
    sys.exit(code)


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Trainer keyword arguments the shared flags set (`devices`, `resume`, `overwrite`,
    `allow_config_change`): ``Trainer(cfg.train, **build(cfg), config=cfg, **run_options(args))``;
    `prepare_run(cfg, devices=..., resume=..., overwrite=...)` takes the first three."""
    return {
        "devices": getattr(args, "devices", "cpu"),
        "resume": getattr(args, "resume", None),
        "overwrite": bool(getattr(args, "overwrite", False)),
        "allow_config_change": bool(getattr(args, "allow_config_change", False)),
    }
