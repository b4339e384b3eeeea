"""common.callbacks.NoReferenceQuality with a fake renderer and scorer, a fake and a real TensorBoard writer."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from common.callbacks import NoReferenceQuality
from common.engine import TrainConfig, Trainer


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def add_scalar(self, tag, value, step) -> None:
        self.calls.append(("scalar", tag, value, step))

    def add_image(self, tag, img, step) -> None:
        self.calls.append(("image", tag, tuple(img.shape), step))


def make_trainer(tmp_path: Path, rank: int = 0, writer=None) -> SimpleNamespace:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    t = SimpleNamespace(
        model=model,
        step=0,
        writer=writer,
        out_dir=tmp_path,
        info=SimpleNamespace(rank=rank),
        cfg=TrainConfig(),
    )
    t.main = rank == 0
    t.log = functools.partial(Trainer.log, t)  # the engine's own logging on this stand-in
    return t


def fake_render(seen: list):
    def render(model: nn.Module, step: int) -> torch.Tensor:
        seen.append((step, model.training, torch.is_grad_enabled()))
        return torch.full((5, 3, 16, 20), step / 10.0)

    return render


def run_steps(cb: NoReferenceQuality, trainer, steps: int) -> None:
    cb.on_train_start(trainer)
    for s in range(1, steps + 1):
        assert cb.before_step(trainer, s - 1) is False
        trainer.step = s
        cb.after_step(trainer, s, {"loss": 1.0})
    cb.on_train_end(trainer)


def test_scores_every_n_steps_and_at_the_end(tmp_path: Path) -> None:
    seen: list = []
    writer = Recorder()
    trainer = make_trainer(tmp_path, writer=writer)
    cb = NoReferenceQuality(fake_render(seen), lambda f: float(f.mean()) * 2, every=3)
    run_steps(cb, trainer, 7)
    assert [s for s, _, _ in seen] == [3, 6, 7]
    assert all(not training and not grad for _, training, grad in seen)  # eval mode, no grad
    assert trainer.model.training  # restored
    assert [(s, round(v, 6)) for s, v, _ in cb.history] == [(3, 0.6), (6, 1.2), (7, 1.4)]
    scalars = [c for c in writer.calls if c[:2] == ("scalar", "eval/nvs_sqa")]
    assert [(c[2], c[3]) for c in scalars] == [
        (pytest.approx(0.6), 3),
        (pytest.approx(1.2), 6),
        (pytest.approx(1.4), 7),
    ]
    images = [c for c in writer.calls if c[0] == "image"]
    # 5 frames of 16x20 in a 3-column grid (2 rows) with 2-px padding
    assert images[0][1:] == ("eval/nvs_sqa/frames", (3, 2 * 18 + 2, 3 * 22 + 2), 3)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(x["step"], round(x["eval/nvs_sqa"], 6)) for x in lines] == [(3, 0.6), (6, 1.2), (7, 1.4)]


def test_no_double_score_at_end_and_state_roundtrip(tmp_path: Path) -> None:
    seen: list = []
    trainer = make_trainer(tmp_path)
    cb = NoReferenceQuality(fake_render(seen), lambda f: 1.0, every=2)
    run_steps(cb, trainer, 4)
    assert [s for s, _, _ in seen] == [2, 4]
    other = NoReferenceQuality(fake_render([]), lambda f: 0.0, every=2)
    state: dict = {}
    cb.on_save_checkpoint(state)
    other.on_load_checkpoint(json.loads(json.dumps(state)))  # plain types only
    assert other.history == cb.history


def test_only_the_main_rank_renders(tmp_path: Path) -> None:
    seen: list = []
    trainer = make_trainer(tmp_path, rank=1)
    cb = NoReferenceQuality(fake_render(seen), lambda f: 1.0, every=1)
    run_steps(cb, trainer, 2)
    assert seen == [] and cb.history == [] and not (tmp_path / "metrics.jsonl").exists()


def test_uint8_frames_and_bad_frames(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    got = []
    cb = NoReferenceQuality(
        lambda m, s: torch.full((2, 3, 8, 8), 255, dtype=torch.uint8), got.append, every=1
    )
    with pytest.raises(TypeError):  # the score function returned None: not a float
        cb.run(trainer, 1)
    assert got[0].dtype == torch.float32 and float(got[0].max()) == 1.0
    bad = NoReferenceQuality(lambda m, s: torch.zeros(3, 8, 8), lambda f: 0.0, every=1)
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        bad.run(trainer, 1)
    with pytest.raises(ValueError):
        NoReferenceQuality(lambda m, s: None, lambda f: 0.0, every=0)


def test_real_tensorboard_event_file(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    trainer = make_trainer(tmp_path, writer=writer)
    cb = NoReferenceQuality(fake_render([]), lambda f: -1.5, every=2, grid_frames=4)
    run_steps(cb, trainer, 2)
    writer.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("eval/nvs_sqa")] == [(2, -1.5)]
    (img,) = acc.Images("eval/nvs_sqa/frames")
    assert img.step == 2 and (img.width, img.height) == (2 * 22 + 2, 2 * 18 + 2)  # 4 frames: 2x2 grid


def test_with_the_engine(tmp_path: Path) -> None:
    from common.callbacks import Callback
    from common.engine import TrainConfig, Trainer

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def training_step(self, batch: dict) -> dict:
            return {"mse": (self.lin(batch["x"]) ** 2).mean()}

        def render(self, step: int) -> torch.Tensor:  # frames whose mean tracks the weights
            return torch.sigmoid(self.lin.weight.sum()).expand(4, 3, 8, 8).clone()

    cb = NoReferenceQuality(lambda m, s: m.render(s), lambda f: float(f.mean()), every=2)
    assert isinstance(cb, Callback)
    cfg = TrainConfig(max_steps=5, batch_size=2, lr=0.1, out_dir=str(tmp_path), tensorboard=False,
                      progress=False, log_every=100, ckpt_every=0)  # fmt: skip
    model = Trainer(cfg, Model(), lambda step: {"x": torch.randn(2, 3)}, callbacks=[cb]).fit()
    assert [s for s, _, _ in cb.history] == [2, 4, 5]
    assert cb.history[-1][1] == pytest.approx(float(model.render(5).detach().mean()))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "eval/nvs_sqa" in x] == [2, 4, 5]
    (ck,) = (tmp_path / "checkpoints").glob("*.pth")
    saved = torch.load(ck, weights_only=True)["callbacks"]
    assert [h[0] for h in next(iter(saved.values()))["history"]] == [
        2,
        4,
    ]  # saved before the end-of-run event
