"""Run folders and the resume policy: who may write into `<out_dir>`, which checkpoint a run continues
from, and which config changes a resume accepts (split out of common.engine, issue 19 section 3).

- One run per folder: rank 0 holds `<out_dir>/.lock` (`common.io.take_lock`, the lock of every output)
  from `prepare_run_dir` until the Trainer's `fit` ends; the OS drops the lock when the process dies
  (kill -9 included), so a killed run never leaves the folder stuck. A second run into a held folder stops with a `RunFolderError` naming the
  folder and the holder's pid.
- A new run in a folder holding checkpoints stops unless it resumes (`--resume auto`) or `--overwrite`
  moves the old files into `<out_dir>/old-<time>/` (nothing is deleted).
- Checkpoints are found by the pattern `train.ckpt_name` names (`ckpt-{step}.pt` -> `ckpt-*.pt`).
- On resume the stored config is compared with the new one (`check_resume_config`).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import string
from datetime import datetime
from pathlib import Path
from typing import Any

import torch.distributed as dist

from common.checkpoint import latest_checkpoint
from common.config import ABSENT, config_diff, config_to_dict
from common.distributed import barrier, get_rank, get_world_size
from common.errors import TriVisionError
from common.io import LockedError, clean_stale_temp_files, release_lock, take_lock

__all__ = [
    "RESUMABLE_CHANGES",
    "RunFolderError",
    "ConfigChangeError",
    "checkpoint_pattern",
    "check_ckpt_name",
    "prepare_run_dir",
    "release_run_folder",
    "check_resume_config",
    "resume_path",
]

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"

# Config keys (matched on the last dotted component) that may differ between a checkpoint and the run
# that resumes it: they lengthen or re-time the run or change only where and how it reports.
RESUMABLE_CHANGES = frozenset(
    {
        "max_steps",
        "max_epochs",
        "max_seconds",
        "eval_every",
        "log_every",
        "ckpt_every",
        "keep_last",
        "progress",
        "tensorboard",
        "csv",
        "out_dir",
    }
)


class RunFolderError(TriVisionError, RuntimeError):
    """A new run would start in a folder that holds another run's checkpoints, or that a live run holds."""


class ConfigChangeError(TriVisionError, ValueError):
    """The config of a resumed run differs from its checkpoint's in keys that change the training."""


def check_ckpt_name(name: str) -> None:
    """ValueError unless `name` is a file name whose only fields are {step} and {epoch}."""
    if "/" in name or os.sep in name or name in ("", ".", ".."):
        raise ValueError(f"ckpt_name {name!r} must be a file name (no folders)")
    try:
        name.format(step=0, epoch=0)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"ckpt_name {name!r} may use only the fields {{step}} and {{epoch}} ({exc})"
        ) from None


def checkpoint_pattern(ckpt_name: str) -> str:
    """Glob matching every name `ckpt_name` formats to: 'step-{step:08d}.pth' -> 'step-*.pth'."""
    parts = []
    for literal, field, _spec, _conv in string.Formatter().parse(ckpt_name):
        parts.append(glob.escape(literal))
        if field is not None:
            parts.append("*")
    return "".join(parts)


# ------------------------------------------------------------------------------------- the lock
def _lock(out_dir: Path) -> str | None:
    """Lock `out_dir` for this process (common.io.take_lock, re-entrant): None on success, else why not."""
    try:
        take_lock(out_dir / LOCK_NAME, out_dir)
    except LockedError as exc:
        return (
            f"{out_dir} is in use by another run ({exc.holder} holds {exc.lock}); wait for it, "
            "stop it, or choose another -o/--out-dir"
        )
    except OSError as exc:
        return f"{out_dir}: cannot create the run folder ({exc.strerror})"
    return None


def release_run_folder(out_dir: str | Path) -> None:
    """Release this process's lock on `out_dir` (no-op when not held)."""
    release_lock(Path(out_dir) / LOCK_NAME)


def _hold(out_dir: Path) -> None:
    """Rank 0 takes the lock; every rank raises the same RunFolderError when another run holds it."""
    problem = _lock(out_dir) if get_rank() == 0 else None
    if get_world_size() > 1:
        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem:
        raise RunFolderError(problem)


# ------------------------------------------------------------------------------------ run folder
def _move_aside(out_dir: Path) -> Path:
    """Move every entry of out_dir (except earlier old-* folders and the lock) into out_dir/old-<time>/."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = out_dir / f"old-{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = out_dir / f"old-{stamp}-{n}"
    dest.mkdir()
    for entry in sorted(out_dir.iterdir()):
        if entry != dest and not entry.name.startswith("old-") and entry.name != LOCK_NAME:
            shutil.move(str(entry), str(dest / entry.name))
    return dest


def prepare_run_dir(
    out_dir: str | Path,
    *,
    resume: str | None = None,
    overwrite: bool = False,
    ckpt_name: str = "*.pth",
) -> None:
    """Hold (rank 0) and check a run folder before a run starts; every rank calls it.

    Takes the folder's lock (RunFolderError naming the holder's pid when a live run has it), removes temp
    files left by killed checkpoint writes. A folder holding checkpoints (any file in checkpoints/) starts
    a new run only with `overwrite` (the old files move into `<out_dir>/old-<time>/`, nothing is
    deleted); `resume` (a path or "auto") continues. Files of an earlier run that wrote no checkpoint
    (config.yaml, metrics.jsonl, tb/) are moved aside the same way so that logs never mix.
    """
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if resume is not None and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other: continue a run or start afresh")
    _hold(out_dir)
    main = get_rank() == 0
    if main:
        for folder in (out_dir, ckpt_dir):
            for p in clean_stale_temp_files(folder):
                log.info("removed %s, left by an interrupted write", p)
    ours = latest_checkpoint(ckpt_dir, checkpoint_pattern(ckpt_name))
    if resume is not None and (resume != "auto" or ours is not None):
        return  # continuing a run
    found = sorted(p.name for p in ckpt_dir.glob("[!.]*") if p.is_file()) if ckpt_dir.is_dir() else []
    if found and not overwrite:
        raise RunFolderError(
            f"{out_dir} already holds checkpoints of a run ({', '.join(found[-3:])}"
            + (f"; none matches train.ckpt_name {ckpt_name!r}" if resume is not None else "")
            + f"); continue it with --resume auto, start afresh with --overwrite (moves the old files "
            f"into {out_dir}/old-<time>/), or choose another -o/--out-dir"
        )
    if main and out_dir.is_dir():
        entries = [p for p in out_dir.iterdir() if not p.name.startswith("old-")]
        earlier = [p for p in entries if p.name in ("config.yaml", "metrics.jsonl", "tb", "checkpoints")]
        if found or earlier:  # found implies overwrite here
            dest = _move_aside(out_dir)
            log.info("moved the files of the earlier run in %s to %s", out_dir, dest)
    barrier()


# ---------------------------------------------------------------------------------------- resume
def check_resume_config(
    stored: Any, config: Any, path: str | Path, *, allow: bool = False
) -> list[tuple[str, Any, Any]]:
    """Differences (key, checkpoint value, new value) between a checkpoint's config and this run's.

    Keys in RESUMABLE_CHANGES may differ; any other difference raises ConfigChangeError naming each key
    with both values, unless `allow` (the new values are then applied by the Trainer).
    """
    if not isinstance(stored, dict):
        log.warning("checkpoint %s holds no config: cannot compare it with this run's", path)
        return []
    diffs = config_diff(stored, config_to_dict(config))
    # keys on one side only come from a schema that gained or lost a field since the checkpoint: logged
    blocking = [
        (k, old, new)
        for k, old, new in diffs
        if k.rsplit(".", 1)[-1] not in RESUMABLE_CHANGES and ABSENT not in (old, new)
    ]
    if blocking and not allow:
        shown = "\n".join(f"  {k}: checkpoint {old!r} -> now {new!r}" for k, old, new in blocking)
        raise ConfigChangeError(
            f"the config differs from the one {path} was trained with:\n{shown}\n"
            "resume with the checkpoint's values, pass --allow-config-change to apply the new ones, "
            "or start a new run (--overwrite or another -o/--out-dir)"
        )
    return diffs


def resume_path(out_dir: str | Path, resume: str | Path | None, ckpt_name: str = "*.pth") -> Path | None:
    """The checkpoint a run continues from: an explicit path, the newest in <out_dir>/checkpoints whose
    name `ckpt_name` (train.ckpt_name) could have written for "auto" (None when there is none), or None
    when not resuming."""
    if resume is None:
        return None
    if str(resume) == "auto":
        return latest_checkpoint(Path(out_dir) / "checkpoints", checkpoint_pattern(ckpt_name))
    return Path(resume)
