"""common.callbacks.EMA: the update against the hand-written formula, evaluation on the average without
touching training, bit-exact resume, Parameters replaced mid-run (scene pruning / growth), and one tiny
run of each pipeline with the callback switched on from its YAML config (`train.callbacks`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from common.callbacks import EMA, Callback, build_callbacks
from common.checkpoint import load_checkpoint
from common.config import ConfigError, load_config
from common.engine import TrainConfig, Trainer, prepare_run, swap_parameter

REPO = Path(__file__).resolve().parents[2]
EMA_ON = "train.callbacks=[{name: ema, decay: 0.5}]"


@pytest.fixture
def one_thread():
    """Small networks, and the scene's bit-exact comparison: one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("warmup", [True, False])
def test_update_is_the_hand_formula(warmup: bool) -> None:
    """ema_0 = p_0; ema_{n+1} = d_n ema_n + (1 - d_n) p_{n+1}, d_n = min(0.25, (1+n)/(10+n)) with warm-up:
    0.1, 2/11, then the cap 0.25."""
    model = nn.Linear(3, 1, bias=False)
    trainer = SimpleNamespace(model=model)
    values = torch.tensor(
        [[1.0, -2.0, 0.5], [3.0, 0.0, -1.0], [0.5, 4.0, 2.0], [-1.0, 1.0, 1.0], [2.0, 2.0, 0.0]]
    )
    ema = EMA(decay=0.25, warmup=warmup)
    with torch.no_grad():
        model.weight.copy_(values[0:1])
    ema.on_train_start(trainer)
    expected = values[0].double()
    for n, v in enumerate(values[1:]):
        d = min(0.25, (1 + n) / (10 + n)) if warmup else 0.25
        assert ema.current_decay() == pytest.approx(d, rel=1e-12)
        with torch.no_grad():
            model.weight.copy_(v[None])
        ema.after_step(trainer, n + 1, {})
        expected = d * expected + (1 - d) * v.double()
    assert ema.updates == 4
    torch.testing.assert_close(ema.shadow["weight"][0].double(), expected, rtol=1e-6, atol=1e-7)


def test_config_entries_and_bad_ones() -> None:
    (ema,) = build_callbacks([{"name": "ema", "decay": 0.9, "warmup": False}])
    assert isinstance(ema, EMA) and ema.decay == 0.9 and not ema.warmup
    with pytest.raises(ValueError, match=r"train.callbacks\[0\]: name 'emma' is not one of \['ema'\]"):
        TrainConfig(callbacks=({"name": "emma"},))
    with pytest.raises(ValueError, match=r"train.callbacks\[0\] \(ema\).*'rate'"):
        TrainConfig(callbacks=({"name": "ema", "rate": 0.9},))
    with pytest.raises(ValueError, match="decay must be in"):
        EMA(decay=1.0)
    assert load_config(None, Exp, [EMA_ON]).train.callbacks == ({"name": "ema", "decay": 0.5},)
    with pytest.raises(ConfigError, match="emma"):
        load_config(None, Exp, ["train.callbacks=[{name: emma}]"])


@dataclass(frozen=True)
class Exp:
    train: TrainConfig = TrainConfig()


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same initial weights in every run
        self.lin = nn.Linear(4, 1)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"mse": ((self.lin(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()}


def batch(step: int) -> dict[str, Tensor]:
    x = torch.randn(8, 4)
    return {"x": x, "y": x @ torch.tensor([1.0, -2.0, 0.5, 3.0])}


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(max_steps=6, lr=0.05, out_dir=str(out), tensorboard=False, progress=False, log_every=0)
    return TrainConfig(**{**base, **kw})


class Seen:
    """An Evaluator stand-in recording the weights it evaluates."""

    def __init__(self) -> None:
        self.weights: list[Tensor] = []

    def run(self, model: nn.Module, data: object, step: int) -> SimpleNamespace:
        self.weights.append(model.lin.weight.detach().clone())
        return SimpleNamespace(aggregate={"w": float(model.lin.weight.sum())})


def test_evaluates_the_average_and_leaves_training_alone(tmp_path: Path) -> None:
    plain = Trainer(_cfg(tmp_path / "plain"), Net(), batch).fit()
    seen = Seen()
    cfg = _cfg(tmp_path / "ema", eval_every=3, callbacks=({"name": "ema", "decay": 0.5},))
    trained = Trainer(cfg, Net(), batch, evaluator=seen, val_data=[]).fit()
    for k, v in plain.state_dict().items():
        assert torch.equal(v, trained.state_dict()[k]), k  # the swaps are exact copies
    shadow = load_checkpoint(tmp_path / "ema/checkpoints/step-00000006.pth")["callbacks"]["ema"]["shadow"]
    assert len(seen.weights) == 2 and torch.equal(seen.weights[-1], shadow["lin.weight"])
    assert not torch.equal(shadow["lin.weight"], trained.lin.weight)


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    ema = ({"name": "ema", "decay": 0.5},)
    full = Trainer(_cfg(tmp_path / "full", callbacks=ema), Net(), batch).fit()
    Trainer(_cfg(tmp_path / "cut", max_steps=3, callbacks=ema), Net(), batch).fit()
    resumed = Trainer(_cfg(tmp_path / "cut", callbacks=ema), Net(), batch, resume="auto")
    (cb,) = resumed.callbacks
    assert cb.updates == 3
    out = resumed.fit()
    ck = [load_checkpoint(tmp_path / r / "checkpoints/step-00000006.pth") for r in ("full", "cut")]
    for k, v in full.state_dict().items():
        assert torch.equal(v, out.state_dict()[k]), k
    a, b = (c["callbacks"]["ema"] for c in ck)
    assert a["updates"] == b["updates"] == 6
    assert all(torch.equal(a["shadow"][k], b["shadow"][k]) for k in a["shadow"])


class Growing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.v = nn.Parameter(torch.ones(2))

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"l": ((self.w - 1.0) ** 2).sum() + ((self.v + 1.0) ** 2).sum()}


class Grow(Callback):
    """Appends one entry to `w` before step 2 (point growth stand-in); keeps the grown value."""

    def before_step(self, trainer: Trainer, step: int) -> bool:
        if step != 2:
            return False
        old = trainer.model.w
        trainer.model.w = new = nn.Parameter(torch.cat([old.detach(), torch.full((1,), 5.0)]))
        swap_parameter(trainer.optimizer, old, new, edit=lambda t: torch.cat([t, torch.zeros(1)]))
        self.grown = new.detach().clone()
        return True


def test_replaced_parameters_restart_their_average(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(tmp_path, max_steps=3, callbacks=({"name": "ema", "decay": 0.5, "warmup": False},))
    grow = Grow()
    trainer = Trainer(cfg, Growing(), batch, callbacks=[grow])
    ema = trainer.callbacks[1]
    with caplog.at_level(logging.INFO, logger="common.callbacks"):
        model = trainer.fit()
    assert "average of w restarts from the current values (shape (3,) -> (4,))" in caplog.text
    assert "average of v" not in caplog.text and ema.updates == 3
    # w restarted from its grown value before step 3, then one update with d = 0.5
    torch.testing.assert_close(ema.shadow["w"], 0.5 * grow.grown + 0.5 * model.w.detach())
    assert ema.shadow["v"].shape == (2,) and not torch.equal(ema.shadow["v"], model.v.detach())


# ------------------------------------------------------------------- every pipeline, from its YAML
def _schema(pipeline: str) -> type:
    if pipeline == "smmcl":
        from smmcl.experiment import ExperimentConfig

        return ExperimentConfig
    if pipeline == "nvs_sqa":
        from nvs_sqa.experiment import ExperimentConfig

        return ExperimentConfig
    from smcl.object.experiment import SynthExperiment

    return SynthExperiment


def _ema_state(run: Path) -> dict:
    (ck,) = sorted((run / "checkpoints").glob("*.pth"))[-1:]
    return load_checkpoint(ck)["callbacks"]["ema"]


def _trainable(model: nn.Module) -> set[str]:
    return {k for k, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("pipeline", ["smmcl", "nvs_sqa", "smcl_object"])
def test_tiny_run_of_each_pipeline_with_ema_from_yaml(
    pipeline: str, tmp_path: Path, one_thread: None
) -> None:
    run = tmp_path / "run"
    if pipeline == "smmcl":
        from common.synthetic import write_rgbx_scenes
        from smmcl.experiment import build

        root = write_rgbx_scenes(tmp_path / "rgbx", n_train=4, n_test=2, size=(60, 80), seed=0)
        yaml, steps = REPO / "conf/smmcl/tiny.yaml", 1
    elif pipeline == "nvs_sqa":
        from common.synthetic import write_nss_renders
        from nvs_sqa.experiment import build

        root = tmp_path / "nss"
        write_nss_renders(root, n_scenes=2, n_frames=4, size=(72, 80), seed=0)
        yaml, steps = REPO / "conf/nvs_sqa/tiny.yaml", 1
    else:
        from smcl.object.experiment import build_synth as build
        from tests.smcl_object.ellipsoids import write_ellipsoid_nmr

        root = write_ellipsoid_nmr(tmp_path / "nmr", n_objects=3, image_size=64, seed=5)
        yaml, steps = REPO / "conf/smcl/object_tiny.yaml", 1
    over = [f"data.root={root}", f"train.out_dir={run}", f"train.max_steps={steps}", EMA_ON]
    cfg = load_config(yaml, _schema(pipeline), over)
    assert cfg.train.callbacks == ({"name": "ema", "decay": 0.5},)
    info = prepare_run(cfg)
    parts = build(cfg, info.world_size) if pipeline == "smmcl" else build(cfg)
    model = Trainer(cfg.train, **parts, config=cfg).fit()
    state = _ema_state(run)
    assert state["updates"] == steps and set(state["shadow"]) == _trainable(model)
    changed = [
        k for k, v in state["shadow"].items() if not torch.equal(v, model.get_parameter(k).detach().cpu())
    ]
    assert changed  # the average lags the trained weights


def test_scene_with_ema_across_pruning_and_growth_resumes_bit_exactly(
    tmp_path: Path, one_thread: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The scene's tiny schedule of tests/smcl_scene (prune at 3 and 6, grow at 4, checkpoint at 5)."""
    from common.synthetic import write_nerf_synthetic
    from smcl.scene.experiment import ExperimentConfig, train
    from tests.smcl_scene.test_experiment import SCHEDULE, TINY

    root = write_nerf_synthetic(tmp_path / "scene", n_train=4, n_val=1, n_test=2, size=16)
    cfg = load_config(TINY, ExperimentConfig, [f"data.root={root}", f"train.out_dir={tmp_path / 'run'}",
                                                *SCHEDULE, EMA_ON])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="common.callbacks"):
        full = train(cfg)
    assert "average of points restarts from the current values" in caplog.text
    final = _ema_state(tmp_path / "run")
    assert final["updates"] == 8 and final["shadow"]["points"].shape == full.points.shape
    again = replace(cfg, train=replace(cfg.train, out_dir=str(tmp_path / "again")))
    resumed = train(again, resume=str(tmp_path / "run/checkpoints/step-00000005.pth"))
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    other = _ema_state(tmp_path / "again")
    assert other["updates"] == 8
    assert all(torch.equal(other["shadow"][k], v) for k, v in final["shadow"].items())
