"""Week-long runs (issue 21 section 1, issue 20 section 4): real signals to real processes, one run per
folder, checkpoint names, exact resume with DataLoader workers, evaluation off the training RNG, srun."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset

from common import cli
from common.config import ConfigError, load_config
from common.distributed import first_slurm_host, join_slurm_step
from common.engine import (
    Callback,
    ScheduleConfig,
    StoppedBySignal,
    TrainConfig,
    Trainer,
)
from common.errors import TriVisionError
from common.runs import RunFolderError, checkpoint_pattern

REPO = Path(__file__).resolve().parents[2]
W_TRUE = torch.tensor([1.0, -2.0, 0.5, 3.0])


class Net(nn.Module):
    """Linear-tanh-dropout-linear regressor: dropout draws from the training RNG every step."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 1))
        self.delay = delay

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        time.sleep(self.delay)
        return {"mse": ((self.body(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()}


def noisy_batch(step: int) -> dict[str, Tensor]:
    x = torch.randn(8, 4)  # the global stream, which a checkpoint restores
    return {"x": x, "y": x @ W_TRUE}


def _cfg(out: Path, **kw: object) -> TrainConfig:
    base = dict(
        max_steps=12,
        batch_size=8,
        lr=1e-2,
        optimizer="adamw",
        schedule=ScheduleConfig(name="constant"),  # max_steps may change on resume
        log_every=1,
        out_dir=str(out),
        tensorboard=False,
        progress=False,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def _same_weights(a: nn.Module, b: nn.Module) -> None:
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def child_main() -> None:
    """A training process for the tests: `python -c '...child_main()' OUT MAX_STEPS DELAY`."""
    from common.cli import run_script

    out, max_steps, delay, workers = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])

    def main() -> None:
        data = Augmented() if workers else noisy_batch
        Trainer(_cfg(Path(out), max_steps=max_steps, num_workers=workers), Net(delay), data).fit()

    run_script(main)


def _start(
    out: Path, max_steps: int, delay: float, env: dict[str, str] | None = None, workers: int = 0
) -> subprocess.Popen:
    """The child in a session of its own, so that a signal can go to its whole process group."""
    code = "from tests.common.test_long_runs import child_main; child_main()"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(out), str(max_steps), str(delay), str(workers)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _logged_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def _wait_for_step(out: Path, step: int, procs: list[subprocess.Popen], timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while len(_logged_steps(out)) < step:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"child exited early ({p.returncode}): {p.communicate()[1][-2000:]}")
        assert time.monotonic() < end, "the child did not reach the step in time"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------ signals
def test_sigterm_writes_a_checkpoint_and_resume_is_exact(tmp_path: Path) -> None:
    """SIGTERM to the whole process group, DataLoader workers included (as SLURM and a terminal send it)."""
    sig = signal.SIGTERM
    run = tmp_path / "run"
    proc = _start(run, max_steps=60, delay=0.05, workers=1)
    _wait_for_step(run, 3, [proc])
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err[-2000:]
    (ckpt,) = (run / "checkpoints").iterdir()  # the step in progress completed, then one checkpoint
    step = int(ckpt.stem.split("-")[1])
    assert 3 <= step < 60 and _logged_steps(run) == list(range(1, step + 1))
    assert f"stopped by {sig.name} at step {step}, checkpoint written to {ckpt}" in err
    # the requeued job (--resume auto) ends where an uninterrupted run ends
    cfg = dict(max_steps=step + 4, num_workers=1)
    resumed = Trainer(_cfg(run, **cfg), Net(), Augmented(), resume="auto").fit()
    full = Trainer(_cfg(tmp_path / "full", **cfg), Net(), Augmented()).fit()
    _same_weights(full, resumed)


class SendSignal(Callback):
    def __init__(self, at: int, sig: int) -> None:
        self.at, self.sig = at, sig

    def after_step(self, trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step == self.at:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGUSR1, 138)])
def test_ctrl_c_and_sigusr1_finish_the_step_save_and_exit(tmp_path: Path, sig: int, status: int) -> None:
    """Ctrl-C, or SIGUSR1 as schedulers send it before pre-emption (a real signal to this process)."""
    run = tmp_path / "run"
    before = signal.getsignal(sig)
    with pytest.raises(StoppedBySignal) as stop:
        Trainer(_cfg(run), Net(), noisy_batch, callbacks=[SendSignal(5, sig)]).fit()
    assert stop.value.code == status and stop.value.step == 5
    assert stop.value.path == run / "checkpoints" / "step-00000005.pth" and stop.value.path.is_file()
    assert signal.getsignal(sig) is before  # handlers restored
    resumed = Trainer(_cfg(run), Net(), noisy_batch, resume="auto").fit()
    _same_weights(Trainer(_cfg(tmp_path / "full"), Net(), noisy_batch).fit(), resumed)


def _free_slurm_port() -> int:
    for _ in range(100):
        port = random.randint(15000, 34999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


def test_srun_tasks_form_one_group_and_a_signal_to_one_rank_stops_all(tmp_path: Path) -> None:
    """Two tasks as `srun -n 2` starts them (faked SLURM variables, gloo on CPU): one process group, every
    step logged once; SIGTERM to rank 1 alone stops both at the same step with one checkpoint."""
    run = tmp_path / "run"
    port = _free_slurm_port()
    base = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")
    }
    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_STEP_ID": "0",
        "SLURM_JOB_ID": str(port - 15000),  # MASTER_PORT = 15000 + job id mod 20000
        "SLURM_JOB_NODELIST": "localhost",
        "OMP_NUM_THREADS": "1",
    }
    procs = []
    for rank in (0, 1):
        env = {**base, **slurm, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}
        procs.append(_start(run, max_steps=200, delay=0.05, env=env))
    _wait_for_step(run, 3, procs)
    os.kill(procs[1].pid, signal.SIGTERM)
    errs = [p.communicate(timeout=90)[1] for p in procs]
    assert [p.returncode for p in procs] == [143, 143], errs
    (ckpt,) = (run / "checkpoints").iterdir()
    step = int(ckpt.stem.split("-")[1])
    assert _logged_steps(run) == list(range(1, step + 1))  # once each, not once per task
    assert f"stopped by SIGTERM at step {step}" in errs[0]
    assert len(torch.load(ckpt, weights_only=True)["rng"]) == 2  # both ranks' streams: one run of two


# --------------------------------------------------------------------------------- the run folder
def test_second_run_in_a_held_folder_refuses_and_a_killed_run_leaves_no_lock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start(run, max_steps=400, delay=0.05)
    try:
        _wait_for_step(run, 2, [proc])
        with pytest.raises(RunFolderError) as e:  # another process, other settings, same folder
            Trainer(_cfg(run, lr=0.5), Net(), noisy_batch, overwrite=True)
        assert str(e.value) == (
            f"{run} is in use by another run (pid {proc.pid} holds {run / '.lock'}); wait for it, stop it, "
            "or choose another -o/--out-dir"
        )
        assert (run / "config.yaml").is_file() and not any(p.name.startswith("old-") for p in run.iterdir())
    finally:
        proc.kill()  # kill -9: no handler runs, the OS drops the lock
        proc.communicate(timeout=60)
    Trainer(_cfg(run, max_steps=2), Net(), noisy_batch, overwrite=True).fit()
    assert _logged_steps(run) == [1, 2]


def test_checkpoints_are_found_by_the_configured_name(tmp_path: Path) -> None:
    assert checkpoint_pattern("ckpt-{step}.pt") == "ckpt-*.pt"
    assert checkpoint_pattern("e[{epoch:03d}].pth") == "e[[]*].pth"
    cfg = _cfg(tmp_path, max_steps=4, ckpt_every=2, keep_last=1, ckpt_name="ckpt-{step}.pt")
    Trainer(cfg, Net(), noisy_batch).fit()
    t = Trainer(
        _cfg(tmp_path, max_steps=6, ckpt_every=2, keep_last=1, ckpt_name="ckpt-{step}.pt"),
        Net(),
        noisy_batch,
        resume="auto",
    )
    assert t.step == 4  # continued, not restarted from scratch
    t.fit()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt-6.pt"]
    assert not any(p.name.startswith("old-") for p in tmp_path.iterdir())
    # a name that matches none of the folder's checkpoints refuses instead of starting afresh
    with pytest.raises(
        RunFolderError, match=r"ckpt-6\.pt; none matches train.ckpt_name 'step-\{step:08d\}\.pth'"
    ):
        Trainer(_cfg(tmp_path, max_steps=8), Net(), noisy_batch, resume="auto")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grad_clip=0", r"grad_clip must be > 0 .* got 0.0; null turns clipping off"),
        ("grad_clip=-1.0", r"grad_clip must be > 0 .* got -1.0; null turns clipping off"),
        ("ckpt_name=ckpt-{stp}.pth", r"may use only the fields \{step\} and \{epoch\}"),
        ("ckpt_name=sub/ckpt-{step}.pth", r"must be a file name"),
    ],
)
def test_config_refuses_bad_clip_and_checkpoint_names(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, TrainConfig, [override])
    assert load_config(None, TrainConfig, ["grad_clip=null"]).grad_clip is None


# ------------------------------------------------------------------------------- exact streams
class Augmented(Dataset):
    """Items whose augmentation draws from torch, numpy and python RNGs (as real pipelines do)."""

    def __init__(self, n: int = 40) -> None:
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(1))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        jitter = 0.1 * torch.randn(4) + float(np.random.uniform(-0.1, 0.1)) + random.uniform(-0.1, 0.1)
        x = self.x[i] + jitter
        return {"x": x, "y": x @ W_TRUE}


class Interrupt(Exception):
    pass


class Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def after_step(self, trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step == self.at:
            raise Interrupt


def test_resume_mid_epoch_with_workers_is_bit_exact(tmp_path: Path) -> None:
    kw = dict(max_steps=9, batch_size=8, num_workers=2, ckpt_every=3)  # 5 batches per epoch
    full = Trainer(_cfg(tmp_path / "full", **kw), Net(), Augmented()).fit()
    run = tmp_path / "cut"
    with pytest.raises(Interrupt):  # checkpoint at step 3 (mid-epoch), dies at step 4
        Trainer(_cfg(run, **kw), Net(), Augmented(), callbacks=[Crash(4)]).fit()
    resumed = Trainer(_cfg(run, **kw), Net(), Augmented(), resume="auto").fit()
    _same_weights(full, resumed)
    # items depend on (seed, epoch, index) only: one worker gives the same run as two
    _same_weights(full, Trainer(_cfg(tmp_path / "one", **{**kw, "num_workers": 1}), Net(), Augmented()).fit())


def test_periodic_evaluation_does_not_change_training(tmp_path: Path) -> None:
    def draw() -> float:  # from every stream
        return float(torch.rand(()) + np.random.rand() + random.random())

    class Draws:  # an evaluator and a callback around it, all drawing random numbers
        def run(self, model: nn.Module, data: object, step: int) -> SimpleNamespace:
            return SimpleNamespace(aggregate={"r": draw()})

    class Around(Callback):
        def before_evaluation(self, trainer: object, step: int) -> None:
            draw()

        def after_evaluation(self, trainer: object, step: int, metrics: dict[str, float]) -> None:
            draw()

    plain = Trainer(_cfg(tmp_path / "plain"), Net(), Augmented()).fit()
    cfg = _cfg(tmp_path / "eval", eval_every=2)
    evaluated = Trainer(cfg, Net(), Augmented(), evaluator=Draws(), val_data=[], callbacks=[Around()]).fit()
    _same_weights(plain, evaluated)
    lines = [json.loads(s) for s in (tmp_path / "eval" / "metrics.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines if "eval/r" in d] == [2, 4, 6, 8, 10, 12]


# ------------------------------------------------------------------------------- torchrun errors
def test_an_error_every_rank_hits_is_printed_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ranks share torchrun's store (a HashStore here): rank 0 prints, another rank only a different error."""
    store = dist.HashStore()
    monkeypatch.setattr(cli, "_error_store", lambda: store)
    monkeypatch.setattr(cli, "_RANK0_WAIT_S", 0.2)
    monkeypatch.setenv("WORLD_SIZE", "2")

    def fail(rank: int, message: str) -> str:
        monkeypatch.setenv("RANK", str(rank))

        def main() -> None:
            raise TriVisionError(message)

        with pytest.raises(SystemExit) as e:
            cli.run_script(main, argv=[])
        assert e.value.code == 2
        return capsys.readouterr().err

    assert (
        fail(0, "conf/x.yaml: train.lr: expected a number")
        == "error: conf/x.yaml: train.lr: expected a number\n"
    )
    assert fail(1, "conf/x.yaml: train.lr: expected a number") == ""
    assert fail(1, "/data/n2 is not readable") == "[rank 1] error: /data/n2 is not readable\n"


def test_slurm_variables_become_torchrun_variables() -> None:
    env = {
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NTASKS": "8",
        "SLURM_STEP_ID": "0",
        "SLURM_JOB_ID": "123456",
        "SLURM_JOB_NODELIST": "gpu[07-09,12],cpu1",
    }
    batch_script = {k: v for k, v in env.items() if k != "SLURM_STEP_ID"}  # sbatch's own shell: one process
    assert not join_slurm_step(batch_script) and "RANK" not in batch_script
    assert join_slurm_step(env)
    assert {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")} == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(15000 + 123456 % 20000),
    }
    assert not join_slurm_step(env)  # idempotent: torchrun's variables win
    assert first_slurm_host("node-a,node-b") == "node-a"


def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RunFolderError, match=r"^\S+/file/run: cannot create the run folder \(.+\)$"):
        Trainer(_cfg(tmp_path / "file" / "run"), Net(), noisy_batch)
