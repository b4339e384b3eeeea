"""Device parsing, torchrun re-launch and process-group set-up (NCCL on GPU, gloo on CPU).

`-d 0-3` in a plain `python script.py` run re-executes the script under `torch.distributed.run` with one
process per GPU; under torchrun (RANK/WORLD_SIZE in the environment) nothing is re-launched. A CPU run
under torchrun with WORLD_SIZE > 1 uses gloo, which is how the tests exercise DDP without a GPU.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

Devices = list[int] | Literal["cpu"]

_RELAUNCH_FLAG = "TRIVISION_RELAUNCHED"


def parse_devices(spec: str | list[int]) -> Devices:
    """'cpu' -> 'cpu'; '1' -> [1]; '0-3' -> [0, 1, 2, 3]; '0,2' -> [0, 2]; '0-1,3' -> [0, 1, 3]."""
    if isinstance(spec, list):
        return list(spec)
    text = str(spec).strip().lower()
    if text == "cpu":
        return "cpu"
    ids: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                ids.extend(range(lo, hi + 1))
            else:
                ids.append(int(part))
    except ValueError:
        raise ValueError(f"device spec {spec!r} is not 'cpu', 'N', 'A-B' or 'A,B,...'") from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"device spec {spec!r} names negative or repeated GPU ids")
    return ids


def under_torchrun() -> bool:
    """True when launched by torchrun / torch.distributed.run (or an equivalent that sets RANK etc.)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch_command(devices: Devices, argv: list[str] | None = None) -> list[str] | None:
    """The torch.distributed.run command `maybe_relaunch` would exec, or None when no re-launch is needed."""
    if devices == "cpu" or len(devices) < 2 or under_torchrun():
        return None
    argv = list(sys.argv if argv is None else argv)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(len(devices)),
        *argv,
    ]


def maybe_relaunch(devices: Devices | str) -> None:
    """Several GPUs and not under torchrun: re-exec this script via torch.distributed.run (no return)."""
    devices = parse_devices(devices) if isinstance(devices, str) else devices
    cmd = relaunch_command(devices)
    if cmd is None:
        return
    if os.environ.get(_RELAUNCH_FLAG):
        raise RuntimeError("re-launch loop: torch.distributed.run did not set RANK/WORLD_SIZE")
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    env[_RELAUNCH_FLAG] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    distributed: bool


def _cuda_device(devices: list[int], local_rank: int) -> torch.device:
    if not torch.cuda.is_available():
        raise RuntimeError(f"GPU devices {devices} requested but CUDA is not available (use -d cpu)")
    if os.environ.get(_RELAUNCH_FLAG):  # CUDA_VISIBLE_DEVICES was narrowed to exactly `devices`
        index = local_rank
    elif under_torchrun():
        index = devices[local_rank] if local_rank < len(devices) else local_rank
    else:
        index = devices[0]
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_distributed(devices: Devices | str) -> DistInfo:
    """Join the process group described by torchrun's environment (nccl on GPU, gloo on CPU)."""
    devices = parse_devices(devices) if isinstance(devices, str) else devices
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    device = torch.device("cpu") if devices == "cpu" else _cuda_device(devices, local_rank)
    distributed = world > 1
    if distributed and not dist.is_initialized():
        backend = "gloo" if device.type == "cpu" else "nccl"
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    return DistInfo(
        rank=rank, world_size=world, local_rank=local_rank, device=device, distributed=distributed
    )


def cleanup_distributed() -> None:
    """Destroy the default process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that logs and writes files."""
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(t: Tensor) -> Tensor:
    """In-place sum over ranks (no-op in a single process); returns `t`."""
    if get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_from_rank0(t: Tensor) -> Tensor:
    """Rank 0's tensor (same shape on every rank) on every rank, so that a random or data-dependent
    decision, e.g. which points to prune, is taken once (no-op in a single process)."""
    if get_world_size() > 1:
        t = t.contiguous()
        dist.broadcast(t, src=0)
    return t


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch (CPU + CUDA) with seed + rank, so ranks draw different samples."""
    s = int(seed) + int(rank)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
