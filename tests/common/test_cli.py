"""common.cli: the project's errors as one line (exit 2), bugs with their traceback, run options."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from common.cli import run_options, run_script
from common.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def _exit_code(main, capsys: pytest.CaptureFixture, argv: list[str] | None = None) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        run_script(main, argv=argv)
    return e.value.code, capsys.readouterr().err


def test_user_error_is_one_line(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIVISION_DEBUG", raising=False)

    def main() -> None:
        raise DataError("data/img_3.png", "cannot be decoded")

    code, err = _exit_code(main, capsys, argv=[])
    assert code == 2 and err == "error: data/img_3.png: cannot be decoded\n"
    code, err = _exit_code(main, capsys, argv=["--debug"])
    assert code == 2 and "Traceback" in err and err.endswith("error: data/img_3.png: cannot be decoded\n")
    monkeypatch.setenv("TRIVISION_DEBUG", "1")
    assert "Traceback" in _exit_code(main, capsys, argv=[])[1]


def test_exit_codes(capsys: pytest.CaptureFixture) -> None:
    assert _exit_code(lambda: None, capsys)[0] == 0
    assert _exit_code(lambda: 3, capsys)[0] == 3

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert _exit_code(interrupted, capsys)[0] == 130

    def bug() -> None:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):  # not the user's fault: the traceback stays
        run_script(bug, argv=[])


def test_run_options() -> None:
    args = argparse.Namespace(devices="cpu", resume="auto", overwrite=True, allow_config_change=False)
    assert run_options(args) == {
        "devices": "cpu",
        "resume": "auto",
        "overwrite": True,
        "allow_config_change": False,
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_gpus_without_cuda_fail_once_before_anything_is_built(tmp_path: Path) -> None:
    """`-d 0-3` without GPUs: one line "CUDA is not available", no traceback, no worker started."""
    script = tmp_path / "train_x.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from common.cli import run_script
            from common.engine import TrainConfig, prepare_run

            def main():
                prepare_run(TrainConfig(out_dir={str(tmp_path / "run")!r}), "0-3")
                raise AssertionError("built data after a failed device check")

            run_script(main)
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "TRIVISION_DEBUG")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, str(script), "-d", "0-3"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: GPU devices [0, 1, 2, 3] requested but CUDA is not available (use -d cpu)"
    ]
