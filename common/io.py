"""File-writing safety: the one atomic-write helper, stale temp clean-up, and output-path checks.

* :func:`atomic_write` writes to ``.<name>.tmp-<pid>`` in the target's folder, flushes and fsyncs it,
  then ``os.replace``-s it over the target (and fsyncs the folder), so a reader sees either the old file
  or the complete new one; on an exception the temp file is removed and the target is untouched.
  Every atomic write in the project (checkpoints, converted weights, configs, reports, images, figures)
  goes through it or the small wrappers below.
* A process killed mid-write leaves its ``.tmp-<pid>`` file behind; :func:`clean_stale_temp_files`
  removes those whose writer process is gone (run folders call it at start-up).
* :func:`check_outputs_outside_inputs` refuses an output path equal to, or inside, an input path and
  :func:`check_writable` checks an output can be created, both before a script starts its work;
  :func:`check_outputs` is the one pre-flight check of all of a script's outputs (distinct, none over an
  input, all writable), derived paths (the CSV beside a JSON report) included.
* :func:`hold_lock` lets one process at a time write an output (``fcntl.flock`` on a sidecar file: the OS
  releases it when the process dies, so a killed run never leaves it stuck); :func:`take_lock` is the
  same lock held until :func:`release_lock` (run folders, `common.runs`).
* :func:`path_inside` turns a name read from a data file into a path that stays inside its root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from common.errors import TriVisionError

__all__ = [
    "OutputInsideInputError",
    "NotWritableError",
    "temp_path",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_torch_save",
    "atomic_savez",
    "atomic_write_csv",
    "load_npz",
    "read_json",
    "clean_stale_temp_files",
    "check_outputs_outside_inputs",
    "check_writable",
    "check_outputs",
    "OutputCollisionError",
    "LockedError",
    "hold_lock",
    "path_inside",
]

_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")


class OutputInsideInputError(TriVisionError, ValueError):
    """An output path equals, or lies inside, one of the inputs (the tool would overwrite its input)."""

    def __init__(self, output: str | Path, input: str | Path) -> None:
        same = Path(output).resolve() == Path(input).resolve()
        where = "is the input" if same else "lies inside the input"
        super().__init__(f"output {output} {where} {input}; choose an output path outside the inputs")
        self.output = Path(output)
        self.input = Path(input)


class OutputCollisionError(TriVisionError, ValueError):
    """Two outputs of one run resolve to the same path (one would silently replace the other)."""

    def __init__(self, output: str | Path, other: str | Path) -> None:
        what = "is given twice" if str(output) == str(other) else f"is the same file as output {other}"
        super().__init__(f"output {output} {what} (one would replace the other); give distinct output paths")


class LockedError(TriVisionError, OSError):
    """Another live process holds the lock of an output."""

    def __init__(self, path: str | Path, lock: str | Path, holder: str = "a process") -> None:
        self.lock, self.holder = Path(lock), holder
        super().__init__(
            f"{path}: another process is writing it ({holder} holds {lock}); wait for it or choose another path"
        )


class NotWritableError(TriVisionError, OSError):
    """An output path cannot be created or written."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(f"{path}: cannot write here: {why}")
        self.path = Path(path)
        self.why = why


def temp_path(path: str | Path) -> Path:
    """The temp file :func:`atomic_write` uses for ``path``: ``<folder>/.<name>.tmp-<pid>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Context manager yielding a file object whose content replaces ``path`` only on success.

    ``mode`` is "wb" or "w" (text; ``encoding`` defaults to utf-8). The parent folder is created.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    try:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_write(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1, **dump_kwargs: Any) -> Path:
    """``json.dump`` to ``path`` atomically (NaN/inf refused: JSON has no such values); returns the path."""
    dump_kwargs.setdefault("allow_nan", False)
    text = json.dumps(obj, indent=indent, **dump_kwargs) + "\n"
    return atomic_write_text(path, text)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically; returns the path."""
    import torch

    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def atomic_savez(path: str | Path, /, *, compressed: bool = False, **arrays: Any) -> Path:
    """``np.savez`` (or ``savez_compressed``) of named arrays to ``path`` atomically; returns the path.

    The archive is built in memory, so ``path`` keeps the name given (numpy would append ``.npz``).
    """
    import io as _io

    import numpy as np

    buf = _io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | Path) -> dict[str, Any]:
    """All arrays of an ``.npz`` as a dict, with ``allow_pickle=False`` (object arrays refused).

    Errors name the file (:class:`common.errors.DataError`).
    """
    import zipfile

    import numpy as np

    from common.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise DataError(path, "is a single .npy array, expected an .npz archive")
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(path, f"cannot read the .npz archive ({err})") from err


def atomic_save_npy(path: str | Path, array: Any) -> Path:
    """``np.save`` of one array to ``path`` atomically (the name is kept as given); returns the path."""
    import numpy as np

    with atomic_write(path) as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


def load_npy(path: str | Path) -> Any:
    """One array from a ``.npy`` file with ``allow_pickle=False``; errors name the file (DataError)."""
    import numpy as np

    from common.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(path, f"not a readable .npy array ({err})") from err
    if not isinstance(arr, np.ndarray):
        raise DataError(path, "is an .npz archive, expected a single .npy array")
    return arr


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing file or invalid JSON raises :class:`common.errors.DataError` naming it
    (with the line and column of a syntax error)."""
    from common.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(path, f"not UTF-8 text ({err})") from err
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from err


def atomic_write_csv(
    path: str | Path, rows: Iterable[dict[str, Any]], fieldnames: list[str] | None = None
) -> Path:
    """Write dict rows as CSV atomically (header = ``fieldnames`` or the first row's keys, then any new keys
    in order of appearance; missing cells empty); returns the path."""
    import csv
    import io as _io

    rows = list(rows)
    if fieldnames is None:
        fieldnames = []
        for r in rows:
            fieldnames += [k for k in r if k not in fieldnames]
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fieldnames, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:  # pragma: no cover - e.g. pid out of range
        return False
    return True


def clean_stale_temp_files(
    folder: str | Path, *, recursive: bool = False, names: Iterable[str] | None = None
) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>`` files (and temp folders) in ``folder`` whose writer process is gone.

    Temp files of live processes (another run still writing) are kept; with ``names``, only the temp files
    of those target names (a tool cleaning its own outputs in a shared folder). Returns the removed paths,
    naturally sorted; a missing folder returns [].
    """
    own = None if names is None else set(names)
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*.tmp-*") if recursive else folder.glob(".*.tmp-*")
    removed = []
    for p in candidates:
        m = _TEMP_RE.match(p.name)
        if m is None or p.is_symlink() or not (p.is_file() or p.is_dir()):
            continue
        if own is not None and p.name[1 : p.name.rindex(".tmp-")] not in own:
            continue
        if _pid_alive(int(m.group(1))):
            continue
        try:
            if p.is_dir():  # a temp folder (e.g. a video being encoded)
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:  # removed concurrently
            continue
        removed.append(p)
    return sorted(removed)


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_outputs_outside_inputs(
    outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None]
) -> None:
    """Raise :class:`OutputInsideInputError` when an output equals, or lies inside, an input.

    Paths are compared resolved (symlinks followed, relative paths made absolute), so ``data/./x`` and
    a link to ``data`` count as ``data``. An output file equal to an input file counts; an output folder
    that merely contains an input does not (reports beside their data are fine). ``None`` entries are
    skipped, so optional arguments can be passed as they are.
    """
    ins = [(p, Path(p).expanduser().resolve()) for p in inputs if p is not None]
    for out in outputs:
        if out is None:
            continue
        r = Path(out).expanduser().resolve()
        for orig, rin in ins:
            if _is_within(r, rin):
                raise OutputInsideInputError(out, orig)


def check_writable(path: str | Path, *, is_dir: bool = False) -> None:
    """Raise :class:`NotWritableError` unless ``path`` (a file, or a folder with ``is_dir``) can be written.

    Nothing is created: the nearest existing ancestor must be a folder in which a probe file can be
    created and removed, and an existing ``path`` must be a file (a folder with ``is_dir``).
    """
    path = Path(path).expanduser()
    if path.exists():
        if is_dir and not path.is_dir():
            raise NotWritableError(path, "exists and is not a folder")
        if not is_dir and path.is_dir():
            raise NotWritableError(path, "is a folder, expected a file path")
    folder = path if is_dir else path.parent
    probe_dir = folder.absolute()
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise NotWritableError(path, f"{probe_dir} is a file, so the folder cannot be created")
    probe = probe_dir / f".write-probe.tmp-{os.getpid()}"
    try:
        with open(probe, "wb"):
            pass
    except OSError as err:
        raise NotWritableError(path, f"folder {probe_dir} is not writable ({err.strerror or err})") from err
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def check_outputs(
    files: Iterable[str | Path | None] = (),
    inputs: Iterable[str | Path | None] = (),
    *,
    dirs: Iterable[str | Path | None] = (),
) -> None:
    """Every check of a script's outputs, before its first expensive step (``None`` entries skipped).

    ``files`` and ``dirs`` are every path the run will write, derived ones included (the CSV written beside
    a JSON report): no two may resolve to the same path (:class:`OutputCollisionError`), none may equal or
    lie inside an input (:class:`OutputInsideInputError`) and each must be creatable
    (:class:`NotWritableError`).
    """
    fs = [Path(f) for f in files if f is not None]
    ds = [Path(d) for d in dirs if d is not None]
    seen: dict[Path, Path] = {}
    for p in [*fs, *ds]:
        r = p.expanduser().resolve()
        if r in seen:
            raise OutputCollisionError(p, seen[r])
        seen[r] = p
    check_outputs_outside_inputs([*fs, *ds], inputs)
    for f in fs:
        check_writable(f)
    for d in ds:
        check_writable(d, is_dir=True)


def lock_path(path: str | Path) -> Path:
    """The sidecar lock file of ``path``: ``<folder>/.<name>.lock``."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


_HELD: dict[Path, int] = {}  # lock file -> descriptor holding its flock (this process)


def take_lock(lock: str | Path, path: str | Path | None = None) -> bool:
    """Take the exclusive ``fcntl.flock`` on the file ``lock`` (created, left in place: removing it would
    race with a second process opening it) for this process, writing its pid into it. True when taken
    now, False when this process holds it already (re-entrant) or the file system has no locks (NFS
    without lockd: a warning). A second process raises :class:`LockedError` (naming the holder's pid
    and ``path``) at once instead of waiting; the kernel drops the lock when the process dies."""
    import fcntl

    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    key = lock.parent.resolve() / lock.name
    if key in _HELD:
        return False
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        busy = exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)
        text = os.read(fd, 64).decode(errors="replace").strip() if busy else ""
        os.close(fd)
        if not busy:
            logging.getLogger(__name__).warning("%s: file locks are not supported here (%s)", lock, exc)
            return False
        raise LockedError(path or lock, lock, f"pid {text}" if text.isdigit() else "a process") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = fd
    return True


def release_lock(lock: str | Path) -> None:
    """Release this process's :func:`take_lock` on ``lock`` (no-op when not held)."""
    lock = Path(lock)
    fd = _HELD.pop(lock.parent.resolve() / lock.name, None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor drops the flock


def _close_inherited_locks() -> None:
    """In a forked child (DataLoader workers): close the copies of the lock descriptors, so that only the
    owning process holds its locks (and a killed run's workers do not keep them)."""
    for fd in _HELD.values():
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


@contextlib.contextmanager
def hold_lock(path: str | Path) -> Iterator[Path]:
    """Hold the :func:`take_lock` of ``path`` (a file or folder to be written) on its sidecar
    :func:`lock_path` for the ``with`` block."""
    lock = lock_path(path)
    taken = take_lock(lock, path)
    try:
        yield lock
    finally:
        if taken:
            release_lock(lock)


def path_inside(root: str | Path, name: str, *, source: str | Path) -> Path:
    """``root / name`` for a ``name`` read from the data file ``source``, refusing names that leave ``root``.

    Checked on the name itself (absolute, ``..`` components, empty), so datasets whose folders are symlinks
    still work; a bad name is a :class:`common.errors.DataError` naming ``source`` and the entry.
    """
    from pathlib import PurePosixPath

    from common.errors import DataError

    pure = PurePosixPath(name.replace("\\", "/"))
    if not name.strip() or pure.is_absolute() or ".." in pure.parts or "\x00" in name:
        raise DataError(source, f"entry {name!r} is not a name inside {root} (absolute, '..' or empty)")
    return Path(root) / pure
