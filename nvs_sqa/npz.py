"""NPZ files (the layout np.savez writes: one .npy member per key) written through common.io.atomic_write and
read without pickles."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from common.errors import DataError


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """The NPZ layout of np.savez (one .npy member per key), written through common.io.atomic_write."""
    from common.io import atomic_write

    with atomic_write(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an NPZ (no pickles); errors name the file."""
    try:
        with zipfile.ZipFile(path) as zf:
            out = {}
            for name in zf.namelist():
                if name.endswith(".npy"):
                    with zf.open(name) as member:
                        out[name[: -len(".npy")]] = np.lib.format.read_array(member, allow_pickle=False)
            return out
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(path, f"cannot read the features NPZ ({err})") from err
