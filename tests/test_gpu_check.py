"""bench/gpu_check.py runs on CPU at tiny sizes (`--device cpu --quick`), so the prepared GPU check
cannot rot between the sessions that have a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu_and_every_check_passes(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    res = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    data = json.loads(out.with_suffix(".json").read_text())
    failed = {k: v for k, v in data["results"].items() if v["status"] == "FAIL"}
    assert res.returncode == 0 and not failed, f"{failed}\n{res.stderr[-3000:]}"
    names = " ".join(data["results"])
    for part in ("smmcl", "smcl object", "smcl scene", "nvs_sqa", "resume", "collective", "DDP", "CLI"):
        assert part in names, f"no {part} check"
    # the CUDA-only comparisons are reported as skipped on CPU, never as passed
    assert data["results"]["smmcl: GPU vs CPU logits"]["status"] == "skip"
    text = out.read_text()
    assert "| check | status |" in text and "FAIL" not in text
