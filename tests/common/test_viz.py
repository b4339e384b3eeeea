"""Visualisation helpers: exact pixel layout, label colours, blending, and files that decode."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from common.viz import bar_chart, colorize_labels, contact_sheet, default_palette, overlay, save_gif


def test_contact_sheet_layout() -> None:
    tiles = [np.full((2, 3, 3), v, np.uint8) for v in (10, 20, 30)]
    sheet = contact_sheet(tiles, ncols=2, pad=1, pad_value=0)
    assert sheet.shape == (5, 7, 3)
    assert sheet[0, 0, 0] == 10 and sheet[0, 4, 0] == 20 and sheet[3, 0, 0] == 30
    assert sheet[2, 0, 0] == 0 and sheet[3, 4, 0] == 0  # padding row and empty cell
    assert contact_sheet([np.ones((2, 2))], ncols=3).max() == 255  # float grey -> uint8 RGB
    with pytest.raises(ValueError, match="image 1"):
        contact_sheet([np.zeros((2, 2, 3)), np.zeros((3, 2, 3))], ncols=2)


def test_colorize_and_overlay() -> None:
    pal = np.array([[0, 0, 0], [200, 0, 0], [0, 100, 0]], np.uint8)
    lab = np.array([[0, 1], [2, 255]])
    col = colorize_labels(lab, pal)
    assert col.tolist() == [[[0, 0, 0], [200, 0, 0]], [[0, 100, 0], [255, 255, 255]]]
    img = np.full((2, 2, 3), 100, np.uint8)
    ov = overlay(img, lab, pal, alpha=0.5)
    assert ov[0, 1].tolist() == [150, 50, 50] and ov[1, 1].tolist() == [100, 100, 100]
    assert len({tuple(c) for c in default_palette(20)}) == 20
    with pytest.raises(ValueError, match="palette has 3"):
        colorize_labels(np.array([[5]]), pal)


def test_gif_and_bar_chart_files(tmp_path) -> None:
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)]
    p = save_gif(frames, tmp_path / "a.gif", fps=5)
    with Image.open(p) as im:
        assert im.n_frames == 3 and im.info["duration"] == 200
        im.seek(1)
        assert np.asarray(im.convert("RGB"))[0, 0].tolist() == [128, 128, 128]
    out = bar_chart(["a", "b"], [0.5, 0.7], tmp_path / "c.png", title="t", errors=[0.1, 0.1])
    with Image.open(out) as im:
        assert im.size[0] > 100
    with pytest.raises(ValueError, match="equal length"):
        bar_chart(["a"], [1, 2], tmp_path / "d.png")
