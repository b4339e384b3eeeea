"""common.runtime.keep_freed_memory: large freed buffers are reused instead of page-faulted in again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, resource, sys, torch
from common.runtime import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(16, 64, 1), torch.nn.GELU(), torch.nn.Conv2d(64, 16, 1))
x = torch.randn(1, 16, 256, 512)  # 8 MB in, 32 MB (> glibc's 32 MB mmap threshold with headers) inside
faults = []
with torch.no_grad():
    for _ in range(8):  # repeated forwards, as in evaluation or training
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        net(x)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_stops_refaulting_large_buffers():
    tuned, default = _run("tuned"), _run("default")
    if not tuned["applied"]:
        pytest.skip("this libc has no mallopt (not glibc)")
    pages = 2 * 32 * 2**20 // 4096  # two 32 MB activations per forward
    # with the setting, after two warm-up forwards the activations reuse freed memory: on average at
    # most half a forward's worth of page faults (glibc still misses a fit now and then, more often on a
    # loaded machine: e.g. [16459, 16384, 0, 0, 8192, 0, 0, 8192])
    after = tuned["faults"][2:]
    assert sum(after) <= len(after) * pages // 2, tuned
    # glibc's default unmaps each buffer on free, so every forward faults it in again (unless huge pages
    # hide it)
    if min(default["faults"][2:]) > pages // 2:
        assert sum(after) * 2 < sum(default["faults"][2:]), (tuned, default)


def test_keep_freed_memory_is_idempotent():
    from common.runtime import keep_freed_memory

    assert keep_freed_memory() == keep_freed_memory()
