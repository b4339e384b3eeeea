"""The scoring app: input kinds, outputs, no writes into inputs, out-of-range warning (needs official weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from nvs_sqa.weights import official_weights_available

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not official_weights_available(),
    reason="official weights not fetched: run nvs_sqa.weights.fetch_official_weights()",
)


def _nss(folder: Path, seed: int, n: int = 3, size=(72, 80)) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (0, 0), 4)
    frames = [np.roll(base, i, axis=1) for i in range(n)]
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame{i}.png")  # not zero-padded on purpose
    return frames


def test_app_scores_folder_of_nss_and_writes_outputs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    frames = _nss(data / "a", 0)
    _nss(data / "b", 1)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    out = tmp_path / "out"
    out.mkdir()
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "nvs_sqa_app.py"),
        str(data),
        "--json",
        str(out / "s.json"),
        "--csv",
        str(out / "s.csv"),
        "--features",
        str(out / "f.npz"),
        "--plot",
        str(out / "p.png"),
        "--no-progress",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "80x72" in proc.stdout and "JOD" in proc.stdout
    report = json.loads((out / "s.json").read_text())
    assert report["schema"] == "tri-vision.eval/1" and report["task"] == "nvs_sqa.app"
    rows = report["items"]
    assert [r["id"] for r in rows] == ["a", "b"] and all(isinstance(r["jod"], float) for r in rows)
    feats = np.load(out / "f.npz")
    assert feats["a"].shape == (384,) and feats["a"].dtype == np.float32
    assert (out / "p.png").stat().st_size > 0 and (out / "s.csv").read_text().startswith("id,")
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written into the inputs

    from nvs_sqa import QualityAssessor

    qa = QualityAssessor()
    direct = qa.score_frames(frames)  # same frames as arrays, natural order frame0, frame1, frame2
    np.testing.assert_allclose(direct.feature, feats["a"], atol=1e-6)
    (r,) = qa.score_folder(data / "a")
    # the app ran with 1 thread, this process with up to 2: the ridge read-out sums 384 features, so the
    # JOD may differ by a few 1e-6 (the features themselves agree to 1e-6 above)
    assert r.jod == pytest.approx(rows[0]["jod"], abs=2e-5)


def test_video_input_and_noise_warning(tmp_path: Path) -> None:
    from nvs_sqa import QualityAssessor

    qa = QualityAssessor()
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (80, 96, 3), dtype=np.uint8) for _ in range(3)]
    with pytest.warns(UserWarning, match="outside the label range"):
        r = qa.score_frames(noise)
    assert r.out_of_range and r.jod > 5  # spec §6.2 (7): noise scores far above the reference
    path = tmp_path / "v.avi"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 80))
    for f in noise:
        wr.write(f)
    wr.release()
    with pytest.warns(UserWarning):
        (v,) = qa.score_folder(path)
    assert (v.n_frames, v.width, v.height) == (3, 96, 80)


def test_python_api_frames_equal_folder_and_chunking_is_invisible(tmp_path: Path) -> None:
    from nvs_sqa import QualityAssessor

    frames = _nss(tmp_path / "scene", seed=3, n=5)
    qa = QualityAssessor.from_official(device="cpu")
    (folder_score,) = qa.score_folder(tmp_path / "scene")
    array_score = qa.score_frames(np.stack(frames), name="scene")
    assert isinstance(folder_score.jod, float) and folder_score.n_frames == 5
    assert (folder_score.width, folder_score.height) == (80, 72)
    np.testing.assert_allclose(folder_score.feature, array_score.feature, atol=1e-6)
    # the official code runs the CNN on chunks of 10 frames; BatchNorm is in eval mode, so chunks do not matter
    chunked = QualityAssessor.from_official(chunk=10, decode_threads=3).score_frames(frames)
    np.testing.assert_allclose(chunked.feature, folder_score.feature, atol=1e-5)
    assert chunked.jod == pytest.approx(folder_score.jod, abs=1e-4)


def _app(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "scripts" / "nvs_sqa_app.py"), *args, "--no-progress"]
    e = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=e, timeout=300)


def test_app_reports_a_broken_nss_and_exits_non_zero(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _nss(data / "a", 0)
    (data / "b").mkdir(parents=True)
    (data / "b" / "frame0.png").write_bytes(b"broken")
    proc = _app(str(data), "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "b" in proc.stderr and "frame0.png" in proc.stderr and "Traceback" not in proc.stderr
    assert [r["id"] for r in json.loads((tmp_path / "r.json").read_text())["items"]] == ["a"]
    bad = _app(str(data), "--json", str(data / "a" / "r.json"))  # an output inside an input: refused
    assert bad.returncode == 2 and "error:" in bad.stderr and not (data / "a" / "r.json").exists()


def test_two_cpu_processes_write_the_same_files_as_one(tmp_path: Path) -> None:
    """`-d cpu --procs 2` re-launches under torchrun (2 gloo ranks) and merges by key: same outputs."""
    data = tmp_path / "data"
    for i, n in enumerate("abcde"):
        _nss(data / n, i, n=2)
    files = {}
    for procs in ("1", "2"):
        o = tmp_path / f"p{procs}"
        proc = _app(
            str(data),
            "--json",
            str(o / "r.json"),
            "--features",
            str(o / "f.npz"),
            "-d",
            "cpu",
            "--procs",
            procs,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads((o / "r.json").read_text())
        assert report["environment"]["world_size"] == int(procs)
        with np.load(o / "f.npz") as z:
            feats = {k: z[k].tobytes() for k in z.files}
        files[procs] = (report["items"], report["aggregate"], (o / "r.csv").read_text(), feats)
        assert not (o / ".r.json.parts").exists()
    assert [r["id"] for r in files["1"][0]] == list("abcde")
    assert files["1"] == files["2"]
