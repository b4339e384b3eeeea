"""Benchmark the R-MSA top-k search + attention: tiled running top-k (ours) vs the official-style dense
form (rays x points x 3 tensors, then topk), rays/s and peak RSS, each configuration in its own process.

Writes a markdown table (default docs/benchmarks_smcl_scene.md)."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def worker(method: str, n_rays: int, n_points: int, k: int, attention: bool, threads: int) -> dict:
    import torch

    from smcl.scene.models.rmsa import (
        ProximityAttention,
        RMSAConfig,
        perpendicular_distance,
        topk_points_per_ray,
    )

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(n_points, 3, generator=g) * 10
    o = torch.randn(n_rays, 3, generator=g) * 30
    d = torch.nn.functional.normalize(-o + torch.randn(n_rays, 3, generator=g), dim=-1)
    attn = ProximityAttention(RMSAConfig()).eval() if attention else None
    feats, influ = torch.randn(n_points, 64), torch.rand(n_points)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with torch.no_grad():
        if method == "dense":  # official style: full rays x points x 3 intermediates
            idx = perpendicular_distance(pts, o, d).topk(k, dim=1, largest=False).indices
        else:
            idx, _ = topk_points_per_ray(pts, o, d, k, form=method)
        t_topk = time.perf_counter() - t
        if attn is not None:
            attn(pts[idx], feats[idx], influ[idx], o, d, 5.0)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": dt,
        "topk_seconds": t_topk,
        "rays_per_s": n_rays / dt,
        "peak_mb": peak / 1024,
        "delta_mb": (peak - base) / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rays", type=int, default=4096, help="rays per tile (official test tile: 10000)")
    p.add_argument("--points", type=int, nargs="+", default=[10000, 30000])
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-attention", action="store_true", help="time the top-k search only")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks_smcl_scene.md"))
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "POINTS"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], a.rays, int(a.worker[1]), a.k, not a.no_attention, a.threads)))
        return
    rows = []
    for n in a.points:
        for method in ("dense", "direct", "expanded"):
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                method,
                str(n),
                "--rays",
                str(a.rays),
                "--k",
                str(a.k),
                "--threads",
                str(a.threads),
            ]
            cmd += ["--no-attention"] if a.no_attention else []
            r = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            rows.append((n, method, r))
            print(n, method, r, flush=True)
    lines = [
        "# SMCL scene level: R-MSA top-k + attention benchmark",
        "",
        f"{a.rays} rays, K = {a.k}, {'top-k only' if a.no_attention else 'top-k + attention (d_model 256)'}, "
        f"torch threads {a.threads}, fp32, CPU, each configuration in its own process. `dense` = the official form "
        "(rays x points x 3 intermediates, then topk); `direct` / `expanded` = ours, tiled running top-k "
        "(1024 rays x 4096 points per tile). Peak = process max RSS (includes the Python/torch baseline); "
        "delta = growth during the measured call.",
        "",
        "| points | method | s | top-k s | rays/s | speed-up vs dense | peak RSS MB | delta MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    dense = {n: r for n, m, r in rows if m == "dense"}
    for n, m, r in rows:
        lines.append(
            f"| {n} | {m} | {r['seconds']:.2f} | {r['topk_seconds']:.2f} | {r['rays_per_s']:.0f} | "
            f"{dense[n]['seconds'] / r['seconds']:.2f}x | {r['peak_mb']:.0f} | {r['delta_mb']:.0f} |"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
