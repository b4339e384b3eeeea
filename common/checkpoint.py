"""Atomic checkpoint files, weights_only loading, key renaming and loud strict loading.

Checkpoints are written through `common.io.atomic_torch_save` (temp file + fsync + os.replace), so an
interrupted save never leaves a truncated file behind. Loading always uses weights_only=True and maps every
tensor to the CPU (module and optimizer `load_state_dict` place them; RNG states must stay CPU tensors);
everything we store (RNG states included) is therefore kept as tensors and plain Python types.

Each engine checkpoint carries the `run_id` of the run that wrote it: `prune_checkpoints` only ever deletes
checkpoints of its own run.
"""

from __future__ import annotations

import logging
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
from common.image_io import natural_sort_key
from common.io import atomic_torch_save

log = logging.getLogger(__name__)


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
    atomic_torch_save(state, Path(path))


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """torch.load with weights_only=True; a clear error naming the file when it is absent or unreadable.

    Keep the default map_location="cpu" for training state: `load_state_dict` moves module and optimizer
    tensors to their parameters' device, and RNG states must stay on the CPU. `mmap=True` maps the
    tensor data lazily (cheap when only a small entry such as the config is read).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises several types (pickle, zip, weights-only unpickler)
        raise CheckpointError(f"checkpoint {path} cannot be loaded with weights_only=True: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def load_tensor(path: str | Path) -> torch.Tensor:
    """A file holding one tensor (``torch.save(tensor)``), read with weights_only=True to the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"tensor file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, weights-only unpickler)
        raise CheckpointError(f"{path} cannot be loaded with weights_only=True: {exc}") from exc
    if not torch.is_tensor(obj):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a single tensor")
    return obj


def read_config_from_checkpoint(path: str | Path) -> dict[str, Any]:
    """The resolved config (plain dict) an engine checkpoint was written with; CheckpointError if absent."""
    state = load_checkpoint(path, mmap=True)
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(
            f"checkpoint {path} holds no config (keys: {sorted(state)}); pass the YAML with -c instead"
        )
    return config


def checkpoint_run_id(path: str | Path) -> str | None:
    """The `run_id` stored in a checkpoint (None for files without one or that cannot be read)."""
    try:
        state = load_checkpoint(path, mmap=True)
    except CheckpointError:
        return None
    run_id = state.get("run_id")
    return run_id if isinstance(run_id, str) else None


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
    if missing or unexpected:
        raise CheckpointMismatchError(source, missing, unexpected, shapes)
    filtered = {k: v for k, v in sd.items() if k in own}
    # strict=False is safe here: the keys were checked above and only ignored keys remain absent. Shapes
    # are left to the module: one whose load_state_dict (or a pre-hook) resizes Parameters to the
    # checkpoint's, e.g. a point cloud that grew in training, loads; any other mismatch raises here.
    try:
        module.load_state_dict(filtered, strict=False)
    except RuntimeError as exc:
        if "size mismatch" not in str(exc):
            raise
        after = module.state_dict()
        still = sorted(
            f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(after[k].shape)}"
            for k in filtered
            if k in after and torch.is_tensor(sd[k]) and tuple(sd[k].shape) != tuple(after[k].shape)
        )
        raise CheckpointMismatchError(source, [], [], still or shapes) from exc


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
    keys = npst["keys"].cpu().numpy().astype(np.uint32)
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


def list_checkpoints(folder: Path, pattern: str = "*.pth") -> list[Path]:
    """Files matching the glob `pattern` in `folder` (common.runs.checkpoint_pattern(train.ckpt_name)),
    oldest first by natural name order (step-9 < step-10, epoch-9 < epoch-10)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob(pattern) if p.is_file()), key=lambda p: natural_sort_key(p.name))


def latest_checkpoint(folder: Path, pattern: str = "*.pth") -> Path | None:
    """Newest checkpoint matching `pattern` in `folder`, or None."""
    found = list_checkpoints(folder, pattern)
    return found[-1] if found else None


def prune_checkpoints(
    folder: Path, keep_last: int, *, run_id: str | None = None, pattern: str = "*.pth"
) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints (0 keeps everything); returns what was deleted.

    With `run_id` (what the engine passes) only checkpoints written by that run count and can be deleted;
    files of another run, or without a run id, are never touched.
    """
    if keep_last <= 0:
        return []
    found = list_checkpoints(folder, pattern)
    if run_id is not None:
        found = [p for p in found if checkpoint_run_id(p) == run_id]
    doomed = found[:-keep_last]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed
