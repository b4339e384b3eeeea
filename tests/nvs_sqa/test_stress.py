"""nvs_sqa.stress: each artefact does what it says at the strength it says; report and script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from common.io import OutputInsideInputError
from common.synthetic import write_nss_renders
from nvs_sqa.stress import (
    ARTEFACTS,
    StressRow,
    length_sweep,
    load_sequence,
    run_stress,
    summarize,
    write_report,
)
from nvs_sqa.weights import official_weights_available

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    """(8, 64, 320, 3) textured, moving frames away from 0 and 255 (no clipping for small changes)."""
    rng = np.random.default_rng(0)
    tex = rng.uniform(60, 190, (64, 360, 3))
    return np.stack([tex[:, 5 * t : 5 * t + 320] for t in range(8)]).round().astype(np.uint8)


def apply(name: str, frames: np.ndarray, p: float, seed: int = 0) -> np.ndarray:
    return ARTEFACTS[name].apply(frames, p, np.random.default_rng(seed))


@pytest.mark.parametrize("name", list(ARTEFACTS))
def test_shape_dtype_determinism_and_growing_change(clean: np.ndarray, name: str) -> None:
    levels = ARTEFACTS[name].levels
    outs = [apply(name, clean, p) for p in levels]
    assert all(o.shape == clean.shape and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(outs[0], apply(name, clean, levels[0]))  # same seed, same output
    mae = [np.abs(o.astype(float) - clean).mean() for o in outs]
    assert mae[0] > 0 and mae[-1] > mae[0]


def test_blur_removes_detail(clean: np.ndarray) -> None:
    def detail(f: np.ndarray) -> float:
        return float(np.abs(np.diff(f.astype(float), axis=2)).mean())

    d = [detail(apply("blur", clean, p)) for p in ARTEFACTS["blur"].levels]
    assert all(a > b for a, b in zip(d, d[1:])) and d[-1] < 0.5 * detail(clean)


def test_noise_std_in_8bit_levels(clean: np.ndarray) -> None:
    diff = apply("noise", clean, 8.0).astype(float) - clean
    assert diff.std() == pytest.approx(8.0, rel=0.05) and abs(diff.mean()) < 0.2


def test_jpeg_quality_lowers_psnr(clean: np.ndarray) -> None:
    mse = [((apply("jpeg", clean, q).astype(float) - clean) ** 2).mean() for q in ARTEFACTS["jpeg"].levels]
    assert all(a < b for a, b in zip(mse, mse[1:]))


def test_black_holes_cover_the_asked_area() -> None:
    bright = np.full((6, 120, 160, 3), 200, np.uint8)
    for pct in (2.0, 8.0):
        out = apply("black_holes", bright, pct)
        dark = (out[..., 0] < 100).mean(axis=(1, 2)) * 100  # per frame, % of pixels
        assert dark == pytest.approx(np.full(6, pct), rel=0.25)  # ellipses may leave the frame a little
        assert out.min() <= 5


def test_floaters_move_across_the_screen() -> None:
    grey = np.full((6, 90, 120, 3), 50, np.uint8)
    out = apply("floaters", grey, 1)
    centres = [np.unravel_index(np.argmax(f[..., 0]), f.shape[:2]) for f in out]
    assert len({c for c in centres}) > 3  # the blob is somewhere else in most frames
    assert 50 < out.max() <= 50 + 0.6 * 205 + 1  # semi-transparent: at most 60 % opacity


def test_ghosting_makes_a_shifted_double_image() -> None:
    f = np.zeros((2, 100, 100, 3), np.uint8)
    f[:, 50, 40] = 200
    out = apply("ghosting", f, 0.5)
    assert out[0, 50, 40, 0] == 100 and out[0, 51, 43, 0] == 100  # 3 % of width right, 1 % of height down
    assert out[0].astype(int).sum() == f[0].astype(int).sum()


def test_colour_shift_gains(clean: np.ndarray) -> None:
    out = apply("colour_shift", clean, 0.2).astype(float)
    ratio = out.mean(axis=(0, 1, 2)) / clean.astype(float).mean(axis=(0, 1, 2))
    assert ratio == pytest.approx([1.2, 1.0, 0.8], abs=0.01)


def test_flicker_changes_brightness_per_frame(clean: np.ndarray) -> None:
    out = apply("flicker", clean, 0.2).astype(float)
    gain = out.mean(axis=(1, 2, 3)) / clean.astype(float).mean(axis=(1, 2, 3))
    assert np.all(np.abs(gain - 1) <= 0.2 + 0.01) and gain.std() > 0.03


def test_frozen_frames_repeat_the_last_shown(clean: np.ndarray) -> None:
    out = apply("frozen", clean, 0.5)
    idx = [next(j for j in range(8) if np.array_equal(o, clean[j])) for o in out]
    assert idx[0] == 0 and idx == sorted(idx)  # never goes back in time
    assert len(set(idx)) == 8 - round(0.5 * 7)


def test_run_stress_and_summary(clean: np.ndarray, tmp_path: Path) -> None:
    def score(f: np.ndarray) -> float:  # a perfect full-reference "model": minus the distance to clean
        return -float(np.abs(f.astype(float) - clean).mean())

    rows = run_stress(clean, score, artefacts=["noise", "frozen"], max_levels=3)
    assert [(r.artefact, r.level) for r in rows] == [("clean", 0)] + [
        (a, k) for a in ("noise", "frozen") for k in (1, 2, 3)
    ]
    assert [r.param for r in rows if r.artefact == "noise"] == [2, 8, 32]  # spread over the range
    s = summarize(rows)
    assert s["noise"]["kendall_tau"] == pytest.approx(-1.0) and s["noise"]["max_gain"] < 0
    assert s["frozen"]["drop_at_max"] == pytest.approx(-rows[-1].jod)
    paths = write_report(tmp_path, rows, settings={"x": 1}, lengths=length_sweep(clean, len, [2, 4, 100]))
    data = json.loads(paths["json"].read_text())
    assert data["summary"]["noise"]["kendall_tau"] == pytest.approx(-1.0)
    assert [(r["frames"], r["jod"]) for r in data["length_sweep"]] == [(2, 2), (4, 4), (8, 8)]
    assert "| noise | std, 8-bit levels |" in paths["md"].read_text()
    assert paths["png"].stat().st_size > 1000


def test_summary_by_hand() -> None:
    rows = [StressRow("clean", 0, None, "", -1.0)] + [
        StressRow("a", k, float(k), "u", j) for k, j in ((1, -0.5), (2, -2.0), (3, -3.0))
    ]
    s = summarize(rows)["a"]
    # pairs (level, jod): (0,-1) (1,-.5) (2,-2) (3,-3): 5 discordant, 1 concordant of 6 -> tau = -4/6
    assert s["kendall_tau"] == pytest.approx(-2 / 3)
    assert s["drop_at_max"] == pytest.approx(2.0) and s["max_gain"] == pytest.approx(0.5)


def test_rejects_bad_input(clean: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown artefact"):
        run_stress(clean, lambda f: 0.0, artefacts=["sparkle"])
    with pytest.raises(ValueError, match="uint8"):
        run_stress(clean.astype(np.float32), lambda f: 0.0)


@pytest.fixture(scope="module")
def nss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_nss_renders(
        tmp_path_factory.mktemp("nss"), n_scenes=1, methods={}, n_frames=5, size=(72, 80)
    )
    return root / "renders" / "scene00__gt"


def test_load_sequence(nss: Path) -> None:
    assert load_sequence(nss).shape == (5, 72, 80, 3)
    picked = load_sequence(nss, frames=3)
    full = load_sequence(nss)
    assert np.array_equal(picked, full[[0, 2, 4]])
    from common.errors import TriVisionError

    with pytest.raises(TriVisionError, match="69x69"):
        load_sequence(nss, scale=0.5)


@pytest.mark.skipif(not official_weights_available(), reason="official weights not fetched")
def test_script_end_to_end(nss: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("nvs_sqa_stress", REPO / "scripts" / "nvs_sqa_stress.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "report"
    args = [str(nss), "--artefacts", "blur", "frozen", "--levels", "1", "--lengths", "3"]
    script.main([*args, "--out", str(out)])
    data = json.loads((out / "stress.json").read_text())
    assert [r["artefact"] for r in data["rows"]] == ["clean", "blur", "frozen"]
    assert data["settings"]["frames"] == 5 and data["settings"]["size"] == [80, 72]
    assert (out / "stress.png").is_file() and "| blur |" in capsys.readouterr().out
    with pytest.raises(OutputInsideInputError):
        script.main([*args, "--out", str(nss / "r")])
