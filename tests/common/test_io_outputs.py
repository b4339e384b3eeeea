"""common.io pre-flight output checks, the output lock and names from data files (issue 21 items 11-13)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.errors import DataError
from common.io import (
    LockedError,
    NotWritableError,
    OutputCollisionError,
    OutputInsideInputError,
    check_outputs,
    hold_lock,
    lock_path,
    path_inside,
)


def test_check_outputs_distinct_outside_inputs_and_writable(tmp_path: Path) -> None:
    ck = tmp_path / "ck.csv"
    ck.write_text("x")
    report = tmp_path / "ck.json"
    with pytest.raises(OutputInsideInputError, match="is the input"):  # the CSV derived from --report
        check_outputs([report, report.with_suffix(".csv")], [ck])
    with pytest.raises(OutputCollisionError, match="given twice|same file"):
        check_outputs([tmp_path / "r.json", tmp_path / "x" / ".." / "r.json"])
    with pytest.raises(OutputCollisionError):
        check_outputs([tmp_path / "o"], dirs=[tmp_path / "o"])
    check_outputs([tmp_path / "a.json", None, tmp_path / "a.csv"], [ck, None], dirs=[tmp_path / "out"])
    assert not (tmp_path / "out").exists()  # nothing is created
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotWritableError, match="is a file"):  # a folder cannot be created under a file
        check_outputs(dirs=[tmp_path / "file" / "renders"])


HOLDER = textwrap.dedent(
    """
    import sys, time
    from common.io import hold_lock
    with hold_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_lock_refuses_a_second_process_and_dies_with_its_holder(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target)], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match="another process"), hold_lock(target):
            pass
    finally:
        proc.kill()  # kill -9: the kernel releases the lock
        proc.wait()
    with hold_lock(target) as lock:
        assert lock == lock_path(target) and lock.is_file()


@pytest.mark.parametrize("bad", ["../../etc", "/abs/x", "a/../../b", "", "  ", "a\\..\\..\\b"])
def test_path_inside_refuses_names_that_leave_the_root(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DataError, match="softras_test.lst"):
        path_inside(tmp_path, bad, source=tmp_path / "softras_test.lst")


def test_path_inside_keeps_ordinary_names(tmp_path: Path) -> None:
    assert path_inside(tmp_path, "03211117/abc..def", source="x.lst") == tmp_path / "03211117" / "abc..def"
