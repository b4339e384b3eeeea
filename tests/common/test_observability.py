"""Observability (issue 20 §6): named LR groups, ETA, the CSV logger and --print-config."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import Tensor, nn

from common import config as config_module
from common.config import build_parser, cli_overrides, load_config
from common.engine import ScheduleConfig, TrainConfig, Trainer, _eta_s

ROOT = Path(__file__).resolve().parents[2]


class TwoGroups(nn.Module):
    """A linear fit whose optimiser groups carry names, as the pipelines' `param_groups` do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc, self.head = nn.Linear(3, 4), nn.Linear(4, 1)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"mse": ((self.head(self.enc(batch["x"])).squeeze(-1) - batch["y"]) ** 2).mean()}

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        return [
            {"params": list(self.enc.parameters()), "name": "enc"},
            {"params": list(self.head.parameters()), "lr": 0.5 * cfg.lr, "name": "head"},
        ]


def _batch(step: int) -> dict[str, Tensor]:
    x = torch.randn(8, 3)
    return {"x": x, "y": x.sum(-1)}


def test_named_lr_groups_eta_and_csv(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = TrainConfig(max_steps=6, lr=0.1, log_every=3, tensorboard=False, progress=False, csv=True,
                      out_dir=str(tmp_path), schedule=ScheduleConfig(name="constant"))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="common.engine"):
        Trainer(cfg, TwoGroups(), _batch).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]
    assert rows[0]["lr/enc"] == 0.1 and rows[0]["lr/head"] == 0.05
    assert not any(k.startswith("lr/group") for r in rows for k in r)
    assert rows[0]["time/eta_s"] >= 0.0 and rows[1]["time/eta_s"] == 0.0  # nothing left at max_steps
    assert "eta=0:00:00" in caplog.text
    with open(tmp_path / "metrics.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert {(int(r["step"]), r["name"]): float(r["value"]) for r in table} == {
        (r["step"], k): v for r in rows for k, v in r.items() if k != "step"
    }


def test_eta_formula() -> None:
    cfg = TrainConfig(max_steps=100)
    assert _eta_s(cfg, 50, steps_per_s=10.0, elapsed_s=1.0) == 5.0  # 50 steps left at 10 steps/s
    timed = TrainConfig(max_steps=100, max_seconds=3.0)
    assert _eta_s(timed, 50, steps_per_s=10.0, elapsed_s=1.0) == 2.0  # the time budget ends first
    assert _eta_s(timed, 50, steps_per_s=10.0, elapsed_s=4.0) == 0.0


def test_csv_off_by_default(tmp_path: Path) -> None:
    cfg = TrainConfig(
        max_steps=2, lr=0.1, log_every=1, tensorboard=False, progress=False, out_dir=str(tmp_path)
    )
    Trainer(cfg, TwoGroups(), _batch).fit()
    assert (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "metrics.csv").exists()


def test_default_group_is_named(tmp_path: Path) -> None:
    class OneGroup(nn.Module):  # no param_groups: the engine's single group
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
            return {"mse": ((self.lin(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()}

    cfg = TrainConfig(
        max_steps=1, lr=0.1, log_every=1, tensorboard=False, progress=False, out_dir=str(tmp_path)
    )
    Trainer(cfg, OneGroup(), _batch).fit()
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["lr/all"] == 0.1


def test_print_config_prints_resolved_and_exits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(config_module, "_print_requested", False)
    args = build_parser("t").parse_args(["--print-config", "--set", "lr=0.5", "-o", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as exc:
        load_config(None, TrainConfig, cli_overrides(args, out_dir_key="out_dir"))
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["lr"] == 0.5 and printed["out_dir"] == str(tmp_path / "r")
    assert printed["max_steps"] == TrainConfig().max_steps  # defaults filled in: the resolved config


def test_print_config_script(tmp_path: Path) -> None:
    """A real training script prints the shipped config with the override and starts nothing."""
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts/train_nvs_sqa.py"), "-c", "nvs_sqa/tiny", "--print-config",
         "--set", "train.lr=0.25", "-o", str(out), "-d", "cpu"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env={"DATA_ROOT": str(tmp_path),
         "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["train"]["lr"] == 0.25 and printed["data"]["root"] == f"{tmp_path}/nss"
    assert not out.exists()
