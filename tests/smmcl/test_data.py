"""RGBXDataset on the genuine MFNet/NYU samples (via symlinked temp CMX folders) and synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.errors import DataError
from smmcl.data import RGBXDataset, RGBXDatasetConfig, parse_list
from smmcl.data.rgbx import IMAGENET_MEAN, IMAGENET_STD


def _denorm(x: torch.Tensor) -> np.ndarray:
    return x.numpy().transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)


def _cmx(
    root: Path, rgb_src: Path, aux_src: Path | None, shape: tuple[int, int], label_value: int = 3
) -> Path:
    (root / "RGB").mkdir(parents=True)
    (root / "Label").mkdir()
    (root / "RGB" / "a.png").symlink_to(rgb_src)
    if aux_src is not None:
        (root / "Depth").mkdir()
        (root / "Depth" / "a.png").symlink_to(aux_src)
    cv2.imwrite(str(root / "Label" / "a.png"), np.full(shape, label_value, np.uint8))
    (root / "test.txt").write_text("RGB/a.jpg\tLabel/a.png\n")  # SA-Gate style line
    return root


def test_mfnet_four_channel_split(shared_data, tmp_path):
    src = shared_data / "mfnet" / "01234N.png"
    root = _cmx(tmp_path / "mf", src, None, (480, 640))
    ds = RGBXDataset(RGBXDatasetConfig(root=str(root), aux_dir="", num_classes=9), split="test")
    item = ds[0]
    bgra = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    assert item["rgb"].shape == (3, 480, 640) and item["aux"].shape == (3, 480, 640)
    np.testing.assert_allclose(_denorm(item["rgb"]), bgra[..., 2::-1] / 255.0, atol=1e-5)
    thermal = _denorm(item["aux"])
    for ch in range(3):
        np.testing.assert_allclose(thermal[..., ch], bgra[..., 3] / 255.0, atol=1e-5)
    assert abs(thermal.mean() - bgra[..., :3].mean() / 255) > 0.05  # thermal really is the 4th channel
    legacy = RGBXDataset(RGBXDatasetConfig(root=str(root), aux_dir="", legacy_bgr=True), split="test")[0]
    np.testing.assert_allclose(_denorm(legacy["rgb"]), bgra[..., :3] / 255.0, atol=1e-5)


def test_nyu_16bit_depth_full_precision_and_legacy(shared_data, tmp_path):
    depth = shared_data / "nyu_depth_v2" / "frame0001" / "depth.png"
    raw = cv2.imread(str(depth), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    rgb = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb), np.zeros((*raw.shape, 3), np.uint8))
    root = _cmx(tmp_path / "nyu", rgb, depth, raw.shape, label_value=0)
    cfg = RGBXDatasetConfig(root=str(root), label_offset=-1)
    full = _denorm(RGBXDataset(cfg, split="test")[0]["aux"])[..., 0]
    np.testing.assert_allclose(full, raw / 65535.0, atol=1e-5)
    item = RGBXDataset(RGBXDatasetConfig(root=str(root), legacy_8bit=True), split="test")[0]
    np.testing.assert_allclose(_denorm(item["aux"])[..., 1], (raw >> 8) / 255.0, atol=1e-5)
    assert np.unique(np.round(full * 65535)).size > 4 * np.unique(raw >> 8).size  # precision kept
    assert (RGBXDataset(cfg, split="test")[0]["label"] == 255).all()  # 0 - 1 wraps to ignore


def test_synthetic_train_augmentation(tmp_path):
    synthetic = pytest.importorskip("common.synthetic")
    root = synthetic.write_rgbx_scenes(tmp_path / "s", n_train=2, n_test=1, size=(60, 80), seed=0)
    cfg = RGBXDatasetConfig(root=str(root), crop=(48, 64), num_classes=6, label_offset=-1)
    ds = RGBXDataset(cfg, split="train")
    torch.manual_seed(0)
    items = [ds[i % 2] for i in range(8)]
    for it in items:
        assert it["rgb"].shape == (3, 48, 64) and it["label"].shape == (48, 64)
        assert it["rgb"].dtype == torch.float32 and it["label"].dtype == torch.long
    # small scales give padding: 255 labels and mean-coloured (0 after normalisation) pixels
    padded = [it for it in items if (it["label"] == 255).any()]
    assert padded
    pad_mask = padded[0]["label"] == 255
    assert torch.allclose(padded[0]["rgb"][:, pad_mask], torch.zeros(()), atol=1e-6)
    test = RGBXDataset(cfg, split="test")[0]
    assert test["rgb"].shape == (3, 60, 80)


def test_errors_name_the_file(tmp_path):
    (tmp_path / "train.txt").write_text("missing\n")
    with pytest.raises(FileNotFoundError, match="train.txt: 3 listed files are missing"):
        RGBXDataset(RGBXDatasetConfig(root=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="test.txt"):
        parse_list(tmp_path / "test.txt")


def test_official_epoch_padding(tmp_path):
    """LLRGBD: 1418 items, batch 16 -> 16 * (1418 // 16 + 1) = 1424; the extras are random files."""
    synthetic = pytest.importorskip("common.synthetic")
    root = synthetic.write_rgbx_scenes(tmp_path / "s", n_train=5, n_test=1, size=(60, 80), seed=0)
    base = RGBXDatasetConfig(root=str(root), crop=(48, 64), num_classes=6, label_offset=-1)
    assert len(RGBXDataset(base, split="train")) == 5
    for batch, length in ((2, 6), (4, 8), (16, 16)):
        cfg = RGBXDatasetConfig(
            root=str(root), crop=(48, 64), num_classes=6, label_offset=-1, epoch_padding_batch=batch
        )
        assert len(RGBXDataset(cfg, split="train")) == length
        assert len(RGBXDataset(cfg, split="test")) == 1  # evaluation is never padded
    ds = RGBXDataset(
        RGBXDatasetConfig(root=str(root), num_classes=6, label_offset=-1, epoch_padding_batch=4),
        split="train",
    )
    assert [ds.name_for(i) for i in range(5)] == ds.names
    torch.manual_seed(0)
    extras = [ds.name_for(i) for i in (5, 6, 7) for _ in range(40)]
    assert set(extras) == set(ds.names)  # uniform over the files
    assert ds[7]["label"].shape == (480, 640)  # default crop
    with pytest.raises(IndexError):
        ds.name_for(8)


def _label_root(tmp_path: Path, label: np.ndarray) -> Path:
    root = tmp_path / "lab"
    for sub in ("RGB", "Depth", "Label"):
        (root / sub).mkdir(parents=True)
    h, w = label.shape
    cv2.imwrite(str(root / "RGB" / "a.png"), np.zeros((h, w, 3), np.uint8))
    cv2.imwrite(str(root / "Depth" / "a.png"), np.full((h, w), 1000, np.uint16))
    cv2.imwrite(str(root / "Label" / "a.png"), label)
    (root / "test.txt").write_text("a\n")
    return root


def test_16bit_label_out_of_range_is_an_error_not_a_wrap(tmp_path):
    """A 16-bit label value 256 used to become class 0 (uint8 cast); now it names the file and the value."""
    label = np.zeros((8, 8), np.uint16)
    label[:4] = 3
    label[0, 0] = 256
    label[1, 1] = 255  # the ignore index is fine
    root = _label_root(tmp_path, label)
    with pytest.raises(
        DataError, match=r"Label/a\.png: label values outside \[0, 14\).*: 256 \(1 px\) \(16-bit file\)"
    ):
        RGBXDataset(RGBXDatasetConfig(root=str(root), num_classes=14), split="test")[0]
    label[0, 0] = 13
    cv2.imwrite(str(root / "Label" / "a.png"), label)
    got = RGBXDataset(RGBXDatasetConfig(root=str(root), num_classes=14), split="test")[0]["label"]
    assert torch.equal(got, torch.from_numpy(label.astype(np.int64)))


def test_8bit_label_outside_classes_names_file_and_values(tmp_path):
    label = np.full((8, 8), 2, np.uint8)
    label[0, :3] = (6, 9, 6)
    root = _label_root(tmp_path, label)
    with pytest.raises(
        DataError, match=r"a\.png: label values outside \[0, 6\).*: 6 \(2 px\), 9 \(1 px\) \(8-bit file\)"
    ):
        RGBXDataset(RGBXDatasetConfig(root=str(root), num_classes=6), split="test")[0]
    # NYU-style offset: stored 0..6 with gt - 1 -> 0 becomes ignore, 6 becomes class 5: valid
    label[0, :3] = (0, 6, 1)
    cv2.imwrite(str(root / "Label" / "a.png"), label)
    got = RGBXDataset(RGBXDatasetConfig(root=str(root), num_classes=6, label_offset=-1), split="test")[0]
    assert got["label"][0, :3].tolist() == [255, 5, 0] and int(got["label"][4, 4]) == 1
    # grey stored as 3 equal channels is read as grey
    cv2.imwrite(str(root / "Label" / "a.png"), np.repeat(label[..., None], 3, axis=2))
    again = RGBXDataset(RGBXDatasetConfig(root=str(root), num_classes=6, label_offset=-1), split="test")[0]
    assert torch.equal(again["label"], got["label"])
    label[0, 0] = 8  # stored 8 -> class 7 after gt - 1: outside [0, 6)
    cv2.imwrite(str(root / "Label" / "a.png"), label)
    with pytest.raises(DataError, match=r"a\.png: .*: 7 \(1 px\).*after label_offset -1"):
        RGBXDataset(RGBXDatasetConfig(root=str(root), num_classes=6, label_offset=-1), split="test")[0]


@pytest.mark.parametrize("legacy", [False, True])
def test_reads_through_common_image_io_are_bit_identical_to_the_opencv_rules(tmp_path, legacy):
    """RGB 8/16-bit, 16-bit depth (full or high byte), 4-channel thermal, HHA: same bits as the cv2 reads."""
    rng = np.random.default_rng(0)
    root = tmp_path / "bits"
    for sub in ("RGB", "Depth", "HHA", "Label", "RGBA"):
        (root / sub).mkdir(parents=True)
    rgb16 = rng.integers(0, 65536, (12, 16, 3), dtype=np.uint16)
    rgb8 = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    depth = rng.integers(0, 65536, (12, 16), dtype=np.uint16)
    bgra = rng.integers(0, 256, (12, 16, 4), dtype=np.uint8)
    cv2.imwrite(str(root / "RGB" / "a.png"), rgb16)
    cv2.imwrite(str(root / "RGB" / "b.png"), rgb8)
    cv2.imwrite(str(root / "Depth" / "a.png"), depth)
    cv2.imwrite(str(root / "Depth" / "b.png"), depth)
    cv2.imwrite(str(root / "HHA" / "a.png"), rgb8)
    cv2.imwrite(str(root / "HHA" / "b.png"), rgb8)
    cv2.imwrite(str(root / "RGBA" / "a.png"), bgra)
    cv2.imwrite(str(root / "RGBA" / "b.png"), bgra)
    for n in "ab":
        cv2.imwrite(str(root / "Label" / f"{n}.png"), np.full((12, 16), 2, np.uint8))
    (root / "test.txt").write_text("a\nb\n")

    def order(bgr):
        return bgr if legacy else bgr[..., ::-1]

    depth_ref = ((depth >> 8).astype(np.float32) / 255.0) if legacy else depth.astype(np.float32) / 65535.0
    base = {"root": str(root), "legacy_bgr": legacy, "legacy_8bit": legacy, "num_classes": 3}
    ds = RGBXDataset(RGBXDatasetConfig(**base), split="test")
    for name, img, scale in (("a", rgb16, 65535.0), ("b", rgb8, 255.0)):
        rgb, aux, label = ds.read(name)
        assert np.array_equal(rgb, order(img).astype(np.float32) / scale)
        assert np.array_equal(aux, np.repeat(depth_ref[..., None], 3, axis=2))
        assert label.dtype == np.uint8 and (label == 2).all()
    hha = RGBXDataset(RGBXDatasetConfig(**base, aux_dir="HHA", aux_channels=3), split="test")
    assert np.array_equal(hha.read("b")[1], order(rgb8).astype(np.float32) / 255.0)
    packed = RGBXDataset(RGBXDatasetConfig(**base, rgb_dir="RGBA", aux_dir=""), split="test")
    rgb, aux, _ = packed.read("a")
    assert np.array_equal(rgb, order(bgra[..., :3]).astype(np.float32) / 255.0)
    assert np.array_equal(aux[..., 0], bgra[..., 3].astype(np.float32) / 255.0)


def test_augment_resize_is_opencv_bilinear_and_nearest():
    from smmcl.data.rgbx import augment

    rng = np.random.default_rng(1)
    rgb = rng.random((20, 30, 3), dtype=np.float32)
    aux = rng.random((20, 30, 3), dtype=np.float32)
    label = rng.integers(0, 5, (20, 30)).astype(np.uint8)
    cfg = RGBXDatasetConfig(crop=(15, 22), scales=(0.75,), flip=False)
    torch.manual_seed(0)
    r, a, lab = augment(rgb, aux, label, cfg)
    assert np.array_equal(r, cv2.resize(rgb, (22, 15), interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(a, cv2.resize(aux, (22, 15), interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(lab, cv2.resize(label, (22, 15), interpolation=cv2.INTER_NEAREST))
