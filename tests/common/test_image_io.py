"""read_image conversion rules on hand-made 8/16-bit grey/GA/RGB/RGBA files, errors, natural order."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from common.errors import DataError
from common.image_io import (
    ImageReadError,
    count_video_frames,
    image_size,
    iter_video_frames,
    list_images,
    natural_sort_key,
    read_depth,
    read_image,
    read_label,
    read_mask,
    write_image,
)


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


# --- parity with the packages' former PIL/cv2 reads (bit-identical numbers) ---------------------------


def _random_files(tmp_path: Path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    rgba[0, :, 3] = 0
    rgba[1, :, 3] = 255
    files = {}
    for mode in ("RGBA", "RGB", "L", "LA"):
        p = tmp_path / f"{mode}.png"
        Image.fromarray(rgba).convert(mode).save(p)
        files[mode] = p
    p = tmp_path / "P.png"
    Image.fromarray(rgba[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(p)
    files["P"] = p
    pt = tmp_path / "Pt.png"
    Image.open(p).save(pt, transparency=3)
    files["Pt"] = pt
    return files


def test_pil_backend_equals_pil_reads(tmp_path) -> None:
    from PIL import Image

    for name, p in _random_files(tmp_path).items():
        with Image.open(p) as im:
            # the smcl object loader: convert("RGBA") for RGBA/LA/P else "RGB"; first 3 channels / 255
            ref = np.asarray(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB"))
            ref = ref[..., :3].astype(np.float32) / 255.0
            got = read_image(p, mode="rgb", alpha="drop", backend="pil")
            assert got.dtype == np.float32 and np.array_equal(got, ref), name
            # the nvs_sqa frame reader (alpha dropped) as uint8
            ref8 = (
                np.asarray(im.convert("RGBA"))[..., :3]
                if "A" in im.mode or "t" in name
                else np.asarray(im.convert("RGB"))
            )
            assert np.array_equal(
                read_image(p, mode="rgb", dtype="uint8", alpha="drop", backend="pil"), ref8
            ), name
            # the smcl scene loader: resize bicubic in the file's mode, RGBA / 255, composite on white
            for size in (None, (5, 7), (12, 20)):
                img = im if size is None else im.resize((size[1], size[0]), Image.BICUBIC)
                arr = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
                ref_w = arr[..., :3] * arr[..., 3:] + (1.0 - arr[..., 3:])
                got_w = read_image(p, size=size, interpolation="cubic", backend="pil")
                assert np.array_equal(got_w, ref_w), (name, size)


def test_cv2_backend_equals_cv2_reads(tmp_path) -> None:
    rng = np.random.default_rng(1)
    for dt, top in ((np.uint8, 255), (np.uint16, 65535)):
        bgra = rng.integers(0, top + 1, (6, 5, 4), dtype=dt)
        p = tmp_path / f"x{top}.png"
        cv2.imwrite(str(p), bgra)
        raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        # the smmcl RGB-X reader: BGR -> RGB, float32 / 255 or / 65535; 4th channel is the aux
        ref = raw[..., [2, 1, 0, 3]].astype(np.float32) / float(top)
        assert np.array_equal(read_image(p, mode="unchanged"), ref)
        assert np.array_equal(read_image(p, mode="unchanged", dtype=dt.__name__), raw[..., [2, 1, 0, 3]])
    # IMREAD_COLOR of an 8-bit file == mode="rgb", alpha="drop"
    p = tmp_path / "x255.png"
    ref = cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
    assert np.array_equal(read_image(p, alpha="drop"), ref)


def test_size_and_interpolation_cv2(tmp_path) -> None:
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    p = tmp_path / "r.png"
    write_image(p, rgb)
    for interp, flag in (
        ("area", cv2.INTER_AREA),
        ("linear", cv2.INTER_LINEAR),
        ("nearest", cv2.INTER_NEAREST),
    ):
        ref = cv2.resize(rgb.astype(np.float32) / 255.0, (6, 4), interpolation=flag)
        assert np.array_equal(read_image(p, size=(4, 6), interpolation=interp), ref)
    assert read_image(p, size=(8, 12)).shape == (8, 12, 3)
    assert read_image(p, size=(3, 5), dtype="uint8", mode="gray").shape == (3, 5, 1)
    with pytest.raises(ValueError, match="interpolation"):
        read_image(p, size=(3, 5), interpolation="bogus")


def test_16bit_and_palette_with_pil_backend(tmp_path) -> None:
    g16 = np.array([[0, 128, 129, 257, 40000, 65535]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    cv2.imwrite(str(p), g16)
    for backend in ("cv2", "pil"):
        got8 = read_image(p, dtype="uint8", backend=backend)[..., 0]
        assert got8.tolist() == [[0, 0, 1, 1, 156, 255]], backend  # round(v / 257)
        assert np.array_equal(read_image(p, dtype="uint16", mode="gray", backend=backend)[..., 0], g16)
        f = read_image(p, mode="gray", backend=backend)[..., 0]
        assert np.array_equal(f, g16.astype(np.float32) / 65535.0)


def test_write_image_is_atomic(tmp_path, monkeypatch) -> None:
    p = tmp_path / "w.png"
    write_image(p, np.zeros((2, 2, 3), np.uint8))
    before = p.read_bytes()
    with pytest.raises(ValueError):
        write_image(tmp_path / "w.unknown", np.zeros((2, 2, 3), np.uint8))
    assert not (tmp_path / "w.unknown").exists()
    import common.io

    def boom(fh, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(common.io.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_image(p, np.ones((2, 2, 3), np.uint8) * 255)
    assert p.read_bytes() == before and sorted(x.name for x in tmp_path.iterdir()) == ["w.png"]
    monkeypatch.undo()
    write_image(tmp_path / "b.png", np.array([[True, False]]))
    assert read_image(tmp_path / "b.png", dtype="uint8")[..., 0].tolist() == [[255, 0]]


def test_image_size(tmp_path) -> None:
    write_image(tmp_path / "s.png", np.zeros((3, 7, 3), np.uint8))
    assert image_size(tmp_path / "s.png") == (3, 7)
    with pytest.raises(ImageReadError, match="no such file"):
        image_size(tmp_path / "none.png")


# --- labels, depth, masks ------------------------------------------------------------------------------


def test_read_label_bit_depths_and_range(tmp_path) -> None:
    lab8 = np.array([[0, 1, 2, 255]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "l8.png"), lab8)
    got = read_label(tmp_path / "l8.png", num_classes=3)
    assert got.dtype == np.int64 and got.tolist() == [[0, 1, 2, 255]]
    with pytest.raises(DataError, match=r"l8.png: .*values outside \[0, 2\).*2 \(1 px\)"):
        read_label(tmp_path / "l8.png", num_classes=2)
    # 16-bit: 256 and 258 must not wrap into classes 0 and 2
    lab16 = np.array([[0, 256, 1, 258, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "l16.png"), lab16)
    with pytest.raises(DataError, match=r"l16.png: .*256 \(1 px\), 258 \(1 px\), 65535 \(1 px\).*16-bit"):
        read_label(tmp_path / "l16.png", num_classes=3)
    assert read_label(
        tmp_path / "l16.png", num_classes=3, ignore_index=65535, remap={256: 2, 258: 0}
    ).tolist() == [[0, 2, 1, 0, 65535]]
    # 3-channel grey accepted, colour refused; palette PNG gives indices
    cv2.imwrite(str(tmp_path / "g3.png"), np.repeat(lab8[..., None], 3, axis=2))
    assert read_label(tmp_path / "g3.png", num_classes=3).tolist() == [[0, 1, 2, 255]]
    cv2.imwrite(str(tmp_path / "c3.png"), np.array([[[0, 1, 2]]], np.uint8))
    with pytest.raises(DataError, match="c3.png: label must be single-channel"):
        read_label(tmp_path / "c3.png", num_classes=3)
    from PIL import Image

    pal = Image.fromarray(np.array([[0, 1, 2, 1]], np.uint8), mode="P")
    pal.putpalette([200, 0, 0, 0, 200, 0, 0, 0, 200] + [0] * 759)
    pal.save(tmp_path / "p.png")
    assert read_label(tmp_path / "p.png", num_classes=3).tolist() == [[0, 1, 2, 1]]
    # offset remap (MFNet-style: file value v -> (v - 1) mod 256) and nearest resize
    shift = {v: (v - 1) % 256 for v in range(256)}
    assert read_label(tmp_path / "l8.png", num_classes=255, remap=shift).tolist() == [[255, 0, 1, 254]]
    with pytest.raises(DataError, match=r"254 \(1 px\)"):
        read_label(tmp_path / "l8.png", num_classes=3, remap=shift)
    big = read_label(tmp_path / "l8.png", num_classes=3, size=(2, 8))
    assert big.tolist() == [[0, 0, 1, 1, 2, 2, 255, 255]] * 2
    with pytest.raises(DataError, match="missing.png: label file not found"):
        read_label(tmp_path / "missing.png", num_classes=3)


def test_read_depth(tmp_path) -> None:
    d16 = np.array([[0, 1000], [65535, 7]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), d16)
    got = read_depth(tmp_path / "d.png")
    assert got.dtype == np.float32 and got.tolist() == [[0.0, 1000.0], [65535.0, 7.0]]
    cv2.imwrite(str(tmp_path / "d8.png"), np.array([[3, 4]], np.uint8))
    with pytest.raises(DataError, match="d8.png: depth is 8-bit"):
        read_depth(tmp_path / "d8.png")
    assert read_depth(tmp_path / "d8.png", allow_8bit=True).tolist() == [[3.0, 4.0]]
    cv2.imwrite(str(tmp_path / "z.png"), np.zeros((2, 2), np.uint16))
    with pytest.raises(DataError, match="z.png: depth is zero everywhere"):
        read_depth(tmp_path / "z.png")
    assert not read_depth(tmp_path / "z.png", allow_zero=True).any()
    cv2.imwrite(str(tmp_path / "c.png"), np.ones((2, 2, 3), np.uint16))
    with pytest.raises(DataError, match="c.png: depth must be single-channel"):
        read_depth(tmp_path / "c.png")


def test_read_mask(tmp_path) -> None:
    m = np.array([[0, 1, 127, 128, 255]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), m)
    assert read_mask(tmp_path / "m.png").tolist() == [[False, False, False, True, True]]
    assert read_mask(tmp_path / "m.png", threshold=0.0).tolist() == [[False, True, True, True, True]]
    m16 = np.array([[0, 32767, 32768, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "m16.png"), m16)
    assert read_mask(tmp_path / "m16.png").tolist() == [[False, False, True, True]]
    assert read_mask(tmp_path / "m.png", size=(1, 10)).shape == (1, 10)
    # the smcl object loader's mask read: np.asarray(Image.open(p)), channel 0, > 0
    from PIL import Image

    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 1, 0] = 5
    rgb[1, 2, 1] = 200
    Image.fromarray(rgb).save(tmp_path / "rgbm.png")
    ref = np.asarray(Image.open(tmp_path / "rgbm.png"))[..., 0] > 0
    for backend in ("pil", "cv2"):
        assert np.array_equal(read_mask(tmp_path / "rgbm.png", threshold=0.0, backend=backend), ref)
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "one.png")
    assert read_mask(tmp_path / "one.png", backend="pil").tolist() == [[True, False]]


# --- video ------------------------------------------------------------------------------------------------


def test_video_frames_round_trip(tmp_path) -> None:
    p = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for c in colours:
        w.write(np.full((24, 32, 3), c[::-1], np.uint8))  # BGR
    w.release()
    frames = list(iter_video_frames(p))
    assert count_video_frames(p) == 3 and len(frames) == 3
    for f, c in zip(frames, colours):
        assert f.shape == (24, 32, 3) and f.dtype == np.uint8
        assert np.abs(f.reshape(-1, 3).mean(0) - np.array(c)).max() < 8  # RGB order, lossy codec
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(DataError, match="bad.mp4"):
        list(iter_video_frames(bad))
    with pytest.raises(DataError, match="nope.mp4: video file not found"):
        count_video_frames(tmp_path / "nope.mp4")
