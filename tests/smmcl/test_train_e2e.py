"""End to end on conf/smmcl/tiny.yaml with synthetic scenes: train through the engine, evaluate from the
checkpoint alone (YAML deleted), seeded reproducibility, bit-identical resume, and predict_smmcl.py."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _scripts():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import eval_smmcl
        import predict_smmcl
        import train_smmcl
    finally:
        sys.path.pop(0)
    return train_smmcl, eval_smmcl, predict_smmcl


def _model_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_train_eval_from_checkpoint_seed_and_resume(tmp_path, monkeypatch):
    synthetic = pytest.importorskip("common.synthetic")
    synthetic.write_rgbx_scenes(tmp_path / "synthetic_rgbx", n_train=4, n_test=2, size=(60, 80), seed=0)
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    train, evaluate, _ = _scripts()
    yaml = tmp_path / "tiny.yaml"
    shutil.copy(REPO / "conf/smmcl/tiny.yaml", yaml)
    run = tmp_path / "run"
    train.main(["-c", str(yaml), "-d", "cpu", "-o", str(run)])
    ckpt = run / "checkpoints" / "epoch-2.pth"
    assert ckpt.is_file()

    # evaluation with the YAML: the tri-vision.eval/1 report, its CSV, the confusion plot, the overlays
    evaluate.main(["-c", str(yaml), "-d", "cpu", "-o", str(run), "-e", "2"])
    report = json.loads((run / "eval.json").read_text())
    assert report["schema"] == "tri-vision.eval/1" and report["task"] == "smmcl.segmentation"
    assert report["model"]["checkpoint"] == str(ckpt) and len(report["model"]["checkpoint_sha256"]) == 64
    assert 0.0 <= report["aggregate"]["seg.pixel_acc"] <= 1.0 and "seg.miou" in report["aggregate"]
    assert [r["id"] for r in report["items"]] == ["00004", "00005"]
    assert all({"miou", "pixel_acc"} <= set(r) for r in report["items"])
    extra = report["extra"]
    assert len(extra["per_class_iou"]) == 6 and len(extra["seg"]["confusion"]) == 6
    confusion = torch.tensor(extra["seg"]["confusion"])
    assert 0 < confusion.sum() <= 2 * 60 * 80  # labelled pixels of the two test images
    # the items reproduce the aggregate: pixel accuracy weighted by each image's labelled pixels
    assert report["aggregate"]["seg.pixel_acc"] == pytest.approx(
        float(confusion.diag().sum() / confusion.sum())
    )
    rows = list(csv.DictReader((run / "eval.csv").open()))
    assert [r["id"] for r in rows] == ["00004", "00005"]
    assert (run / "eval_confusion.png").is_file()
    assert len(list((run / "overlays").glob("*.png"))) == 2

    # the checkpoint alone rebuilds model and evaluation settings: YAML deleted, same metrics
    yaml.unlink()
    evaluate.main(["--checkpoint", str(ckpt), "-d", "cpu", "--report", str(tmp_path / "again.json")])
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["aggregate"] == report["aggregate"] and again["items"] == report["items"]

    # seeding happens before the model is built: a second run with the same seed is identical
    shutil.copy(REPO / "conf/smmcl/tiny.yaml", yaml)
    train.main(["-c", str(yaml), "-d", "cpu", "-o", str(tmp_path / "run2")])
    assert _same(_model_state(tmp_path / "run2" / "checkpoints" / "epoch-2.pth"), _model_state(ckpt))

    # resume: 1 step, then --resume auto to step 2, ends bit-identical to the uninterrupted run
    part = tmp_path / "part"
    train.main(["-c", str(yaml), "-d", "cpu", "-o", str(part), "--set", "train.max_steps=1"])
    assert (part / "checkpoints" / "epoch-1.pth").is_file()
    train.main(["-c", str(yaml), "-d", "cpu", "-o", str(part), "--resume", "auto"])
    assert _same(_model_state(part / "checkpoints" / "epoch-2.pth"), _model_state(ckpt))


def test_scripts_have_help(capsys):
    out = subprocess.run(  # one real `python scripts/...` start; the others in-process (cheaper)
        [sys.executable, str(REPO / "scripts" / "train_smmcl.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0 and "--config" in out.stdout and "--checkpoint" in out.stdout
    for script in _scripts()[1:]:
        with pytest.raises(SystemExit) as done:
            script.main(["--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "--config" in text and "--checkpoint" in text


def test_predict_names_user_files_one_overlay_per_input_and_refuses_outputs_in_inputs(tmp_path, monkeypatch):
    synthetic = pytest.importorskip("common.synthetic")
    root = synthetic.write_rgbx_scenes(
        tmp_path / "synthetic_rgbx", n_train=2, n_test=1, size=(60, 80), seed=1
    )
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    from common.config import load_config
    from common.errors import TriVisionError
    from common.io import OutputInsideInputError
    from smmcl.experiment import ExperimentConfig, build_model_from

    cfg = load_config(REPO / "conf/smmcl/tiny.yaml", ExperimentConfig)
    ckpt = tmp_path / "m.pth"
    torch.save({"model": build_model_from(cfg).state_dict()}, ckpt)  # an authors'-style file: no config
    _, _, predict = _scripts()
    rgb, aux = root / "RGB" / "00002.png", root / "Depth" / "00002.png"
    night = tmp_path / "night"
    night.mkdir()
    shutil.copy(rgb, night / "00002.png")
    out = tmp_path / "pred"
    base = ["-c", str(REPO / "conf/smmcl/tiny.yaml"), "--checkpoint", str(ckpt), "-d", "cpu"]
    predict.main(
        [*base, "--rgb", str(rgb), str(night / "00002.png"), "--aux", str(aux), str(aux), "-o", str(out)]
    )
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        f"{kind}/00002_{i}.png" for kind in ("pred", "vis") for i in (0, 1)
    ]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(TriVisionError, match=str(bad)):  # the user's file, not a temporary copy
        predict.main([*base, "--rgb", str(bad), "--aux", str(aux), "-o", str(out)])
    with pytest.raises(OutputInsideInputError):
        predict.main([*base, "--rgb", str(rgb), "--aux", str(aux), "-o", str(rgb)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_predict_on_a_gpu_without_cuda_is_one_clear_error(tmp_path):
    from common.errors import TriVisionError

    _, _, predict = _scripts()
    args = ["--checkpoint", str(tmp_path / "m.pth"), "--rgb", "a.png", "--aux", "b.png", "-d", "0"]
    with pytest.raises(TriVisionError, match="CUDA is not available"):
        predict.main(args)
