import json
import os
import subprocess
import sys

import pytest
import torch

from common.errors import TriVisionError
from common.io import (
    NotWritableError,
    OutputInsideInputError,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_outputs_outside_inputs,
    check_writable,
    clean_stale_temp_files,
    temp_path,
)


def test_atomic_write_replaces_only_on_success(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic_write_text(p, "old")
    assert p.read_text() == "old"
    with pytest.raises(RuntimeError), atomic_write(p, "w") as fh:
        fh.write("half-written")
        raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert not temp_path(p).exists()
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.txt"]
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"


def test_temp_name_pattern(tmp_path):
    assert temp_path(tmp_path / "x.pth").name == f".x.pth.tmp-{os.getpid()}"


def test_atomic_json_and_torch(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2]}
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "bad.json", {"a": float("nan")})
    assert not (tmp_path / "bad.json").exists()
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "w.pth")
    assert torch.equal(torch.load(tmp_path / "w.pth", weights_only=True)["w"], torch.arange(3))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_temp_files_keeps_live_writers(tmp_path):
    dead = tmp_path / f".step-1.pth.tmp-{_dead_pid()}"
    dead.write_bytes(b"x" * 100)
    live = tmp_path / f".step-2.pth.tmp-{os.getpid()}"
    live.write_bytes(b"y")
    other = tmp_path / "notes.tmp-1"  # not our pattern (no leading dot)
    other.write_text("keep")
    keep = tmp_path / "step-1.pth"
    keep.write_bytes(b"z")
    assert clean_stale_temp_files(tmp_path) == [dead]
    assert not dead.exists() and live.exists() and other.exists() and keep.exists()
    assert clean_stale_temp_files(tmp_path / "missing") == []


def test_clean_stale_temp_files_recursive(tmp_path):
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    dead = nested / f".x.tmp-{_dead_pid()}"
    dead.write_text("")
    assert clean_stale_temp_files(tmp_path) == []
    assert clean_stale_temp_files(tmp_path, recursive=True) == [dead]


def test_outputs_inside_inputs(tmp_path):
    data = tmp_path / "data"
    (data / "frames").mkdir(parents=True)
    frame = data / "frames" / "0.png"
    frame.write_bytes(b"")
    link = tmp_path / "link"
    link.symlink_to(data)
    for out in (data, data / "out.json", data / "frames" / "x" / "y.png", link / "r.json", frame):
        with pytest.raises(OutputInsideInputError) as e:
            check_outputs_outside_inputs([tmp_path / "ok.json", out], [tmp_path / "other", data])
        assert isinstance(e.value, TriVisionError)
        assert str(data) in str(e.value)
    with pytest.raises(OutputInsideInputError, match="is the input"):
        check_outputs_outside_inputs([frame], [frame])
    # relative spelling of the same file
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(OutputInsideInputError):
            check_outputs_outside_inputs(["data/./frames/../frames/0.png"], [frame])
    finally:
        os.chdir(cwd)
    # outside, siblings with a common prefix, a folder that contains the input, and None: fine
    check_outputs_outside_inputs([tmp_path / "data2" / "r.json", tmp_path, None], [data, None])


def test_check_writable(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "r.json")
    assert not (tmp_path / "new").exists()  # nothing created
    check_writable(tmp_path / "runs", is_dir=True)
    f = tmp_path / "file.txt"
    f.write_text("")
    with pytest.raises(NotWritableError, match="is a file"):
        check_writable(f / "r.json")
    with pytest.raises(NotWritableError, match="is a folder"):
        check_writable(tmp_path)
    with pytest.raises(NotWritableError, match="not a folder"):
        check_writable(f, is_dir=True)
    assert list(tmp_path.iterdir()) == [f]  # probes removed


@pytest.mark.skipif(not os.path.isdir("/proc/1"), reason="needs procfs")
def test_check_writable_refuses_read_only_folder():
    with pytest.raises(NotWritableError):
        check_writable("/proc/1/tri-vision-report.json")


def test_clean_stale_temp_folder(tmp_path):
    d = tmp_path / f".v.mp4.tmp-{_dead_pid()}"
    d.mkdir()
    (d / "video.mp4").write_bytes(b"x")
    assert clean_stale_temp_files(tmp_path) == [d]
    assert not d.exists()


def test_npz_json_csv_helpers(tmp_path):
    import numpy as np

    from common.errors import DataError
    from common.io import atomic_savez, atomic_write_csv, load_npz, read_json

    p = atomic_savez(tmp_path / "feat.bin", a=np.arange(3), b=np.eye(2, dtype=np.float32))
    assert p.name == "feat.bin"
    got = load_npz(p)
    assert got["a"].tolist() == [0, 1, 2] and got["b"].dtype == np.float32
    atomic_savez(tmp_path / "c.npz", compressed=True, x=np.ones(100))
    assert load_npz(tmp_path / "c.npz")["x"].sum() == 100
    np.savez(tmp_path / "obj.npz", o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="obj.npz: cannot read"):
        load_npz(tmp_path / "obj.npz")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="bad.npz"):
        load_npz(tmp_path / "bad.npz")
    (tmp_path / "t.json").write_text('{"a": 1,\n "b": }')
    with pytest.raises(DataError, match="t.json: invalid JSON at line 2 column 7"):
        read_json(tmp_path / "t.json")
    assert read_json(atomic_write_json(tmp_path / "ok.json", [1])) == [1]
    atomic_write_csv(tmp_path / "r.csv", [{"id": "a", "x": 1}, {"id": "b", "y": 2}])
    assert (tmp_path / "r.csv").read_text() == "id,x,y\na,1,\nb,,2\n"


def test_npy_round_trip_and_bad_files_name_the_file(tmp_path):
    import numpy as np
    import pytest

    from common.errors import DataError
    from common.io import atomic_save_npy, load_npy

    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    path = atomic_save_npy(tmp_path / "points.npy", a)
    assert np.array_equal(load_npy(path), a) and not list(tmp_path.glob(".*tmp*"))
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match="bad.npy"):
        load_npy(tmp_path / "bad.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="obj.npy"):  # object arrays would need pickle: refused
        load_npy(tmp_path / "obj.npy")
    with pytest.raises(DataError, match="missing.npy"):
        load_npy(tmp_path / "missing.npy")
