"""Frame reading rules of spec nvs_sqa.md §6.2 (1)-(3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nvs_sqa.frames import FrameError, check_same_size, list_frames, natural_sort_key, read_frame


def test_natural_sort_orders_numbers_numerically(tmp_path: Path) -> None:
    for n in ("frame10.png", "frame2.PNG", "frame1.jpg", "notes.txt"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in list_frames(tmp_path)] == ["frame1.jpg", "frame2.PNG", "frame10.png"]
    assert sorted(["f0010", "f0002"], key=natural_sort_key) == ["f0002", "f0010"]


def test_rgb_is_bit_identical_to_pil(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (70, 80, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_frame(tmp_path / "a.png"), arr)


def test_rgba_drops_alpha_and_warns_when_transparent(tmp_path: Path) -> None:
    rgba = np.zeros((70, 70, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="transparent"):
        out = read_frame(tmp_path / "a.png")
    assert out.shape == (70, 70, 3) and out[0, 0, 0] == 200
    comp = read_frame(tmp_path / "a.png", background=(0, 0, 0))
    assert comp[0, 0, 0] == round(200 * 128 / 255)


def test_grey_and_16bit(tmp_path: Path) -> None:
    Image.fromarray(np.full((70, 70), 77, np.uint8), "L").save(tmp_path / "g.png")
    assert (read_frame(tmp_path / "g.png") == 77).all()
    Image.fromarray(np.full((70, 70), 257 * 100 + 128, np.uint16)).save(tmp_path / "h.png")
    assert (read_frame(tmp_path / "h.png") == round((257 * 100 + 128) / 257)).all()


def test_errors_name_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((68, 100, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(FrameError, match="small.png.*69"):
        read_frame(tmp_path / "small.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(FrameError, match="bad.jpg"):
        read_frame(tmp_path / "bad.jpg")
    with pytest.raises(FrameError, match="b.png.*differs"):
        check_same_size([(70, 70, 3), (80, 70, 3)], ["a.png", "b.png"])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK"])
def test_frames_through_common_image_io_equal_pillow_convert_rgb(tmp_path: Path, mode: str) -> None:
    """Frames are decoded by common.image_io (Pillow backend): bit-identical to PIL's convert("RGB")."""
    import warnings

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (70, 72, 3), dtype=np.uint8)).convert(mode)
    ext = "jpg" if mode == "CMYK" else "png"
    img.save(tmp_path / f"a.{ext}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the RGBA/LA frames are opaque here; P may carry no alpha
        got = read_frame(tmp_path / f"a.{ext}")
    with Image.open(tmp_path / f"a.{ext}") as ref:
        np.testing.assert_array_equal(got, np.asarray(ref.convert("RGB")))
