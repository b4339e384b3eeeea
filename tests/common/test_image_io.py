"""read_image conversion rules on hand-made 8/16-bit grey/GA/RGB/RGBA files, errors, natural order."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from common.image_io import ImageReadError, list_images, natural_sort_key, read_image, write_image


def _rgba8(tmp_path: Path) -> Path:
    # one pixel row: opaque red, half-transparent green, fully transparent blue
    bgra = np.array([[[0, 0, 255, 255], [0, 255, 0, 128], [255, 0, 0, 0]]], dtype=np.uint8)
    p = tmp_path / "rgba.png"
    cv2.imwrite(str(p), bgra)
    return p


def test_rgb_channel_order_and_bit_depths(tmp_path) -> None:
    rgb = np.array([[[10, 20, 30], [255, 0, 128]]], dtype=np.uint8)
    write_image(tmp_path / "a.png", rgb)
    assert np.array_equal(read_image(tmp_path / "a.png", dtype="uint8"), rgb)
    assert np.allclose(read_image(tmp_path / "a.png"), rgb / 255.0)
    assert read_image(tmp_path / "a.png", dtype="uint16")[0, 1, 0] == 65535
    rgb16 = np.array([[[0, 257, 65535]]], dtype=np.uint16)
    write_image(tmp_path / "b.png", rgb16)
    f = read_image(tmp_path / "b.png")
    assert f.dtype == np.float32 and np.allclose(f, [[[0, 257 / 65535, 1]]])
    assert read_image(tmp_path / "b.png", dtype="uint8").tolist() == [[[0, 1, 255]]]


def test_grey_and_alpha_rules(tmp_path) -> None:
    g = np.array([[0, 100, 255]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), g)
    assert read_image(tmp_path / "g.png").shape == (1, 3, 3)
    assert read_image(tmp_path / "g.png", mode="gray", dtype="uint8")[..., 0].tolist() == [[0, 100, 255]]
    assert read_image(tmp_path / "g.png", mode="rgba")[0, 1].tolist() == pytest.approx(
        [100 / 255] * 3 + [1.0]
    )

    p = _rgba8(tmp_path)
    a = 128 / 255
    white = read_image(p)
    assert np.allclose(white[0, 0], [1, 0, 0])
    assert np.allclose(white[0, 1], [1 - a, 1, 1 - a], atol=1e-6)  # green over white
    assert np.allclose(white[0, 2], [1, 1, 1])
    black = read_image(p, alpha="black")
    assert np.allclose(black[0, 1], [0, a, 0], atol=1e-6) and np.allclose(black[0, 2], 0)
    assert np.allclose(read_image(p, alpha="drop")[0, 2], [0, 0, 1])
    assert read_image(p, mode="unchanged").shape == (1, 3, 4)
    assert np.allclose(read_image(p, mode="gray", alpha="black")[0, 0, 0], 0.299)


def test_errors_name_the_file(tmp_path, monkeypatch) -> None:
    with pytest.raises(ImageReadError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(bad)
    flt = tmp_path / "f.tiff"
    cv2.imwrite(str(flt), np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ImageReadError, match="f.tiff: unsupported sample type"):
        read_image(flt)
    # OpenCV cannot write a 5-channel file, so have the decoder return one (multi-band TIFF case)
    monkeypatch.setattr(cv2, "imread", lambda *a: np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ImageReadError, match="f.tiff: unsupported channel count 5"):
        read_image(flt)
    with pytest.raises(ValueError, match="mode"):
        read_image(bad, mode="cmyk")


def test_natural_order(tmp_path) -> None:
    names = ["img10.png", "img2.png", "IMG1.png", "img2.jpg", "notes.txt"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    assert sorted(["a10", "a2", "a1b", "a1"], key=natural_sort_key) == ["a1", "a1b", "a2", "a10"]
    assert [p.name for p in list_images(tmp_path)] == ["IMG1.png", "img2.jpg", "img2.png", "img10.png"]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")
