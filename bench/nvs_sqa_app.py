"""Time our NVS-SQA app against the official `nvs-sqa` 0.1.1 package on the same NSS folders.

The official wheel is pip-installed by its pinned sha256 (hash-checking mode: `--require-hashes` with the
digest on the requirements line, `--no-deps --only-binary :all:`) with --target into a temporary folder and
run in its own process (both packages are called `nvs_sqa`); ours also runs in its own process with the same
thread count. The wheel cached by `scripts/fetch_weights.py` is used when present (`--find-links`).
Writes a section with per-NSS seconds, the ratio and the max feature difference into
docs/benchmarks_nvs_sqa.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

_OFFICIAL = r"""
import glob, json, os, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
import nvs_sqa
assert nvs_sqa.__file__.startswith(sys.argv[1]), nvs_sqa.__file__
from nvs_sqa import QualityAssessor
qa = QualityAssessor(device="cpu")
out = {}
for folder in sys.argv[3:]:
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*.*")) if p.rsplit(".", 1)[-1].lower() in ("png", "jpg", "jpeg"))
    t = time.perf_counter()
    f = qa.predict_features_from_views(paths)
    out[folder] = {"seconds": time.perf_counter() - t, "feature": [float(v) for v in f.reshape(-1)]}
print("RESULT" + json.dumps(out))
"""

_OURS = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from nvs_sqa.assessor import QualityAssessor
qa = QualityAssessor(device="cpu", decode_threads=int(sys.argv[1]))
out = {}
for folder in sys.argv[2:]:
    t = time.perf_counter()
    r = qa.score_nss_folder(folder)
    out[folder] = {"seconds": time.perf_counter() - t, "feature": [float(v) for v in r.feature]}
print("RESULT" + json.dumps(out))
"""


def _run(cmd: list[str], env: dict[str, str], cwd: str) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def install_official(
    target: Path, spec: str, sha256: str, *, find_links: Path | None = None, no_index: bool = False
) -> None:
    """pip-install the pinned wheel `spec` into `target`; pip refuses any archive whose sha256 differs."""
    from common.weights import WeightsError

    req = target.parent / "official-requirements.txt"
    req.write_text(f"{spec} --hash=sha256:{sha256}\n", encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--require-hashes",
        "--only-binary",
        ":all:",
    ]
    cmd += ["--disable-pip-version-check", "--no-input", "--target", str(target), "-r", str(req)]
    if find_links is not None and find_links.is_dir():
        cmd += ["--find-links", str(find_links)]
    if no_index:
        cmd += ["--no-index"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise WeightsError(
            f"installing {spec} by its pinned sha256 failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folders", nargs="+", type=Path, help="NSS folders of frames")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--rounds", type=int, default=2, help="alternating official/ours rounds; the minimum counts"
    )
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks_nvs_sqa.md")
    p.add_argument(
        "--no-index", action="store_true", help="install the official wheel from the weights cache only"
    )
    args = p.parse_args()
    from common.io import atomic_write_text, check_outputs_outside_inputs
    from common.weights import weights_dir

    check_outputs_outside_inputs([args.out], args.folders)
    folders = [str(f.resolve()) for f in args.folders]
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "official"
        from nvs_sqa.weights import OFFICIAL

        wheel = OFFICIAL.package
        install_official(
            target, wheel.spec, wheel.sha256, find_links=weights_dir() / "packages", no_index=args.no_index
        )
        env = dict(os.environ, PYTHONPATH=str(target))
        t0 = time.time()
        offs, ourss = [], []
        for _ in range(args.rounds):  # alternate so that load drift on a shared machine hits both sides
            offs.append(
                _run([sys.executable, "-c", _OFFICIAL, str(target), str(args.threads), *folders], env, tmp)
            )
            ourss.append(
                _run([sys.executable, "-c", _OURS, str(args.threads), *folders], dict(os.environ), str(REPO))
            )
        wall = time.time() - t0
        load = os.getloadavg()[0]
    off = {f: min((r[f] for r in offs), key=lambda v: v["seconds"]) for f in folders}
    ours = {f: min((r[f] for r in ourss), key=lambda v: v["seconds"]) for f in folders}
    lines = [
        "## NVS-SQA app vs official nvs-sqa 0.1.1",
        "",
        f"`python bench/nvs_sqa_app.py` on {platform.node()} ({os.cpu_count()} CPUs, torch threads "
        f"{args.threads}, fp32, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); each side in its own "
        f"process, {args.rounds} alternating rounds, minimum per side (total {wall:.0f} s, 1-min load average at the "
        f"end {load:.1f}). Seconds = frame decoding + network per NSS. All rounds (official / ours): "
        + "; ".join(
            f"{Path(f).name}: "
            + ", ".join(f"{a[f]['seconds']:.1f}/{b[f]['seconds']:.1f}" for a, b in zip(offs, ourss))
            for f in folders
        ),
        "",
        "| NSS | official s | ours s | ratio ours/official | max abs feature diff |",
        "|---|---|---|---|---|",
    ]
    for f in folders:
        a, b = off[f], ours[f]
        diff = float(np.abs(np.asarray(a["feature"]) - np.asarray(b["feature"])).max())
        lines.append(
            f"| {Path(f).name} | {a['seconds']:.2f} | {b['seconds']:.2f} | {b['seconds'] / a['seconds']:.2f} | {diff:.2e} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
