"""What every script does around its `main`: the project's errors as one line, and the run options.

Scripts end with::

    if __name__ == "__main__":
        run_script(main)

A :class:`common.errors.TriVisionError` (a problem with the user's files, config or arguments) is printed
as ``error: <message>`` on stderr and the script exits with status 2, without a traceback (``--debug`` on
the command line or ``TRIVISION_DEBUG=1`` shows it); Ctrl-C exits with 130; any other exception is a bug
and keeps its traceback. Under torchrun (or srun) an error that every rank hits is printed once, by rank 0;
a rank whose error differs prints it with its rank. The process group of a distributed run is destroyed on
the way out. Training stopped by SIGTERM / SIGINT / SIGUSR1 exits 128 + signum after its checkpoint
(`common.engine.StoppedBySignal`).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn

import torch.distributed as dist

from common.distributed import cleanup_distributed, get_rank, get_world_size
from common.errors import TriVisionError

__all__ = ["run_script", "run_options", "debug_enabled"]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
_RANK0_WAIT_S = 3.0  # how long another rank waits for rank 0's error before printing its own


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
        _print_error(str(exc))
        code = EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        cleanup_distributed()
    sys.stdout.flush()
    sys.exit(code)


def _error_store() -> Any:
    """A key-value store every rank of this launch reaches (torchrun's agent store, else the process
    group's), or None."""
    try:
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true":
            host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
            return dist.TCPStore(host, port, is_master=False, timeout=timedelta(seconds=5))
        if dist.is_available() and dist.is_initialized():
            return dist.distributed_c10d._get_default_store()
    except (KeyError, ValueError, RuntimeError):
        pass
    return None


def _print_error(message: str) -> None:
    """`error: <message>` once per distinct message over a distributed launch: rank 0 prints its own;
    another rank prints (as `[rank r] error: ...`) only when rank 0 reported no error or another one, so
    an error every rank hits (a bad config) is one line instead of one per rank."""
    rank = get_rank() if get_world_size() > 1 else int(os.environ.get("RANK", "0"))
    world = max(get_world_size(), int(os.environ.get("WORLD_SIZE", "1")))
    same = False
    if world > 1:
        store = _error_store()
        attempt = (
            f"{os.environ.get('TORCHELASTIC_RUN_ID', '')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '')}"
        )
        key = f"trivision/error/{attempt}/"
        try:
            if store is not None and rank != 0:
                store.wait([key + "0"], timedelta(seconds=_RANK0_WAIT_S))
                same = store.get(key + "0").decode() == message
        except (RuntimeError, ValueError):  # rank 0 failed otherwise or not at all (wait timed out)
            pass
    if not same:
        where = f"[rank {rank}] " if world > 1 and rank != 0 else ""
        print(f"{where}error: {message}", file=sys.stderr, flush=True)
    if world > 1 and store is not None:
        try:
            if rank == 0:  # publish, then give the others a moment to compare before torchrun stops them
                store.set(key + "0", message)
                others = [f"{key}done/{r}" for r in range(1, world)]
                store.wait(others, timedelta(seconds=_RANK0_WAIT_S))
            else:
                store.set(f"{key}done/{rank}", "1")
        except (RuntimeError, ValueError):
            pass


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
