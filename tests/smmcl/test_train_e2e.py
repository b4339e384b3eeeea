"""2-step end-to-end train on conf/smmcl/tiny.yaml with synthetic scenes, then eval from epoch-2.pth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_tiny_train_then_eval(tmp_path, monkeypatch):
    synthetic = pytest.importorskip("common.synthetic")
    synthetic.write_rgbx_scenes(tmp_path / "synthetic_rgbx", n_train=4, n_test=2, size=(60, 80), seed=0)
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import eval_smmcl
        import train_smmcl
    finally:
        sys.path.pop(0)
    run = tmp_path / "run"
    train_smmcl.main(["-c", str(REPO / "conf/smmcl/tiny.yaml"), "-d", "cpu", "-o", str(run)])
    ckpt = run / "checkpoints" / "epoch-2.pth"
    assert ckpt.is_file()
    eval_smmcl.main(["-c", str(REPO / "conf/smmcl/tiny.yaml"), "-d", "cpu", "-o", str(run), "-e", "2"])
    summary = json.loads((run / "eval.json").read_text())
    assert 0.0 <= summary["pixel_acc"] <= 1.0
    assert len(list((run / "overlays").glob("*.png"))) == 2


def test_scripts_have_help():
    for name in ("train_smmcl.py", "eval_smmcl.py"):
        out = subprocess.run(
            [sys.executable, str(REPO / "scripts" / name), "--help"], capture_output=True, text=True, cwd=REPO
        )
        assert out.returncode == 0 and "--config" in out.stdout


def test_predict_script_writes_overlay(tmp_path, monkeypatch):
    synthetic = pytest.importorskip("common.synthetic")
    root = synthetic.write_rgbx_scenes(
        tmp_path / "synthetic_rgbx", n_train=2, n_test=1, size=(60, 80), seed=1
    )
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    import torch

    from common.config import load_config
    from smmcl.experiment import ExperimentConfig, build_model_from

    cfg = load_config(REPO / "conf/smmcl/tiny.yaml", ExperimentConfig)
    ckpt = tmp_path / "m.pth"
    torch.save({"model": build_model_from(cfg).state_dict()}, ckpt)
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import predict_smmcl
    finally:
        sys.path.pop(0)
    out = tmp_path / "pred"
    rgb, aux = root / "RGB" / "00002.png", root / "Depth" / "00002.png"
    predict_smmcl.main(
        [
            "-c",
            str(REPO / "conf/smmcl/tiny.yaml"),
            "--checkpoint",
            str(ckpt),
            "--rgb",
            str(rgb),
            "--aux",
            str(aux),
            "-o",
            str(out),
        ]
    )
    img = out / "00002_overlay.png"
    assert img.is_file()
