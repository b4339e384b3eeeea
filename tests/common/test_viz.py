"""Visualisation helpers: exact pixel layout, label colours, blending, and files that decode."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from common.viz import bar_chart, colorize_labels, contact_sheet, default_palette, legend, overlay, save_gif


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


def test_palette_without_background_has_no_black_class() -> None:
    """background=False (class 0 a real class): the VOC colours of ids 1..n, none black, all distinct."""
    voc = default_palette(10)
    assert voc[0].tolist() == [0, 0, 0] and voc[1].tolist() == [128, 0, 0]  # VOC: background, aeroplane
    real = default_palette(9, background=False)
    assert real.tolist() == voc[1:].tolist() and (real.sum(1) > 0).all()


def test_legend_swatches_in_columns() -> None:
    """One swatch per listed id, in the id's colour, top to bottom, a new column when the height is full."""
    pal = default_palette(5, background=False)
    panel = legend(["a", "b", "c", "d", "e"], pal, 40, ids=[1, 3, 4], row=14)
    assert panel.dtype == np.uint8 and panel.shape[0] == 40 and panel.shape[2] == 3
    per_col = (40 - 4) // 14  # 2 rows, so id 4 starts a second column
    col_w = (panel.shape[1] - 4) // 2
    assert panel[5, 5].tolist() == pal[1].tolist() and panel[5 + 14, 5].tolist() == pal[3].tolist()
    assert per_col == 2 and panel[5, 5 + col_w].tolist() == pal[4].tolist()
    assert panel[5 + 14, 5 + col_w].tolist() == [255, 255, 255]  # no fourth entry
    assert legend(["a"], pal, 40).shape[1] < legend(["a long class name"], pal, 40).shape[1]
    with pytest.raises(ValueError, match="legend ids"):
        legend(["a", "b"], pal, 40, ids=[2])


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


def test_to_uint8_roundings_match_former_copies() -> None:
    import torch

    from common.viz import to_uint8

    rng = np.random.default_rng(0)
    x = rng.random((4, 5, 3)).astype(np.float32)
    x[0, 0] = [0.5 / 255, 1.5 / 255, 2.5 / 255]  # ties
    x[0, 1] = [-0.2, 1.3, 1.0]
    assert np.array_equal(to_uint8(x), np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))
    assert np.array_equal(to_uint8(x, rounding="half_up"), (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8))
    t = torch.from_numpy(x).permute(2, 0, 1)
    official = (t.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)  # pixelNeRF eval.py
    assert np.array_equal(to_uint8(t, rounding="floor", chw=True), official)
    assert to_uint8(np.array([[0.5 / 255]]))[0, 0].tolist() == [0, 0, 0]  # rint: tie to even
    assert to_uint8(np.array([[0.5 / 255]]), rounding="half_up")[0, 0, 0] == 1
    with pytest.raises(ValueError, match="rounding"):
        to_uint8(x, rounding="up")


def test_save_video_round_trip(tmp_path) -> None:
    from common.image_io import count_video_frames, iter_video_frames
    from common.viz import save_video

    frames = [
        np.full((32, 48, 3), c, np.uint8)
        for c in ((250, 10, 10), (10, 250, 10), (10, 10, 250), (128, 128, 128))
    ]
    p = save_video(frames, tmp_path / "v.mp4", fps=4)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["v.mp4"]
    assert count_video_frames(p) == 4
    for got, want in zip(iter_video_frames(p), frames):
        assert got.shape == (32, 48, 3)
        assert np.abs(got.astype(float).mean((0, 1)) - want[0, 0]).max() < 10  # RGB order kept
    with pytest.raises(ValueError, match="frame 1"):
        save_video([frames[0], np.zeros((8, 8, 3), np.uint8)], tmp_path / "w.mp4")
    assert not (tmp_path / "w.mp4").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["v.mp4"]


def test_save_video_is_h264_browsers_play_and_odd_sizes_are_padded(tmp_path) -> None:
    """Issue 20 §2: H.264 in yuv420p (not OpenCV's mp4v); an odd side gets its last row/column repeated."""
    import av

    from common.image_io import iter_video_frames
    from common.viz import save_video

    g = np.random.default_rng(0)
    smooth = np.kron(g.integers(0, 256, (6, 8, 3)), np.ones((12, 12, 1))).astype(np.uint8)[:71, :95]
    p = save_video([smooth, smooth[::-1].copy()], tmp_path / "v.mp4", fps=24)
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert float(s.average_rate) == 24.0
    got = list(iter_video_frames(p))
    assert len(got) == 2 and got[0].shape == (72, 96, 3)
    assert np.abs(got[0][71].astype(float) - got[0][70]).mean() < 4  # the repeated row
    err = np.abs(got[0][:71, :95].astype(float) - smooth).mean()
    assert err < 6.0  # random colour blocks (4:2:0 chroma at their edges); unrelated frames differ by ~85


def test_line_plot_and_confusion_matrix(tmp_path) -> None:
    from common.viz import confusion_matrix_plot, line_plot

    p = line_plot(
        {"blur": ([0, 1, 2], [3.0, 2.0, 1.0]), "noise": ([0, 1], [3.0, 2.5])},
        tmp_path / "l.png",
        "level",
        "JOD",
        "stress",
        hlines={"clean": 3.0},
    )
    with Image.open(p) as im:
        assert im.size == (825, 495)  # 7.5 x 4.5 in at 110 dpi
    with pytest.raises(ValueError, match="'blur'"):
        line_plot({"blur": ([0, 1], [1.0])}, tmp_path / "bad.png")
    cm = np.array([[5, 1, 0], [0, 0, 0], [2, 2, 6]])
    p = confusion_matrix_plot(cm, ["a", "b", "c"], tmp_path / "cm.png", title="cm")
    with Image.open(p) as im:
        rgb = np.asarray(im.convert("RGB"))
        assert rgb.shape[0] > 100 and rgb.std() > 0
    confusion_matrix_plot(cm, ["a", "b", "c"], tmp_path / "cm.pdf", normalize=False)
    assert (tmp_path / "cm.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        confusion_matrix_plot(cm, ["a", "b"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    assert not [x for x in tmp_path.iterdir() if ".tmp-" in x.name]


def test_to_uint8_keeps_rgba_and_writers_take_rgb() -> None:
    from common.viz import to_uint8

    rgba = np.zeros((2, 2, 4), np.float32)
    rgba[..., 3] = 1.0
    assert to_uint8(rgba).shape == (2, 2, 4) and to_uint8(rgba)[0, 0, 3] == 255
    assert contact_sheet([rgba, rgba], ncols=2).shape == (2, 4, 3)
