"""Device parsing, torchrun re-launch and process-group set-up (NCCL on GPU, gloo on CPU).

`-d 0-3` in a plain `python script.py` run re-executes the script under torchrun (`_torchrun`) with one
process per GPU; under torchrun (RANK/WORLD_SIZE in the environment) nothing is re-launched. Under `srun` with several tasks
the tasks join one process group from SLURM's variables (`join_slurm_step`). `-d` indices
count within the GPUs the process may see: with `CUDA_VISIBLE_DEVICES=4,5,6,7` (SLURM, Kubernetes), `-d 0,1`
means physical GPUs 4 and 5 (UUID lists are mapped the same way). A CPU run under torchrun with
WORLD_SIZE > 1 uses gloo, which is how the tests exercise DDP without a GPU.
"""

from __future__ import annotations

import atexit
import os
import random
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from common.errors import TriVisionError

Devices = list[int] | Literal["cpu"]

_RELAUNCH_FLAG = "TRIVISION_RELAUNCHED"


class DeviceError(TriVisionError, RuntimeError):
    """The requested devices do not exist on this machine (no CUDA, an index beyond the visible GPUs)."""


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


def first_slurm_host(nodelist: str) -> str:
    """First host of a SLURM node list: 'gpu[07-09,12],cpu1' -> 'gpu07', 'node1,node2' -> 'node1'."""
    m = re.match(r"\s*([^,\[\s]+)(?:\[([^\],\-]+))?", nodelist)
    if m is None:
        raise DeviceError(f"cannot read the SLURM node list {nodelist!r}: launch with torchrun instead")
    return m.group(1) + (m.group(2) or "")


def join_slurm_step(env: dict[str, str] | None = None) -> bool:
    """Inside `srun` with several tasks (and not under torchrun): set torchrun's variables from SLURM's,
    so that the tasks form one process group instead of N independent runs. RANK = SLURM_PROCID,
    WORLD_SIZE = the step's task count, LOCAL_RANK = SLURM_LOCALID, MASTER_ADDR = the first host of
    SLURM_JOB_NODELIST (or SLURM_NODELIST), MASTER_PORT = 15000 + job id mod 20000 unless already set.
    A batch script's own process (no SLURM_STEP_ID) is one process. Returns True when it set them."""
    env = os.environ if env is None else env
    if "RANK" in env or "SLURM_PROCID" not in env or "SLURM_STEP_ID" not in env:
        return False
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or "1"
    if int(tasks) < 2:
        return False
    nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or env.get("SLURM_STEP_NODELIST")
    if not nodes:
        raise DeviceError(
            "srun started several tasks but SLURM_JOB_NODELIST is not set: launch one task per node "
            "with `srun --ntasks-per-node=1 torchrun --nproc_per_node=N ...`"
        )
    env["RANK"], env["WORLD_SIZE"] = env["SLURM_PROCID"], tasks
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env.setdefault("MASTER_ADDR", first_slurm_host(nodes))
    env.setdefault("MASTER_PORT", str(15000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
    return True


def under_torchrun() -> bool:
    """True when launched by torchrun / torch.distributed.run (or an equivalent that sets RANK etc.)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch_command(devices: Devices, argv: list[str] | None = None) -> list[str] | None:
    """The torchrun command `maybe_relaunch` would exec, or None when no re-launch is needed."""
    if devices == "cpu" or len(devices) < 2 or under_torchrun():
        return None
    argv = list(sys.argv if argv is None else argv)
    return [
        sys.executable,
        "-m",
        "common.distributed",  # torch.distributed.run without its failure wall (`_torchrun`)
        "--standalone",
        "--nproc_per_node",
        str(len(devices)),
        *argv,
    ]


def visible_devices_for(devices: list[int], visible: str | None) -> str:
    """CUDA_VISIBLE_DEVICES value selecting `devices` (indices within `visible`, the current value).

    `visible` None: indices are physical ids. Otherwise its comma-separated entries (ids or GPU UUIDs, as
    SLURM and Kubernetes set them) are indexed: visible "4,5,6,7" and devices [0, 2] give "4,6".
    """
    if visible is None:
        return ",".join(str(d) for d in devices)
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    beyond = [d for d in devices if d >= len(entries)]
    if beyond:
        raise DeviceError(
            f"-d names GPU {beyond[0]}, but CUDA_VISIBLE_DEVICES={visible!r} makes {len(entries)} GPU(s) "
            f"visible (indices 0-{len(entries) - 1})"
            if entries
            else f"-d names GPUs {devices}, but CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
        )
    return ",".join(entries[d] for d in devices)


def maybe_relaunch(devices: Devices | str, cpu_procs: int = 1) -> None:
    """Several GPUs (or `cpu_procs` > 1 CPU processes, gloo) and not under torchrun: re-exec this script
    via torch.distributed.run (no return).

    Checks first that CUDA is there (a DeviceError here, once, rather than a traceback in every worker)
    and maps the indices through an existing CUDA_VISIBLE_DEVICES; CPU processes share the cores
    (OMP_NUM_THREADS unless set). Call it first thing in a script, before data and models are built
    (`common.engine.prepare_run` does).
    """
    devices = parse_devices(devices) if isinstance(devices, str) else devices
    join_slurm_step()
    cmd = relaunch_command(list(range(cpu_procs)) if devices == "cpu" else devices)
    if cmd is None:
        return
    if os.environ.get(_RELAUNCH_FLAG):
        raise RuntimeError("re-launch loop: torch.distributed.run did not set RANK/WORLD_SIZE")
    env = dict(os.environ)
    if devices == "cpu":
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cpu_procs)))
    elif not torch.cuda.is_available():
        raise DeviceError(f"GPU devices {devices} requested but CUDA is not available (use -d cpu)")
    else:
        env["CUDA_VISIBLE_DEVICES"] = visible_devices_for(devices, os.environ.get("CUDA_VISIBLE_DEVICES"))
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
        raise DeviceError(f"GPU devices {devices} requested but CUDA is not available (use -d cpu)")
    if os.environ.get(_RELAUNCH_FLAG):  # CUDA_VISIBLE_DEVICES was narrowed to exactly `devices`
        index = local_rank
    elif under_torchrun():
        index = devices[local_rank] if local_rank < len(devices) else local_rank
        if torch.cuda.device_count() == 1:  # one GPU per task (srun --gpus-per-task=1, Kubernetes)
            index = 0
    else:
        index = devices[0]
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"-d names GPU {index}, but this process sees {count} GPU(s) (indices 0-{count - 1})"
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_distributed(devices: Devices | str, *, timeout_s: float = 1800) -> DistInfo:
    """Join the process group described by torchrun's environment (nccl on GPU, gloo on CPU).

    `timeout_s` bounds every collective (NCCL's watchdog, gloo's waits). A group created here is
    destroyed at interpreter exit (`cleanup_distributed`, also callable earlier).
    """
    devices = parse_devices(devices) if isinstance(devices, str) else devices
    join_slurm_step()
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
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s), **kwargs
        )
        atexit.register(cleanup_distributed)
    return DistInfo(
        rank=rank, world_size=world, local_rank=local_rank, device=device, distributed=distributed
    )


def cleanup_distributed() -> None:
    """Destroy the default process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def move_to(obj: Any, device: torch.device) -> Any:
    """Tensors inside nested mappings / lists / tuples moved to `device` (a batch for a step or evaluation)."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device) for v in obj)
    return obj


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order (collective; [obj] without a process group)."""
    if get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


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


def loader_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """Generator for a DataLoader's per-epoch base seed: reproducible per (seed, epoch) and different on
    every rank, so DataLoader workers (seeded base_seed + worker id, numpy and random included) draw
    different augmentations on different ranks."""
    return torch.Generator().manual_seed((int(seed) * 100_003 + int(epoch)) * 1_000_003 + int(rank))


def _torchrun(argv: list[str]) -> int:
    """torch.distributed.run's launcher, minus the ChildFailedError traceback and log lines it adds after a
    rank's one-line error (`common.cli`): the exit status is the first failed rank's (128 + signal when a
    rank was killed, with one line saying so, since that rank printed nothing)."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode >= 0:
            return failure.exitcode
        print(f"error: rank {rank} was killed by {failure.signal_name()}", file=sys.stderr, flush=True)
        return 128 - failure.exitcode
    return 0


if __name__ == "__main__":  # the re-launch of `maybe_relaunch` (python -m common.distributed ...)
    sys.exit(_torchrun(sys.argv[1:]))
