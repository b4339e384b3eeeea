"""common.engine.Trainer: learning, accumulation, NaN errors, param groups, logging and bit-exact resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from common.checkpoint import CheckpointError, load_checkpoint
from common.engine import NonFiniteLossError, ScheduleConfig, TrainConfig, Trainer

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

    def evaluate(model: nn.Module, step: int) -> dict[str, float]:
        assert not model.training
        evals.append(step)
        return {"mse": float(((model.body(ds.x).squeeze(-1) - ds.y) ** 2).mean())}

    model = Regressor(dropout=0.0)
    with torch.no_grad():
        before = float(((model.body(ds.x).squeeze(-1) - ds.y) ** 2).mean())
    Trainer(cfg, model, ds, evaluate=evaluate, image_logger=lambda m, s: {"img": torch.rand(3, 4, 4)}).fit()
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
    model.on_step_end = lambda step: model.seen.append(-step)  # type: ignore[attr-defined]
    last = {k: v.clone() for k, v in model.body[3].state_dict().items()}
    first = model.body[0].weight.detach().clone()
    trainer = Trainer(_cfg(tmp_path, max_steps=3, weight_decay=0.0, grad_clip=1e-3), model, random_batch)
    trainer.fit()
    assert len(trainer.optimizer.param_groups) == 2
    assert model.seen == [-1, -2, -3]  # the optional hook runs after each optimizer step
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
