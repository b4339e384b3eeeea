"""Atomic checkpoint files, weights_only loading, key renaming and loud strict loading.

Checkpoints are written to a temp file and moved into place with os.replace, so an interrupted save never
leaves a truncated file behind. Loading always uses weights_only=True; everything we store (RNG states
included) is therefore kept as tensors and plain Python types.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.errors import TriVisionError


class CheckpointError(TriVisionError, RuntimeError):
    """A checkpoint file is missing or cannot be read."""


class CheckpointMismatchError(TriVisionError, RuntimeError):
    """A state_dict does not fit a module: lists missing, unexpected and shape-mismatched keys."""

    def __init__(self, source: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> None:
        self.source, self.missing, self.unexpected, self.shapes = source, missing, unexpected, shapes
        lines = [f"state_dict from {source} does not match the model:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys) - 20} more)" if len(keys) > 20 else "")
                lines.append(f"  {title} ({len(keys)}): {shown}")
        super().__init__("\n".join(lines))


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically (temp file in the same folder + fsync + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; a clear error naming the file when it is absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, weights-only unpickler)
        raise CheckpointError(f"checkpoint {path} cannot be loaded with weights_only=True: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def rename_keys(sd: dict[str, Any], table: list[tuple[str, str]]) -> dict[str, Any]:
    """Apply regex (pattern, replacement) pairs in order to every key; two keys mapping to one is an error."""
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    compiled = [(re.compile(p), r) for p, r in table]
    for key, value in sd.items():
        new = key
        for pattern, repl in compiled:
            new = pattern.sub(repl, new)
        if new in out:
            raise KeyError(f"rename_keys: {origin[new]!r} and {key!r} both map to {new!r}")
        out[new], origin[new] = value, key
    return out


def load_state_dict_strict(
    module: nn.Module, sd: dict[str, Any], *, source: str, ignore: Iterable[str] = ()
) -> None:
    """Load `sd` into `module`; any missing / unexpected / shape-mismatched key raises.

    `ignore` holds regexes (re.search) of keys that may be absent from either side on purpose.
    """
    patterns = [re.compile(p) for p in ignore]

    def ignored(key: str) -> bool:
        return any(p.search(key) for p in patterns)

    own = module.state_dict()
    missing = sorted(k for k in own if k not in sd and not ignored(k))
    unexpected = sorted(k for k in sd if k not in own and not ignored(k))
    shapes = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sd
        if k in own and torch.is_tensor(sd[k]) and tuple(sd[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(source, missing, unexpected, shapes)
    filtered = {k: v for k, v in sd.items() if k in own}
    # strict=False is safe here: every difference was checked above and only ignored keys remain absent.
    module.load_state_dict(filtered, strict=False)


# ------------------------------------------------------------------------------------------ RNG state
def get_rng_state() -> dict[str, Any]:
    """torch (CPU + CUDA), numpy and python RNG states as tensors / plain types (weights_only-safe)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of get_rng_state."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))


def git_sha(repo: Path | None = None) -> str | None:
    """Commit of the working tree (read-only git call), or None outside a git checkout."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_checkpoints(folder: Path) -> list[Path]:
    """`*.pth` files in `folder`, oldest first by natural name order (step-9 < step-10, epoch-9 < epoch-10)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.pth") if p.is_file()), key=lambda p: _natural_key(p.name))


def latest_checkpoint(folder: Path) -> Path | None:
    """Newest checkpoint in `folder`, or None."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def prune_checkpoints(folder: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints (0 keeps everything); returns what was deleted."""
    if keep_last <= 0:
        return []
    found = list_checkpoints(folder)
    doomed = found[:-keep_last]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed
