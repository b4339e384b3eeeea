"""common.engine.Trainer: learning, accumulation, NaN errors, param groups, logging and bit-exact resume."""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import Tensor, nn
from torch.utils.data import Dataset

from common import checkpoint as checkpoint_module
from common import engine as engine_module
from common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from common.distributed import DistInfo
from common.engine import (
    Callback,
    NonFiniteLossError,
    ScheduleConfig,
    TrainConfig,
    Trainer,
    convert_sync_bn,
    prepare_run,
    swap_parameter,
)
from common.runs import ConfigChangeError, RunFolderError

W_TRUE = torch.tensor([1.0, -2.0, 0.5, 3.0])


class NoisyRegression(Dataset):
    """y = x @ W_TRUE; __getitem__ adds noise from the global torch RNG (augmentation stand-in)."""

    def __init__(self, n: int = 48) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ W_TRUE

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.x[i] + 0.01 * torch.randn(4), "y": self.y[i], "index": torch.tensor(i)}


class Regressor(nn.Module):
    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        torch.manual_seed(123)
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))
        self.seen: list[int] = []

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if "index" in batch:
            self.seen.extend(batch["index"].tolist())
        pred = self.body(batch["x"]).squeeze(-1)
        mse = ((pred - batch["y"]) ** 2).mean()
        return {"mse": mse, "l2": 1e-4 * sum((p**2).sum() for p in self.parameters())}


def random_batch(step: int) -> dict[str, Tensor]:
    x = torch.randn(8, 4)
    return {"x": x, "y": x @ W_TRUE}


def _cfg(out: Path, **kw: object) -> TrainConfig:
    base = dict(
        max_steps=12,
        batch_size=8,
        lr=1e-2,
        optimizer="adamw",
        weight_decay=0.01,
        grad_clip=1.0,
        grad_accum=2,
        schedule=ScheduleConfig(name="cosine", warmup_steps=3),
        log_every=4,
        out_dir=str(out),
        tensorboard=False,
        progress=False,
        seed=5,
    )
    base.update(kw)
    return TrainConfig(**base)


class Interrupt(Exception):
    pass


def _interrupting(model: Regressor, at_call: int) -> Regressor:
    orig = model.training_step
    calls = {"n": 0}

    def step(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        calls["n"] += 1
        if calls["n"] > at_call:
            raise Interrupt
        return orig(batch)

    model.training_step = step  # type: ignore[method-assign]
    return model


@pytest.mark.parametrize("source", ["dataset", "callable"])
def test_resume_is_bit_exact(tmp_path: Path, source: str) -> None:
    data = NoisyRegression if source == "dataset" else (lambda: random_batch)
    init = Regressor().state_dict()
    # 12 steps x 2 micro-batches of 8 over 48 items: crosses epoch boundaries (3 batches per epoch)
    full = Trainer(_cfg(tmp_path / "full"), Regressor(), data()).fit()
    run = tmp_path / "cut"
    with pytest.raises(Interrupt):  # dies during step 8, after the step-5 checkpoint
        Trainer(_cfg(run, ckpt_every=5), _interrupting(Regressor(), 15), data()).fit()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000005.pth"]
    resumed = Trainer(_cfg(run, ckpt_every=5), Regressor(), data(), resume="auto").fit()
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
        assert not torch.equal(v, init[k]), k
    ck = load_checkpoint(run / "checkpoints" / "step-00000012.pth")
    assert ck["step"] == 12 and set(ck) >= {
        "config",
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "rng",
        "git_sha",
    }
    assert ck["config"]["max_steps"] == 12
    assert (run / "config.yaml").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"step-{s:08d}.pth" for s in (5, 10, 12)
    ]


def test_learns_and_logs(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        max_steps=150,
        grad_accum=1,
        grad_clip=None,
        lr=2e-2,
        log_every=25,
        eval_every=50,
        tensorboard=True,
        schedule=ScheduleConfig(name="constant"),
    )
    ds = NoisyRegression()
    evals: list[int] = []

    class MSE:  # an Evaluator's interface: run(model, data, step) -> result with .aggregate
        def run(self, model: nn.Module, data: Dataset, step: int) -> SimpleNamespace:
            assert not model.training
            evals.append(step)
            return SimpleNamespace(
                aggregate={"mse": float(((model.body(ds.x).squeeze(-1) - ds.y) ** 2).mean())}
            )

    model = Regressor(dropout=0.0)
    with torch.no_grad():
        before = float(((model.body(ds.x).squeeze(-1) - ds.y) ** 2).mean())
    Trainer(cfg, model, ds, evaluator=MSE(), val_data=ds).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    final = [r["eval/mse"] for r in rows if "eval/mse" in r]
    assert evals == [50, 100, 150] and len(final) == 3
    assert final[-1] < 0.05 * before
    assert rows[0]["step"] == 25 and rows[0]["loss/total"] == pytest.approx(
        rows[0]["loss/mse"] + rows[0]["loss/l2"]
    )
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    # each epoch visits every item exactly once (shuffled)
    assert sorted(model.seen[:48]) == list(range(48)) and model.seen[:48] != list(range(48))


def test_grad_accum_equals_big_batch(tmp_path: Path) -> None:
    """2 micro-batches of 4 == 1 batch of 8 on the same items (no dropout, SGD, mean loss)."""
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    batch = {"x": x, "y": x @ W_TRUE}
    halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
    kw = dict(max_steps=1, optimizer="sgd", grad_clip=None, weight_decay=0.0, schedule=ScheduleConfig())
    a = Trainer(_cfg(tmp_path / "a", grad_accum=1, **kw), Regressor(0.0), lambda s: batch).fit()
    b = Trainer(_cfg(tmp_path / "b", grad_accum=2, **kw), Regressor(0.0), lambda s: halves[s % 2]).fit()
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=1e-6, atol=1e-7)


def test_nonfinite_loss_names_step_and_term(tmp_path: Path) -> None:
    class Bad(Regressor):
        def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
            out = super().training_step(batch)
            self.calls = getattr(self, "calls", 0) + 1
            out["depth"] = torch.tensor(float("nan") if self.calls > 3 else 0.0)
            return out

    with pytest.raises(NonFiniteLossError, match=r"step 3: 'depth' = nan"):
        Trainer(_cfg(tmp_path, grad_accum=1), Bad(), random_batch).fit()


def test_param_groups_and_grad_clip(tmp_path: Path) -> None:
    class Grouped(Regressor):
        def param_groups(self, cfg: TrainConfig) -> list[dict]:
            return [
                {"params": list(self.body[0].parameters()), "lr": cfg.lr},
                {"params": list(self.body[3].parameters()), "lr": 0.0},  # frozen through its group
            ]

    model = Grouped(0.0)
    last = {k: v.clone() for k, v in model.body[3].state_dict().items()}
    first = model.body[0].weight.detach().clone()
    trainer = Trainer(_cfg(tmp_path, max_steps=3, weight_decay=0.0, grad_clip=1e-3), model, random_batch)
    trainer.fit()
    assert len(trainer.optimizer.param_groups) == 2
    assert all(torch.equal(v, model.body[3].state_dict()[k]) for k, v in last.items())
    assert not torch.equal(first, model.body[0].weight)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["lr/group1"] == 0.0 and rows[-1]["grad_norm"] > 1e-3  # norm before clipping


def test_keep_last_and_epoch_names(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        max_steps=8,
        grad_accum=1,
        ckpt_every=2,
        keep_last=2,
        ckpt_name="epoch-{epoch}.pth",
        steps_per_epoch=2,
    )
    Trainer(cfg, Regressor(), NoisyRegression()).fit()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-3.pth", "epoch-4.pth"]
    with pytest.raises(TypeError, match="training_step"):
        Trainer(cfg, nn.Linear(2, 2), random_batch)


class DtypeProbe(Regressor):
    """Records the dtype the first linear layer computes in (autocast or not)."""

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        self.dtype = self.body[0](batch["x"]).dtype
        return super().training_step(batch)


def test_precision_on_cpu(tmp_path: Path) -> None:
    fp32 = DtypeProbe(0.0)
    Trainer(_cfg(tmp_path / "a", max_steps=2), fp32, random_batch).fit()
    assert fp32.dtype == torch.float32
    bf16 = DtypeProbe(0.0)
    t = Trainer(_cfg(tmp_path / "b", max_steps=2, precision="bf16"), bf16, random_batch)
    t.fit()
    assert bf16.dtype == torch.bfloat16 and bf16.body[0].weight.dtype == torch.float32
    assert not t.scaler.is_enabled()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_amp_on_cuda(tmp_path: Path, precision: str, dtype: torch.dtype) -> None:
    model = DtypeProbe(0.0)
    t = Trainer(_cfg(tmp_path, max_steps=20, precision=precision), model, random_batch, devices="0")
    t.fit()
    assert model.dtype == dtype and model.body[0].weight.device.type == "cuda"
    assert t.scaler.is_enabled() == (precision == "fp16")
    ck = load_checkpoint(tmp_path / "checkpoints" / "step-00000020.pth")
    assert ck["scaler"] if precision == "fp16" else True


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        yield from ({"x": torch.randn(4), "y": torch.zeros(())} for _ in range(100))


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Stream must be a map-style Dataset"):
        Trainer(_cfg(tmp_path), Regressor(), Stream())
    with pytest.raises(CheckpointError, match="missing.pth does not exist"):
        Trainer(_cfg(tmp_path), Regressor(), random_batch, resume=str(tmp_path / "missing.pth")).fit()
    with pytest.raises(ValueError, match="optimizer"):
        _cfg(tmp_path, optimizer="lamb")


# ------------------------------------------------------------------ run folders, resume safety, callbacks


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_new_run_in_used_folder_stops_or_moves_old_files_aside(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, max_steps=4, grad_accum=1, ckpt_every=2, keep_last=1)
    Trainer(cfg, Regressor(), random_batch).fit()
    first = load_checkpoint(tmp_path / "checkpoints" / "step-00000004.pth")
    with pytest.raises(RunFolderError, match=r"step-00000004\.pth.*--resume auto.*--overwrite"):
        Trainer(cfg, Regressor(), random_batch)
    with pytest.raises(RunFolderError, match="exclude each other"):
        Trainer(cfg, Regressor(), random_batch, resume="auto", overwrite=True)
    Trainer(replace(cfg, max_steps=2, seed=9), Regressor(), random_batch, overwrite=True).fit()
    (old,) = [p for p in tmp_path.iterdir() if p.name.startswith("old-")]
    assert _names(old) == ["checkpoints", "config.yaml", "metrics.jsonl"]
    kept = load_checkpoint(old / "checkpoints" / "step-00000004.pth")  # moved, never deleted
    assert torch.equal(kept["model"]["body.0.weight"], first["model"]["body.0.weight"])
    assert _names(tmp_path / "checkpoints") == ["step-00000002.pth"]
    assert yaml_load(tmp_path / "config.yaml")["seed"] == 9


def yaml_load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_pruning_keeps_other_runs_and_stale_temp_files_go(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, max_steps=4, grad_accum=1, ckpt_every=1, keep_last=2)
    Trainer(cfg, Regressor(), random_batch).fit()
    ckpt = tmp_path / "checkpoints"
    save_checkpoint({"step": 99, "run_id": "another-run"}, ckpt / "step-00000099.pth")
    save_checkpoint({"step": 1}, ckpt / "step-00000001.pth")  # no run id: never ours to delete
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = ckpt / f".step-00000005.pth.tmp-{dead.pid}"
    stale.write_bytes(b"half a checkpoint")
    resumed = Trainer(
        replace(cfg, max_steps=7), Regressor(), random_batch, resume=str(ckpt / "step-00000004.pth")
    )
    assert not stale.exists()  # cleaned at start-up
    resumed.fit()
    assert _names(ckpt) == [f"step-{s:08d}.pth" for s in (1, 6, 7, 99)]


def test_resume_refuses_changed_config_unless_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _cfg(tmp_path, max_steps=4, grad_accum=1, ckpt_every=2, schedule=ScheduleConfig(name="cosine"))
    Trainer(cfg, Regressor(), random_batch).fit()
    ck = tmp_path / "checkpoints" / "step-00000002.pth"
    changed = replace(cfg, lr=0.5, weight_decay=0.0)
    with pytest.raises(ConfigChangeError) as e:
        Trainer(changed, Regressor(), random_batch, resume=str(ck))
    assert "lr: checkpoint 0.01 -> now 0.5" in str(e.value)
    assert "weight_decay: checkpoint 0.01 -> now 0.0" in str(e.value) and "--allow-config-change" in str(
        e.value
    )
    with pytest.raises(ConfigChangeError, match="lr: checkpoint"):
        prepare_run(changed, "cpu", resume=str(ck))  # refused before anything is built
    # lengthening / re-timing keys may change, and are logged
    with caplog.at_level("INFO", logger="common.engine"):
        t = Trainer(
            replace(cfg, max_steps=6, log_every=1, ckpt_every=3), Regressor(), random_batch, resume=str(ck)
        )
    assert "max_steps: checkpoint 4 -> now 6" in caplog.text and f"resumed from {ck} at step 2" in caplog.text
    assert t.scheduler.total_steps == 6 and t.step == 2
    # the schedule is re-timed: the LR of step 2 of a 6-step cosine run (hand-derived closed form)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 1e-2 * (1 + math.cos(math.pi * 2 / 6)))
    # --allow-config-change: the new values are applied, not ignored
    t = Trainer(changed, Regressor(), random_batch, resume=str(ck), allow_config_change=True)
    group = t.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.0 and group["initial_lr"] == 0.5
    assert group["lr"] == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert t.optimizer.state[t.model.body[0].weight]["step"] == 2  # moments kept from the checkpoint


def test_resume_loads_to_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GPU resume crashed: map_location=device moved the saved RNG state (and Adam's step counters)."""
    cfg = _cfg(tmp_path, max_steps=2, grad_accum=1)
    Trainer(cfg, Regressor(), random_batch).fit()
    seen: list[object] = []
    real = checkpoint_module.torch.load

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("map_location"))
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "load", spy)
    t = Trainer(replace(cfg, max_steps=3), Regressor(), random_batch, resume="auto")
    assert seen and all(m == "cpu" for m in seen)
    assert t._rng_to_restore["torch"].device.type == "cpu"
    assert t.optimizer.state[t.model.body[0].weight]["step"].device.type == "cpu"


class Growing(nn.Module):
    """A Parameter `w` that a callback grows (like point growth); load_state_dict resizes it first."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, 3))
        self.register_load_state_dict_pre_hook(self._resize)

    @staticmethod
    def _resize(module: nn.Module, sd: dict, prefix: str, *args: object) -> None:
        w = sd.get(prefix + "w")
        if w is not None and w.shape != module.w.shape:
            module.w = nn.Parameter(torch.zeros_like(w))

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        t = batch["t"][: self.w.numel()]
        return {"l": ((self.w * batch["s"] - t) ** 2).mean() + 0.01 * self.w.abs().sum()}


class Grow(Callback):
    """Adds one entry to `w` before steps 3 and 6 (Adam moments padded with zeros); counts its calls."""

    def __init__(self) -> None:
        self.grown = 0

    def before_step(self, trainer: Trainer, step: int) -> bool:
        if step not in (3, 6):
            return False
        model = trainer.model
        old = model.w
        new = nn.Parameter(torch.cat([old.detach(), torch.full((1,), 0.5)]))
        model.w = new
        swap_parameter(trainer.optimizer, old, new, edit=lambda t: torch.cat([t, torch.zeros(1)]))
        self.grown += 1
        return True

    def on_save_checkpoint(self, state: dict) -> None:
        state["grown"] = self.grown

    def on_load_checkpoint(self, state: dict) -> None:
        self.grown = state["grown"]


def grow_batch(step: int) -> dict[str, Tensor]:
    return {"t": torch.randn(8), "s": 1 + torch.rand(())}


def test_resume_after_parameter_growth_is_bit_exact(tmp_path: Path) -> None:
    kw = dict(max_steps=9, grad_accum=1, optimizer="adam", weight_decay=0.0, grad_clip=None, lr=0.05)
    full_cb = Grow()
    full = Trainer(_cfg(tmp_path / "full", **kw), Growing(), grow_batch, callbacks=[full_cb]).fit()
    assert full.w.shape == (5,) and full_cb.grown == 2
    run = tmp_path / "cut"
    cfg = _cfg(run, ckpt_every=4, **kw)
    with pytest.raises(Interrupt):  # dies in step 6, after the step-4 checkpoint (w has 4 entries)
        Trainer(cfg, _interrupting(Growing(), 5), grow_batch, callbacks=[Grow()]).fit()
    assert load_checkpoint(run / "checkpoints" / "step-00000004.pth")["model"]["w"].shape == (4,)
    cb = Grow()
    resumed = Trainer(cfg, Growing(), grow_batch, callbacks=[cb], resume="auto")
    assert resumed.model.w.shape == (4,) and cb.grown == 1  # model and callback state restored
    assert resumed.optimizer.state[resumed.model.w]["exp_avg"].shape == (4,)
    out = resumed.fit()
    assert torch.equal(out.w, full.w) and cb.grown == 2


def test_callback_state_is_keyed_by_name_and_old_position_keys_load(tmp_path: Path) -> None:
    class Named(Grow):
        name = "grow"

    kw = dict(max_steps=4, grad_accum=1, lr=0.05)
    Trainer(_cfg(tmp_path / "a", **kw), Growing(), grow_batch, callbacks=[Named(), Named(), Grow()]).fit()
    saved = load_checkpoint(tmp_path / "a/checkpoints/step-00000004.pth")["callbacks"]
    assert saved == {"grow": {"grown": 1}, "grow#2": {"grown": 1}, "Grow": {"grown": 1}}
    # a checkpoint written when callback state was keyed by list position ("0:Grow") still resumes
    run = tmp_path / "b"
    Trainer(_cfg(run, **kw), Growing(), grow_batch, callbacks=[Grow()]).fit()
    ck = run / "checkpoints/step-00000004.pth"
    state = load_checkpoint(ck)
    state["callbacks"] = {"0:Grow": {"grown": 7}}
    save_checkpoint(state, ck)
    cb = Grow()
    Trainer(_cfg(run, **{**kw, "max_steps": 5}), Growing(), grow_batch, callbacks=[cb], resume="auto")
    assert cb.grown == 7


def test_stale_parameter_in_optimizer_is_an_error(tmp_path: Path) -> None:
    class Forgets(Grow):
        def before_step(self, trainer: Trainer, step: int) -> bool:
            if step != 1:
                return False
            trainer.model.w = nn.Parameter(torch.zeros(4))
            return True

    with pytest.raises(RuntimeError, match="Forgets replaced Parameters.*swap_parameter"):
        Trainer(_cfg(tmp_path, max_steps=3, grad_accum=1), Growing(), grow_batch, callbacks=[Forgets()]).fit()


def test_fp16_resume_without_scaler_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An fp16 config trained where no GradScaler ran (CPU) resumed where one runs (CUDA): the checkpoint
    has no scaler state, so the resumed run starts a fresh scaler instead of crashing."""
    cfg = _cfg(tmp_path, max_steps=2, grad_accum=1, precision="fp16")
    Trainer(cfg, Regressor(), random_batch).fit()  # CPU: fp16 falls back to fp32, scaler disabled
    assert load_checkpoint(tmp_path / "checkpoints" / "step-00000002.pth")["scaler"] == {}
    real = torch.amp.GradScaler
    # the engine's CUDA scaler, enabled on the CPU: the scaler code path runs here without a GPU
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real("cpu", init_scale=2.0**10))
    t = Trainer(replace(cfg, max_steps=4), Regressor(), random_batch, resume="auto")
    assert t.scaler.is_enabled() and t.scaler.get_scale() == 2.0**10
    t.fit()
    saved = load_checkpoint(tmp_path / "checkpoints" / "step-00000004.pth")["scaler"]
    assert saved["scale"] == 2.0**10 and saved["_growth_tracker"] == 2
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real("cpu", init_scale=1.0))
    t = Trainer(replace(cfg, max_steps=5), Regressor(), random_batch, resume="auto")
    assert t.scaler.get_scale() == 2.0**10  # present: loaded


class Slow(Regressor):
    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        time.sleep(0.02)
        return super().training_step(batch)


def test_max_seconds_stops_saves_and_resumes_exactly(tmp_path: Path) -> None:
    kw = dict(max_steps=30, grad_accum=1, log_every=0)
    full = Trainer(_cfg(tmp_path / "full", **kw), Regressor(), random_batch).fit()
    run = tmp_path / "cut"
    t = Trainer(_cfg(run, max_seconds=0.1, **kw), Slow(), random_batch)
    t.fit()
    assert t.stopped_early and 1 <= t.step < 30
    assert _names(run / "checkpoints") == [f"step-{t.step:08d}.pth"]
    # a new invocation with a new budget (max_seconds may change on resume) continues exactly
    resumed = Trainer(_cfg(run, **kw), Regressor(), random_batch, resume="auto").fit()
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


class FakeResult:
    def __init__(self, aggregate: dict) -> None:
        self.aggregate = aggregate


class FakeEvaluator:
    """The common.evaluation.Evaluator interface the engine uses: run(model, data, step=) -> result."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def run(self, model: nn.Module, dataset: Dataset, *, step: int | None = None) -> FakeResult:
        self.calls.append((step, model.training))
        with torch.no_grad():
            mse = float(((model.body(dataset.x).squeeze(-1) - dataset.y) ** 2).mean())
        return FakeResult({"mse": mse, "seg": {"miou": torch.tensor(0.5)}, "items": [1, 2]})


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_train_start(self, trainer: Trainer) -> None:
        self.events.append(("start", trainer.step))

    def after_step(self, trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        assert set(losses) == {"mse", "l2"} and trainer.step == step
        self.events.append(("step", step))

    def after_evaluation(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        self.events.append(("eval", step, sorted(metrics)))

    def on_train_end(self, trainer: Trainer) -> None:
        self.events.append(("end", trainer.step))


def test_evaluator_and_callbacks(tmp_path: Path) -> None:
    ds = NoisyRegression()
    ev, rec = FakeEvaluator(), Recorder()
    cfg = _cfg(tmp_path, max_steps=5, grad_accum=1, eval_every=2, log_every=0)
    Trainer(cfg, Regressor(0.0), ds, evaluator=ev, val_data=ds, callbacks=[rec]).fit()
    assert ev.calls == [(2, False), (4, False), (5, False)]  # periodic + final, in eval mode
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 5] and set(rows[0]) == {"step", "eval/mse", "eval/seg/miou"}
    assert rec.events[0] == ("start", 0) and rec.events[-1] == ("end", 5)
    assert ("eval", 2, ["mse", "seg/miou"]) in rec.events
    assert [e[1] for e in rec.events if e[0] == "step"] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="val_data"):
        Trainer(_cfg(tmp_path / "x"), Regressor(), random_batch, evaluator=ev)


class Plain(nn.Module):
    """No seeding of its own: its initial weights come from the global RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"mse": ((self.lin(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()}


def test_prepare_run_seeds_before_the_model_is_built(tmp_path: Path) -> None:
    """train.seed reproduces a run only when the seed is set before the model is built."""

    def run(out: str, seed: int) -> float:
        cfg = _cfg(tmp_path / out, max_steps=1, grad_accum=1, seed=seed, log_every=1)
        torch.rand(int(torch.randint(1, 50, ())))  # whatever ran before leaves the RNG somewhere else
        prepare_run(cfg, "cpu")
        Trainer(cfg, Plain(), random_batch).fit()
        return json.loads((tmp_path / out / "metrics.jsonl").read_text())["loss/total"]

    a, b, c = run("a", 5), run("b", 5), run("c", 6)
    assert a == b and c != a


def test_global_batch_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert TrainConfig(global_batch_size=16).per_process_batch(4) == 4
    assert TrainConfig(global_batch_size=16, grad_accum=2).per_process_batch(2) == 4
    assert TrainConfig(batch_size=3).per_process_batch(4) == 3
    with pytest.raises(ValueError, match="global_batch_size=6 does not divide into 4"):
        TrainConfig(global_batch_size=6).per_process_batch(4)
    t = Trainer(_cfg(tmp_path, global_batch_size=8, grad_accum=2), Regressor(), NoisyRegression())
    assert t.loader.batch_size == 4 and t.batches_per_epoch == 12


class RandomItems(Dataset):
    """Every item is drawn from the RNG only (an augmentation): batches differ only through seeds."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": torch.rand(2)}


def test_worker_seeds_differ_between_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def first_batch(rank: int) -> Tensor:
        info = DistInfo(
            rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"), distributed=False
        )
        monkeypatch.setattr(engine_module, "init_distributed", lambda devices, timeout_s: info)
        t = Trainer(_cfg(tmp_path / f"r{rank}", batch_size=2, num_workers=1), Regressor(), RandomItems())
        return next(t._batches(0))["x"]

    a, b = first_batch(0), first_batch(1)
    assert not torch.equal(a, b)
    assert torch.equal(a, first_batch(0))  # reproducible per rank


def test_tf32_policy_is_set(tmp_path: Path) -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        Trainer(_cfg(tmp_path / "a", tf32=True), Regressor(), random_batch)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        Trainer(_cfg(tmp_path / "b"), Regressor(), random_batch)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_sync_bn_conversion() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    weight = model[1].weight
    cpu = DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), distributed=True)
    assert isinstance(convert_sync_bn(model, cpu, True)[1], nn.BatchNorm2d)  # gloo: not supported, kept
    gpu = DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cuda", 0), distributed=True)
    assert isinstance(convert_sync_bn(model, gpu, False)[1], nn.BatchNorm2d)
    converted = convert_sync_bn(model, gpu, True)
    assert isinstance(converted[1], nn.SyncBatchNorm) and converted[1].weight is weight


def test_resume_of_a_checkpoint_from_an_older_schema(tmp_path: Path) -> None:
    """A field the schema gained since the checkpoint was written (absent there) does not block resume."""
    cfg = _cfg(tmp_path, max_steps=2, grad_accum=1)
    Trainer(cfg, Regressor(), random_batch).fit()
    ck = tmp_path / "checkpoints" / "step-00000002.pth"
    state = load_checkpoint(ck)
    del state["config"]["tf32"]
    save_checkpoint(state, ck)
    assert Trainer(replace(cfg, max_steps=3), Regressor(), random_batch, resume="auto").step == 2


def test_applied_lr_change_with_a_caller_lambda_scheduler(tmp_path: Path) -> None:
    def parts(lr: float) -> dict:
        model = Regressor()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        return {
            "model": model,
            "optimizer": opt,
            "scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (1 + s)),
        }

    cfg = _cfg(tmp_path, max_steps=2, grad_accum=1, lr=0.1)
    Trainer(cfg, train_data=random_batch, **parts(0.1)).fit()
    t = Trainer(
        replace(cfg, lr=0.3), train_data=random_batch, **parts(0.3), resume="auto", allow_config_change=True
    )
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.3 / 3)  # new base x lambda(step 2)
    assert t.scheduler.get_last_lr() == [pytest.approx(0.1)]
