"""Bank-scoring throughput of `scripts/nvs_sqa_app.py`: NSS per minute with 1 and with N processes.

Writes a synthetic bank (common.synthetic.write_nss_renders: `--scenes` scenes x 5 methods, `--frames`
frames of `--size` pixels), scores it with the official weights once per process count (each a fresh
`nvs_sqa_app.py` run: decoding, network, merged JSON/CSV/NPZ), checks that every run gives the same scores
as the 1-process run, and writes docs/benchmarks_nvs_sqa_bank.md. The wall time includes start-up
(importing torch, loading the weights, the torchrun re-launch): it is what a user waits for.

    python bench/nvs_sqa_bank.py                       # 1 vs 2 processes on CPU
    python bench/nvs_sqa_bank.py --procs 1 2 --scenes 4 --frames 24 --size 270 480
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

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _scores(report: Path) -> dict[str, float]:
    data = json.loads(report.read_text())
    return {str(item["id"]): float(item["jod"]) for item in data["items"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to time")
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, nargs=2, default=(270, 480), metavar=("H", "W"))
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_nvs_sqa_bank.md")
    a = p.parse_args()

    from common.synthetic import write_nss_renders

    tmp = Path(tempfile.mkdtemp(prefix="nvs_sqa_bank-"))
    bank = (
        write_nss_renders(tmp / "bank", n_scenes=a.scenes, n_frames=a.frames, size=tuple(a.size)) / "renders"
    )
    n_nss = sum(1 for d in bank.iterdir() if d.is_dir())
    load_before = _loadavg()
    rows, reference = [], None
    for procs in a.procs:
        report = tmp / f"scores_{procs}.json"
        cmd = [sys.executable, "scripts/nvs_sqa_app.py", str(bank), "--json", str(report), "--no-progress"]
        cmd += ["-d", "cpu", "--procs", str(procs)]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // procs))}
        t = time.perf_counter()
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if res.returncode != 0:
            print(res.stderr[-3000:], file=sys.stderr)
            return 1
        scores = _scores(report)
        reference = reference or scores
        worst = max(abs(scores[k] - reference[k]) for k in reference)
        if set(scores) != set(reference):
            print(
                f"error: {procs} processes scored {sorted(scores)} instead of {sorted(reference)}",
                file=sys.stderr,
            )
            return 1
        rows.append((procs, wall, n_nss / wall * 60.0, worst))
        print(f"{procs} process(es): {wall:.1f} s, {n_nss / wall * 60.0:.1f} NSS/min, max |dJOD| {worst:.2e}")
    cpu = _cpu_name()
    lines = [
        "## NVS-SQA bank scoring (`scripts/nvs_sqa_app.py`, 1 vs N processes)",
        "",
        f"`python bench/nvs_sqa_bank.py` on {cpu}, {os.cpu_count()} CPUs, load average {load_before} before and "
        f"{_loadavg()} after. Bank: {n_nss} NSS ({a.scenes} synthetic scenes x 5 methods), {a.frames} frames of "
        f"{a.size[0]}x{a.size[1]} each, official weights; `-d cpu --procs N` with OMP_NUM_THREADS = CPUs / N. "
        "Wall time of the whole command (start-up, torchrun re-launch, decoding, network, merged report).",
        "",
        "| processes | wall s | NSS/min | speed-up | max abs JOD difference vs 1 process |",
        "|---|---|---|---|---|",
    ]
    for procs, wall, rate, worst in rows:
        lines.append(f"| {procs} | {wall:.1f} | {rate:.1f} | {rows[0][1] / wall:.2f}x | {worst:.1e} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = a.out.with_name(a.out.name + ".tmp")
    tmp_out.write_text("\n".join(lines) + "\n")
    os.replace(tmp_out, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
