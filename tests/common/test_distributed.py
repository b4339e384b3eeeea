"""common.distributed: device specs, the torchrun re-launch command, and a real 2-process gloo training."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from common import distributed
from common.distributed import init_distributed, parse_devices, relaunch_command, seed_everything

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cpu", "cpu"),
        ("CPU", "cpu"),
        ("1", [1]),
        ("0-3", [0, 1, 2, 3]),
        ("0,2", [0, 2]),
        ("0-1,3", [0, 1, 3]),
    ],
)
def test_parse_devices(spec: str, expected: object) -> None:
    assert parse_devices(spec) == expected


@pytest.mark.parametrize("spec", ["", "a", "3-1", "0,0", "-1", "0-"])
def test_parse_devices_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="device spec"):
        parse_devices(spec)


def test_relaunch_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cmd = relaunch_command([0, 1, 2, 3], ["scripts/train_x.py", "-d", "0-3", "--set", "a=1"])
    assert cmd[1:] == [
        "-m",
        "common.distributed",
        "--standalone",
        "--nproc_per_node",
        "4",
        "scripts/train_x.py",
        "-d",
        "0-3",
        "--set",
        "a=1",
    ]
    assert relaunch_command([0], ["x.py"]) is None
    assert relaunch_command("cpu", ["x.py"]) is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert relaunch_command([0, 1], ["x.py"]) is None  # already under torchrun


RELAUNCHED = textwrap.dedent(
    """
    import os, signal, sys
    from common.cli import run_script
    from common.distributed import init_distributed, maybe_relaunch
    from common.errors import TriVisionError

    def main():
        maybe_relaunch("cpu", cpu_procs=2)
        init_distributed("cpu")  # the ranks meet, so rank 1 sees rank 0's error within common.cli's wait
        if sys.argv[1] == "kill":
            if os.environ["RANK"] == "1":
                os.kill(os.getpid(), signal.SIGKILL)
            return 0
        raise TriVisionError("bad.yaml: no such config")

    run_script(main)
    """
)


@pytest.mark.parametrize(
    ("case", "line", "code"),
    [("error", "error: bad.yaml: no such config", 2), ("kill", "error: rank 1 was killed by SIGKILL", 137)],
)
def test_relaunched_failure_is_one_line(tmp_path: Path, case: str, line: str, code: int) -> None:
    # `-d cpu --procs 2` for real: a user error both ranks hit (or a killed rank) is one line, no torchrun wall
    (tmp_path / "x.py").write_text(RELAUNCHED)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "TRIVISION_RELAUNCHED")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, str(tmp_path / "x.py"), case]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.stderr == line + "\n" and proc.returncode == code, proc.stderr[-3000:]


def _fake_execve(monkeypatch: pytest.MonkeyPatch, cuda: bool = True) -> list[tuple]:
    for var in ("RANK", "WORLD_SIZE", "TRIVISION_RELAUNCHED", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    calls: list[tuple] = []
    monkeypatch.setattr(distributed.os, "execve", lambda exe, cmd, env: calls.append((exe, cmd, env)))
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: cuda)
    return calls


def test_maybe_relaunch_execs_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_execve(monkeypatch)
    monkeypatch.setattr(distributed.sys, "argv", ["scripts/train_x.py", "-d", "0,2"])
    distributed.maybe_relaunch("0,2")
    ((exe, cmd, env),) = calls
    assert exe == sys.executable and cmd[-3:] == ["scripts/train_x.py", "-d", "0,2"] and "2" in cmd
    assert env["CUDA_VISIBLE_DEVICES"] == "0,2" and env["TRIVISION_RELAUNCHED"] == "1"
    distributed.maybe_relaunch("cpu")
    distributed.maybe_relaunch("1")
    assert len(calls) == 1


def test_maybe_relaunch_cpu_processes_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_execve(monkeypatch, cuda=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(distributed.sys, "argv", ["scripts/nvs_sqa_app.py", "--procs", "4"])
    distributed.maybe_relaunch("cpu", cpu_procs=4)
    ((_, cmd, env),) = calls
    assert cmd[cmd.index("--nproc_per_node") + 1] == "4" and cmd[-2:] == ["--procs", "4"]
    assert env["OMP_NUM_THREADS"] == "2" and env["TRIVISION_RELAUNCHED"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in env


@pytest.mark.parametrize(
    ("visible", "spec", "expected"),
    [
        ("4,5,6,7", "0,1", "4,5"),  # SLURM gave this job GPUs 4-7: -d 0,1 are the first two of them
        ("4,5,6,7", "1-3", "5,6,7"),
        ("GPU-aaaa,GPU-bbbb,GPU-cccc", "0,2", "GPU-aaaa,GPU-cccc"),  # Kubernetes sets UUIDs
    ],
)
def test_relaunch_maps_through_visible_devices(
    monkeypatch: pytest.MonkeyPatch, visible: str, spec: str, expected: str
) -> None:
    calls = _fake_execve(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    distributed.maybe_relaunch(spec)
    assert calls[0][2]["CUDA_VISIBLE_DEVICES"] == expected


def test_relaunch_refuses_missing_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_execve(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    with pytest.raises(distributed.DeviceError, match=r"GPU 2.*CUDA_VISIBLE_DEVICES='4,5'.*2 GPU"):
        distributed.maybe_relaunch("0-2")
    calls = _fake_execve(monkeypatch, cuda=False)
    with pytest.raises(distributed.DeviceError, match="CUDA is not available"):
        distributed.maybe_relaunch("0-3")  # before any worker starts: one error, not one per worker
    with pytest.raises(distributed.DeviceError, match="CUDA is not available"):
        init_distributed("0")
    assert not calls


def test_process_group_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    seen: dict = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: seen.update(kw))
    monkeypatch.setattr(distributed.atexit, "register", lambda fn: seen.update(atexit=fn))
    info = init_distributed("cpu", timeout_s=60)
    assert info.distributed and info.rank == 1 and seen["backend"] == "gloo"
    assert seen["timeout"] == timedelta(seconds=60) and seen["atexit"] is distributed.cleanup_distributed


def test_single_process_info_and_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.distributed, info.device) == (0, 1, False, torch.device("cpu"))
    seed_everything(7, rank=1)
    a = torch.rand(2)
    torch.manual_seed(8)
    assert torch.equal(a, torch.rand(2))  # rank 1 is seeded with seed + rank


WORKER = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn
    from common.distributed import cleanup_distributed, get_rank, get_world_size
    from common.engine import TrainConfig, Trainer

    torch.set_num_threads(1)
    out = sys.argv[1]

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 64
        def __getitem__(self, i):
            x = torch.linspace(-1, 1, 4) * (i + 1) / 64 + torch.randn(4) * 0.1
            return {"x": x, "y": x.sum(), "i": torch.tensor(i)}

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lin = nn.Linear(4, 1)
            self.unused = nn.Linear(4, 1)  # gets no gradient: needs find_unused_parameters
            self.seen = []
        def training_step(self, batch):
            self.seen += batch["i"].tolist()
            return {"mse": ((self.lin(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()}

    model = Model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(max_steps=6, batch_size=4, lr=0.05, out_dir=out, tensorboard=False, progress=False,
                      find_unused_parameters=True, log_every=3, seed=3)
    trainer = Trainer(cfg, model, Data(), devices="cpu")
    assert trainer.info.distributed and get_world_size() == 2
    model = trainer.fit()
    torch.save({"init": init, "final": model.state_dict(), "seen": model.seen, "rand": torch.rand(3)},
               f"{out}/rank{get_rank()}.pt")
    cleanup_distributed()
    """
)


def run_two_ranks(worker: str, tmp_path: Path) -> None:
    """Run `worker` (a script taking the output folder) under torchrun with 2 gloo ranks on CPU."""
    script = tmp_path / "worker.py"
    script.write_text(worker)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=240, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_process_gloo_training(tmp_path: Path) -> None:
    run_two_ranks(WORKER, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k in r0["final"]:
        assert torch.equal(r0["final"][k], r1["final"][k]), k
    assert not torch.equal(r0["final"]["lin.weight"], r0["init"]["lin.weight"])
    assert torch.equal(r0["final"]["unused.weight"], r0["init"]["unused.weight"])
    # DistributedSampler: the ranks see disjoint halves of each epoch
    assert not set(r0["seen"][:32]) & set(r1["seen"][:32]) and len(r0["seen"]) == 24
    assert not torch.equal(r0["rand"], r1["rand"])  # per-rank seeds
    ck = sorted((tmp_path / "checkpoints").glob("*.pth"))
    assert [p.name for p in ck] == ["step-00000006.pth"]
    assert len(torch.load(ck[0], weights_only=True)["rng"]) == 2  # RNG state of both ranks


GROW_WORKER = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn
    from common.distributed import cleanup_distributed
    from common.callbacks import Callback
    from common.engine import TrainConfig, Trainer

    torch.set_num_threads(1)
    out = sys.argv[1]

    class Grows(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))
        def training_step(self, batch):
            return {"l": ((self.w - batch["t"][: self.w.numel()]) ** 2).sum()}

    class Grow(Callback):  # a Parameter replaced by a bigger one before step 2, like point growth
        def before_step(self, trainer, step):
            if step != 2:
                return False
            m = trainer.model
            m.w = nn.Parameter(torch.cat([m.w.detach(), torch.ones(1)]))
            trainer.optimizer.param_groups[0]["params"] = [m.w]  # plain SGD: no state to move
            return True

    model = Grows()

    cfg = TrainConfig(max_steps=4, batch_size=1, lr=0.1, out_dir=out, tensorboard=False, progress=False,
                      log_every=0, ckpt_every=0, seed=0)
    trainer = Trainer(cfg, model, lambda s: {}, devices="cpu", optimizer=torch.optim.SGD([model.w], lr=0.1),
                      callbacks=[Grow()])
    rank = trainer.info.rank
    trainer.train_data = lambda step: {"t": torch.full((3,), float(rank * 4 + step))}
    trainer.fit()
    torch.save({"w": model.w.detach()}, f"{out}/grow{rank}.pt")
    cleanup_distributed()
    """
)


def test_two_process_ddp_rewraps_replaced_parameters(tmp_path: Path) -> None:
    """After before_step() replaces a Parameter, gradients are still averaged across ranks."""
    run_two_ranks(GROW_WORKER, tmp_path)
    w0, w1 = (torch.load(tmp_path / f"grow{r}.pt", weights_only=True)["w"] for r in (0, 1))
    assert w0.shape == (3,) and torch.equal(w0, w1)
    # hand-derived: SGD lr 0.1 on sum (w - t)^2, gradient averaged over ranks (rank r, step s: t = 4r + s)
    w = torch.ones(2)
    for step in range(4):
        if step == 2:
            w = torch.cat([w, torch.ones(1)])
        t = torch.full_like(w, (step + (4 + step)) / 2)
        w = w - 0.1 * 2 * (w - t)
    torch.testing.assert_close(w0, w)
