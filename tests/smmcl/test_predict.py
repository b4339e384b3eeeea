"""smmcl.predict on arrays (the evaluation's preprocessing, the MFNet 4-channel layout) and predict_smmcl.py:
folders in, index masks / overlays with a legend / probabilities out."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from common.errors import DataError
from common.synthetic import write_rgbx_scenes
from common.viz import default_palette, legend, overlay
from smmcl import predict
from smmcl.data import RGBXDataset, RGBXDatasetConfig
from smmcl.experiment import EvalConfig, ExperimentConfig
from smmcl.experiment import predict as predict_probs
from smmcl.inference import class_palette, pair_inputs, predict_files
from smmcl.models import SegNeXtRGBXConfig

REPO = Path(__file__).resolve().parents[2]
K = 6


class ConvStub(nn.Module):
    """A seeded 1x1 convolution over (rgb, aux): every input channel reaches the logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(6, K, 1)
        self.decode_head = SimpleNamespace(hamburger=SimpleNamespace(ham=SimpleNamespace(generator=None)))

    def forward(self, rgb: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([rgb, aux], 1)) * 4


def _cfg(root: Path, **data) -> ExperimentConfig:
    return ExperimentConfig(
        model=SegNeXtRGBXConfig(num_classes=K),
        data=RGBXDatasetConfig(root=str(root), num_classes=K, label_offset=-1, **data),
        eval=EvalConfig(exclude=(), crop=(32, 48), scales=(1.0, 0.75), flip=True),
        class_names=tuple("abcdef"),
    )


def _native(path: Path) -> np.ndarray:
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return a[..., [2, 1, 0, 3][: a.shape[2]]] if a.ndim == 3 else a


@pytest.mark.parametrize("legacy", [False, True], ids=["default", "legacy_bgr_8bit"])
def test_predict_on_arrays_equals_the_evaluation_path(tmp_path, legacy):
    """uint8 RGB + uint16 depth arrays give exactly the dataset's test-item probabilities (multi-scale+flip)."""
    root = write_rgbx_scenes(tmp_path / "s", n_train=1, n_test=1, size=(30, 40), seed=0)
    cfg = _cfg(root, legacy_bgr=legacy, legacy_8bit=legacy)
    model = ConvStub()
    item = RGBXDataset(cfg.data, split="test", train=False)[0]
    ref = predict_probs(model, item["rgb"][None], item["aux"][None], cfg.eval)[0] / 4  # 2 scales x 2 flips
    rgb, depth = _native(root / "RGB" / "00001.png"), _native(root / "Depth" / "00001.png")
    assert rgb.dtype == np.uint8 and depth.dtype == np.uint16 and depth.ndim == 2
    labels, probs = predict(model, rgb, depth, cfg, return_probs=True)
    assert labels.shape == depth.shape and probs.shape == (K, *depth.shape) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, ref.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(labels, ref.argmax(0).numpy())
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # depth given as HxWx3 (replicated) and as float [0, 1] is the same input
    np.testing.assert_array_equal(
        predict(model, np.repeat(depth[..., None], 3, 2), depth, cfg)[None], labels[None]
    )
    np.testing.assert_allclose(
        predict(model, rgb, depth / 65535.0, cfg, return_probs=True)[1], probs, atol=1e-6
    )


def test_mfnet_release_layout_needs_no_aux(tmp_path):
    """RGB + thermal in channel 4 of one array/file: aux None reads channel 4 (as the dataset with aux_dir "")."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    cfg = _cfg(tmp_path)
    model = ConvStub()
    _, probs = predict(model, rgba, None, cfg, return_probs=True)
    _, split = predict(model, rgba[..., :3], rgba[..., 3], cfg, return_probs=True)
    np.testing.assert_array_equal(probs, split)
    with pytest.raises(ValueError, match="channel 4"):
        predict(model, rgba[..., :3], None, cfg)
    with pytest.raises(ValueError, match="HxW"):
        predict(model, rgba[..., :3], rgba[..., :3], cfg)  # a colour image as depth


def test_palette_class0_black_only_when_void():
    llrgbd = ExperimentConfig(model=SegNeXtRGBXConfig(num_classes=14), eval=EvalConfig(exclude=(0,)))
    mfnet = ExperimentConfig(model=SegNeXtRGBXConfig(num_classes=9), eval=EvalConfig(exclude=()))
    assert class_palette(llrgbd)[0].tolist() == [0, 0, 0]
    assert (class_palette(mfnet).sum(1) > 0).all() and len({tuple(c) for c in class_palette(mfnet)}) == 9


def _script():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import predict_smmcl
    finally:
        sys.path.pop(0)
    return predict_smmcl


def test_predict_script_folders_in_folders_out(tmp_path, monkeypatch):
    """--rgb/--aux folders; pred/ index masks equal smmcl.predict; vis/ is RGB | overlay | legend (no blank
    ground-truth panel); --save-probs writes (K,H,W) probabilities; same stems in two folders stay apart."""
    from common.config import load_config
    from smmcl.experiment import build_model_from

    root = write_rgbx_scenes(tmp_path / "synthetic_rgbx", n_train=1, n_test=1, size=(60, 80), seed=1)
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    yaml = tmp_path / "tiny.yaml"
    yaml.write_text((REPO / "conf/smmcl/tiny.yaml").read_text() + "class_names: [a, b, c, d, e, f]\n")
    cfg = load_config(yaml, ExperimentConfig)
    model = build_model_from(cfg)
    ckpt = tmp_path / "m.pth"
    torch.save({"model": model.state_dict()}, ckpt)  # an authors'-style file: no config
    out = tmp_path / "pred"
    args = ["-c", str(yaml), "--checkpoint", str(ckpt), "-d", "cpu", "-o", str(out), "--save-probs"]
    _script().main([*args, "--rgb", str(root / "RGB"), "--aux", str(root / "Depth")])
    names = ["00000", "00001"]
    assert sorted(p.name for p in (out / "pred").iterdir()) == [f"{n}.png" for n in names]
    model.eval()
    palette = default_palette(6, background=False)  # tiny: class 0 is a real class
    for n in names:
        rgb, depth = _native(root / "RGB" / f"{n}.png"), _native(root / "Depth" / f"{n}.png")
        labels = predict(model, rgb, depth, cfg)
        mask = cv2.imread(str(out / "pred" / f"{n}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, labels)
        probs = np.load(out / "probs" / f"{n}.npy")
        assert probs.shape == (6, 60, 80)
        np.testing.assert_array_equal(probs.argmax(0), labels)
        vis = _native(out / "vis" / f"{n}.png")
        key = legend(list("abcdef"), palette, 60, ids=np.unique(labels))
        np.testing.assert_array_equal(vis, np.concatenate([rgb, overlay(rgb, labels, palette), key], 1))
    night = tmp_path / "night"
    night.mkdir()
    (night / "00000.png").write_bytes((root / "RGB" / "00000.png").read_bytes())
    pairs = pair_inputs([root / "RGB" / "00000.png", night], [root / "Depth" / "00000.png"] * 2)
    assert [name for *_, name in pairs] == ["00000_0", "00000_1"]


def test_predict_files_reads_the_mfnet_release_and_names_bad_inputs(tmp_path, shared_data):
    """The two MFNet release PNGs (RGB + thermal in channel 4) predict without --aux."""
    cfg = replace(_cfg(tmp_path), class_names=())
    model = ConvStub()
    written = predict_files(model, cfg, pair_inputs([shared_data / "mfnet"], None), tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "pred/01234N.png",
        "pred/01477D.png",
        "vis/01234N.png",
        "vis/01477D.png",
    ]
    three = tmp_path / "rgb.png"
    cv2.imwrite(str(three), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=f"{three}.*channel 4"):
        predict_files(model, cfg, pair_inputs([three], None), tmp_path / "out")
    with pytest.raises(DataError, match="no aux image"):
        pair_inputs([shared_data / "mfnet"], [tmp_path])


def test_predict_moves_inputs_to_the_model_device(tmp_path):
    """-d is honoured: the inputs follow the model's parameters (a meta parameter stands in for a GPU)."""
    seen = []

    class OnMeta(ConvStub):
        def __init__(self):
            super().__init__()
            self.anchor = nn.Parameter(torch.empty(1, device="meta"))

        def forward(self, rgb, aux):
            seen.append((rgb.device.type, aux.device.type))
            return torch.zeros(1, K, *rgb.shape[2:])

    rgb = np.zeros((8, 8, 4), np.uint8)
    assert predict(OnMeta(), rgb, None, replace(_cfg(tmp_path), eval=EvalConfig(seed=None))).shape == (8, 8)
    assert seen == [("meta", "meta")]
