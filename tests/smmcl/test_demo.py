"""The SMMCL demo trains both runs through common.engine.Trainer (no private loop), on the same batches."""

from __future__ import annotations

import pytest
import torch

from common.engine import Trainer
from smmcl import demo


def _recording_fit(monkeypatch) -> list:
    fits = []
    real_fit = Trainer.fit

    def fit(self):
        model = real_fit(self)
        fits.append((self.step, self.cfg.max_seconds, id(self.train_data)))
        return model

    monkeypatch.setattr(Trainer, "fit", fit)
    return fits


def test_demo_runs_are_engine_runs_on_the_same_cached_batches(tmp_path, monkeypatch):
    from common.synthetic import write_rgbx_scenes
    from smmcl.data import RGBXDataset, RGBXDatasetConfig

    fits = _recording_fit(monkeypatch)
    root = write_rgbx_scenes(tmp_path / "data", n_train=4, n_test=1, size=demo.SIZE, seed=0)
    cfg = RGBXDatasetConfig(root=str(root), num_classes=demo.NUM_CLASSES, label_offset=-1, crop=demo.SIZE)
    batches = demo._SharedBatches(RGBXDataset(cfg, "train"), seed=0)
    torch.manual_seed(3)
    state = torch.random.get_rng_state()
    first = batches(0)
    assert torch.equal(torch.random.get_rng_state(), state)  # drawing batches leaves the training RNG alone
    _, steps, _ = demo._train(batches, False, 0, tmp_path / "base", steps=None, seconds=0.01)
    _, steps2, _ = demo._train(batches, True, 0, tmp_path / "smmcl", steps=steps, seconds=0.01)
    assert steps >= 1 and steps2 == steps and batches(0) is first
    (_, budget, data_a), (_, no_budget, data_b) = fits
    assert budget == 0.01 and no_budget is None and data_a == data_b == id(batches)
    assert (tmp_path / "base" / "config.yaml").is_file()  # an engine run folder


@pytest.mark.slow
def test_run_demo_report(tmp_path, monkeypatch):
    fits = _recording_fit(monkeypatch)
    md = demo.run_demo(tmp_path / "demo", minutes=0.02, seed=0)
    assert len(fits) == 2 and fits[0][0] == fits[1][0]
    assert "| CE only (Base) |" in md and "| CE + SMMCL |" in md
