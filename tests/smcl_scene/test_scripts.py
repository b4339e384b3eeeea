"""The scene scripts end to end: test_smcl_scene.py from a checkpoint alone (report + CSV), point-GCL
pretraining through the engine, and both honouring -d (a GPU request without CUDA fails once, cleanly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "DATA_ROOT": "/nonexistent"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from common.config import load_config
    from common.synthetic import write_nerf_synthetic
    from smcl.scene.experiment import ExperimentConfig, train

    tmp = tmp_path_factory.mktemp("scripts")
    root = write_nerf_synthetic(tmp / "scene", n_train=3, n_val=1, n_test=2, size=16)
    cfg = load_config(
        ROOT / "conf/smcl/scene_tiny.yaml",
        ExperimentConfig,
        [f"data.root={root}", f"train.out_dir={tmp / 'run'}", "data.factor=1", "data.patch=[16,16]",
         "train.max_steps=2", "train.tensorboard=false", "eval_lpips=[]"],
    )  # fmt: skip
    torch.set_num_threads(1)
    train(cfg)
    return tmp / "run/checkpoints/step-00000002.pth"


def test_test_script_from_checkpoint_alone_and_devices(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    ok = _run("scripts/test_smcl_scene.py", "--checkpoint", str(tiny_checkpoint), "-d", "cpu", "-o", str(out))
    assert ok.returncode == 0, ok.stderr[-2000:]
    report = json.loads((out / "test/eval.json").read_text())
    assert report["schema"] == "tri-vision.eval/1" and report["model"]["checkpoint"] == str(tiny_checkpoint)
    assert report["model"]["checkpoint_sha256"] and report["environment"]["device"] == "cpu"
    assert np.mean([r["psnr"] for r in report["items"]]) == pytest.approx(report["aggregate"]["psnr"])
    assert (out / "test/eval.csv").read_text().splitlines()[0].startswith("id,")
    gpu = _run("scripts/test_smcl_scene.py", "--checkpoint", str(tiny_checkpoint), "-d", "0", "-o", str(out))
    assert gpu.returncode == 2 and "CUDA is not available" in gpu.stderr and "Traceback" not in gpu.stderr


def test_pretrain_script_through_the_engine_and_devices(tmp_path):
    from common.weights import load_weights
    from smcl.scene.models import BUILDERS, WEIGHTS

    pts = np.random.default_rng(0).random((300, 3)).astype(np.float32)
    np.save(tmp_path / "pts.npy", pts)
    args = [
        "scripts/pretrain_smcl_points.py",
        "-c",
        "conf/smcl/point_gcl_tiny.yaml",
        "--set",
        f"points={tmp_path / 'pts.npy'}",
    ]
    gpu = _run(*args, "-d", "0", "-o", str(tmp_path / "gpu"))
    assert gpu.returncode == 2 and "CUDA is not available" in gpu.stderr and "Traceback" not in gpu.stderr
    ok = _run(*args, "-d", "cpu", "-o", str(tmp_path / "run"))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").glob("*.pth")) == [
        "step-00000008.pth",
        "step-00000016.pth",
    ]
    model = BUILDERS["smcl_point_gcl"]()
    load_weights(model, WEIGHTS["smcl_point_gcl"]["official"], tmp_path / "run/point_gcl.pth")
    again = _run(
        *args, "-d", "cpu", "-o", str(tmp_path / "run"), "--set", "train.max_steps=24", "--resume", "auto"
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stderr and "at step 16" in again.stderr
