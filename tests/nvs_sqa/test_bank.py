"""Bank scoring (nvs_sqa.app): failures by name, distinct keys, incremental outputs, kill and resume,
bounded decoding, output-path checks, device and chunk choice. A random-weights model: no download needed."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import TriVisionError
from common.evaluation import model_info, read_report
from nvs_sqa.app import Outputs, Prefetcher, discover, run_bank, unique_keys
from nvs_sqa.assessor import CHUNK, QualityAssessor, default_chunk, resolve_device
from nvs_sqa.models import SequenceModel
from nvs_sqa.ridge import RidgeReadout

MODEL = model_info("nvs_sqa", weights=None)


@pytest.fixture(scope="module")
def qa() -> QualityAssessor:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ridge = RidgeReadout(rng.normal(0, 0.05, 384).astype(np.float32), 0.0)
    return QualityAssessor(model=SequenceModel(), ridge=ridge)


def _nss(folder: Path, seed: int, n: int = 2, size=(70, 72)) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def _bank(root: Path, names=("a", "b", "c", "d")) -> Path:
    for i, n in enumerate(names):
        _nss(root / n, seed=i)
    return root


def _files(out: Outputs) -> dict:
    report = read_report(out.json)
    feats = dict(np.load(out.features))
    return {
        "items": report["items"],
        "aggregate": report["aggregate"],
        "extra": report.get("extra"),
        "csv": out.json.with_suffix(".csv").read_text(),
        "features": {k: v.tobytes() for k, v in feats.items()},
    }


def test_broken_nss_is_reported_by_name_and_the_others_are_scored(qa, tmp_path: Path) -> None:
    bank = _bank(tmp_path / "bank", ("a", "b", "c"))
    (bank / "b" / "001.png").write_bytes(b"not a png")  # b's second frame is corrupt
    out = Outputs(json=tmp_path / "out" / "r.json", features=tmp_path / "out" / "f.npz")
    n_failed = run_bank(qa, [bank], out, model=MODEL, show_progress=False)
    assert n_failed == 1
    report = read_report(out.json)
    assert [r["id"] for r in report["items"]] == ["a", "c"]
    assert report["schema"] == "tri-vision.eval/1" and report["aggregate"]["n_failed"] == 1
    (fail,) = report["extra"]["failed"]
    assert fail["id"] == "b" and "001.png" in fail["error"]
    assert sorted(np.load(out.features).files) == ["a", "c"]
    assert not (tmp_path / "out" / ".r.json.parts").exists()  # the journal is removed at the end
    # per-item rows reproduce the aggregate
    assert report["aggregate"]["jod_mean"] == pytest.approx(np.mean([r["jod"] for r in report["items"]]))


def test_same_name_from_different_inputs_gets_distinct_keys(qa, tmp_path: Path) -> None:
    _nss(tmp_path / "d1" / "bank" / "scene", 0)
    _nss(tmp_path / "d2" / "bank" / "scene", 1)
    _nss(tmp_path / "d2" / "bank" / "other", 2)
    items = discover([tmp_path / "d1" / "bank", tmp_path / "d2" / "bank", tmp_path / "d1" / "bank" / "scene"])
    assert [it.key for it in items] == ["d1/bank/scene", "other", "d2/bank/scene"]  # duplicate dropped
    assert unique_keys([Path("x/a"), Path("y/a"), Path("z/b")]) == ["x/a", "y/a", "b"]
    out = Outputs(json=tmp_path / "r.json")
    assert (
        run_bank(
            qa, [tmp_path / "d1" / "bank", tmp_path / "d2" / "bank"], out, model=MODEL, show_progress=False
        )
        == 0
    )
    assert {r["id"] for r in read_report(out.json)["items"]} == {"d1/bank/scene", "d2/bank/scene", "other"}


class _KilledAfter:
    """Wraps an assessor; raises KeyboardInterrupt (like a kill: not an NSS failure) on the n-th NSS."""

    def __init__(self, qa: QualityAssessor, n: int | None) -> None:
        self.qa, self.n, self.scored = qa, n, []
        self.chunk, self.device, self.iter_nss_folder = qa.chunk, qa.device, qa.iter_nss_folder
        self.model, self.ridge = qa.model, qa.ridge

    def score_stream(self, frames, name, progress=None):
        if self.n is not None and len(self.scored) == self.n:
            raise KeyboardInterrupt
        self.scored.append(name)
        return self.qa.score_stream(frames, name, progress)


def test_kill_and_resume_gives_the_file_of_an_uninterrupted_run(qa, tmp_path: Path) -> None:
    bank = _bank(tmp_path / "bank")
    ref = Outputs(json=tmp_path / "ref" / "r.json", features=tmp_path / "ref" / "f.npz")
    assert run_bank(qa, [bank], ref, model=MODEL, show_progress=False) == 0

    out = Outputs(json=tmp_path / "run" / "r.json", features=tmp_path / "run" / "f.npz")
    killed = _KilledAfter(qa, 2)
    with pytest.raises(KeyboardInterrupt):
        run_bank(killed, [bank], out, model=MODEL, show_progress=False)
    assert [r["id"] for r in read_report(out.json)["items"]] == ["a", "b"]  # written incrementally
    assert sorted(np.load(out.features).files) == ["a", "b"]
    with pytest.raises(TriVisionError, match="--resume"):  # a fresh run does not discard the journal
        run_bank(qa, [bank], out, model=MODEL, show_progress=False)
    again = _KilledAfter(qa, None)
    assert run_bank(again, [bank], out, resume=True, model=MODEL, show_progress=False) == 0
    assert again.scored == ["c", "d"]  # only what was missing
    got, want = _files(out), _files(ref)
    assert got == want


def test_outputs_inside_an_input_or_unwritable_are_refused_before_scoring(qa, tmp_path: Path) -> None:
    bank = _bank(tmp_path / "bank", ("a",))
    before = sorted(bank.rglob("*"))
    with pytest.raises(TriVisionError, match="inside the input"):
        run_bank(qa, [bank], Outputs(json=bank / "a" / "r.json"), model=MODEL, show_progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(TriVisionError, match="file"):
        run_bank(qa, [bank], Outputs(csv=tmp_path / "file" / "r.csv"), model=MODEL, show_progress=False)
    assert sorted(bank.rglob("*")) == before


def test_resume_rescores_changed_frames_and_refuses_another_model(qa, tmp_path: Path) -> None:
    """Issue 21 item 6: results are reused by frame content and model digest, never by folder name."""
    bank = _bank(tmp_path / "bank", ("a", "b", "c"))
    out = Outputs(json=tmp_path / "run" / "r.json", features=tmp_path / "run" / "f.npz")
    with pytest.raises(KeyboardInterrupt):
        run_bank(_KilledAfter(qa, 2), [bank], out, model=MODEL, show_progress=False)
    import shutil

    shutil.rmtree(bank / "a")  # "a" re-rendered under the same name
    _nss(bank / "a", seed=7, n=3)
    ref = Outputs(json=tmp_path / "ref" / "r.json", features=tmp_path / "ref" / "f.npz")
    assert run_bank(qa, [bank], ref, model=MODEL, show_progress=False) == 0
    again = _KilledAfter(qa, None)
    assert run_bank(again, [bank], out, resume=True, model=MODEL, show_progress=False) == 0
    assert again.scored == ["a", "c"]  # b kept, a rescored
    assert _files(out) == _files(ref)
    other = QualityAssessor(model=qa.model, ridge=RidgeReadout(qa.ridge.coef * 2, 0.0))
    before = out.json.read_bytes()
    with pytest.raises(TriVisionError, match="another model"):
        run_bank(other, [bank], out, resume=True, model=MODEL, show_progress=False)
    assert out.json.read_bytes() == before


def test_output_collisions_are_refused_before_scoring(qa, tmp_path: Path) -> None:
    """Issue 21 item 12: --json X --features X, --csv equal to --json, a derived CSV over an input."""
    bank = _bank(tmp_path / "bank", ("a",))
    x = tmp_path / "x.json"
    cases = [
        Outputs(json=x, features=x),
        Outputs(json=x, csv=x),
        Outputs(json=x, plot=tmp_path / "x.csv"),  # the plot would replace the CSV written beside x.json
    ]
    for out in cases:
        with pytest.raises(TriVisionError, match="given twice|same file"):
            run_bank(qa, [bank], out, model=MODEL, show_progress=False)
    assert not x.exists()
    out = Outputs(json=x, csv=tmp_path / "x.csv")  # --csv naming the CSV beside --json: written once
    assert run_bank(qa, [bank], out, model=MODEL, show_progress=False) == 0


HOLDER = """
import sys, time
from common.io import hold_lock
with hold_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_one_json_refuses_and_leaves_the_live_journal(qa, tmp_path: Path) -> None:
    """Issue 21 item 12: another live process holds the output (its journal is not "interrupted")."""
    import subprocess
    import sys

    bank = _bank(tmp_path / "bank", ("a",))
    out = Outputs(json=tmp_path / "r.json")
    out.parts().mkdir()
    (out.parts() / "r0-0000000.json").write_text("{}")  # the live run's journal
    repo = Path(__file__).resolve().parents[2]
    live = subprocess.Popen([sys.executable, "-c", HOLDER, str(out.json)], cwd=repo, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert live.stdout.readline().strip() == "locked"
        for resume in (False, True):
            with pytest.raises(TriVisionError, match="another process is writing it"):
                run_bank(qa, [bank], out, resume=resume, model=MODEL, show_progress=False)
        assert (out.parts() / "r0-0000000.json").is_file() and not out.json.exists()
    finally:
        live.kill()
        live.wait()


def test_stale_temp_files_of_its_own_outputs_are_cleaned(qa, tmp_path: Path) -> None:
    """MINOR: a killed run's .tmp-<pid> files go (its own names, dead pids only); others' files stay."""
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    bank = _bank(tmp_path / "bank", ("a",))
    out = Outputs(json=tmp_path / "o" / "r.json", features=tmp_path / "o" / "f.npz")
    own = [tmp_path / "o" / f".r.json.tmp-{dead.pid}", tmp_path / "o" / f".f.npz.tmp-{dead.pid}",
           out.parts() / f".r0-0000001.json.tmp-{dead.pid}"]  # fmt: skip
    kept = [tmp_path / "o" / f".other.json.tmp-{dead.pid}", tmp_path / "o" / f".r.json.tmp-{os.getppid()}"]
    for f in own + kept:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("partial")
    assert run_bank(qa, [bank], out, model=MODEL, show_progress=False) == 0
    assert not any(f.exists() for f in own) and all(f.exists() for f in kept)


def test_prefetcher_stays_a_bounded_number_of_frames_ahead() -> None:
    produced = []
    lock = threading.Lock()

    def open_item(i):
        for j in range(30):
            with lock:
                produced.append((i, j))
            yield np.zeros((2, 2, 3), np.uint8)

    pre = Prefetcher([0, 1, 2], open_item, queue_frames=4)
    consumed, ahead = 0, 0
    for i in range(3):
        for _ in pre.frames(i):
            consumed += 1
            time.sleep(0.001)
            with lock:
                ahead = max(ahead, len(produced) - consumed)
    pre.close()
    assert consumed == 90 and ahead <= 4 + 2  # queue + the frame in the producer's hand + the consumer's


def test_prefetcher_hands_decode_errors_to_their_item_and_goes_on() -> None:
    def open_item(i):
        yield np.zeros(1)
        if i == 1:
            raise OSError("bad frame")
        yield np.zeros(1)

    pre = Prefetcher([0, 1, 2], open_item, queue_frames=2)
    assert len(list(pre.frames(0))) == 2
    with pytest.raises(OSError, match="bad frame"):
        list(pre.frames(1))
    assert len(list(pre.frames(2))) == 2
    pre.close()


def test_device_spec_and_chunk_per_device(qa) -> None:
    assert qa.chunk == CHUNK["cpu"] == 2
    assert default_chunk(torch.device("cuda", 0)) == CHUNK["cuda"] > 2
    assert resolve_device("1") == torch.device("cuda", 1) and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="nvs_sqa_app.py -d 0-3"):
        resolve_device("0-3")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_several_gpus_without_cuda_fail_once_with_a_clear_message(tmp_path: Path) -> None:
    """`-d 0-3` is a device list for the torchrun re-launch, never a torch.device string."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    _nss(tmp_path / "a", 0)
    cmd = [sys.executable, str(repo / "scripts" / "nvs_sqa_app.py"), str(tmp_path / "a"), "-d", "0-3"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=repo, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120
    )
    assert proc.returncode == 2 and "CUDA is not available" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1


def test_a_folder_of_videos_is_a_bank_and_the_table_explains_the_scale_and_warns_on_mixes(
    qa, tmp_path: Path, capsys
) -> None:
    """Issue 20 §2: a folder of videos (ns-render layout) was refused; the table said nothing about the scale
    or about NSS stored at other resolutions, lengths or codecs; app and evaluation hashed NSS separately."""
    from common.viz import save_video
    from nvs_sqa.evaluation import bank_sha256
    from nvs_sqa.frames import nss_sha256

    bank = tmp_path / "renders"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)
    save_video([base, base[::-1].copy()], bank / "nerfacto.mp4", fps=24)
    save_video([base] * 3, bank / "splatfacto.mp4", fps=24)
    _nss(bank / "frames", 0, n=2, size=(72, 80))
    items = discover([bank])
    assert [(it.key, it.kind) for it in items] == [
        ("frames", "folder"), ("nerfacto", "video"), ("splatfacto", "video")
    ]  # fmt: skip
    out = Outputs(json=tmp_path / "r.json")
    capsys.readouterr()
    assert run_bank(qa, [bank], out, model=MODEL, show_progress=False) == 0
    rows = read_report(out.json)["items"]
    assert [r["id"] for r in rows] == ["frames", "nerfacto", "splatfacto"]
    assert [r["sha256"] for r in rows] == [nss_sha256(it.path) for it in items]
    printed = capsys.readouterr().out
    table = printed.splitlines()
    assert table[2].split()[:4] == ["frames", "2", "80x72", "png"] and table[3].split()[3] == "h264"
    note = " ".join(printed.split())
    assert "0 = the quality of the scene's reference video" in note and "SRCC 0.91" in note
    assert "[-16.24, 1.38]" in note and "mean" not in table[0]
    warn = [line for line in table if line.startswith("warning:")]
    assert len(warn) == 2 and "lengths (2 frames, 3 frames)" in warn[0] and "(h264, png)" in warn[1]
    assert "+0.27 JOD" in warn[0]
    # the evaluation's feature-cache key is built from the same per-NSS digest
    _nss(tmp_path / "ev" / "lab" / "S" / "m" / "frames", 0, n=2, size=(72, 80))  # bank_folder("lab+S+m")
    key_digest = hashlib.sha256(f"lab+S+m\n{rows[0]['sha256']}\n".encode()).hexdigest()
    assert bank_sha256(tmp_path / "ev", ["lab+S+m"]) == key_digest
    from nvs_sqa.app import mix_warnings

    (res,) = mix_warnings(
        [{"width": 80, "height": 72, "frames": 2}, {"width": 40, "height": 36, "frames": 2}]
    )
    assert "resolutions (40x36, 80x72)" in res
