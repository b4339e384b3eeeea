"""Benchmark the SMCL scene renderer core (R-MSA: top-k nearest points per ray + proximity attention) on
the official workloads of specs/performance.md, ours vs our re-creation of the official form, each
(workload, method) in its own process; wall time (best of --repeat) and peak RSS.

official = dense rays x points x 3 distance tensors, then topk, then the straightforward attention
           (`ProximityAttention.forward_reference`: whole tile at once, W_k applied to every key);
ours     = `SceneModel.ray_features`: tiled running top-k (expanded form with exact re-rank) and the
           fused blocked attention (checkpointed blocks when training on > 8192 rays).

Writes a markdown report (default docs/benchmarks_smcl_scene.md)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# name: (rays per side, points, backward, full training step incl. UNet + MSE)
WORKLOADS = {
    "fwd_100x100_10k": (100, 10000, False, False),
    "fwd_100x100_30k": (100, 30000, False, False),
    "fwdbwd_64x64_30k": (64, 30000, True, False),
    "train_patch_160x160_30k": (160, 30000, True, True),
}
OFFICIAL = {  # specs/performance.md (official code, idle machine): seconds, peak GB, target
    "fwd_100x100_10k": ("4.55 s, 3.3 GB", ">= 3x"),
    "fwd_100x100_30k": ("12.7 s, 8.6 GB", ">= 3x, < 2 GB"),
    "fwdbwd_64x64_30k": ("6.61 s, 4.2 GB", ">= 2x"),
    "train_patch_160x160_30k": ("does not fit in 24 GB", "runs, < 4 GB"),
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scene(side: int, n_points: int):
    """A x10-scaled object (points in a ball of radius ~12) seen by an 800x800 camera at distance 40;
    the rays are the central side x side tile (neighbouring rays, as in the official test tiles)."""
    import torch

    from smcl.scene.data import get_rays_papr

    g = torch.Generator().manual_seed(0)
    pts = torch.randn(n_points, 3, generator=g)
    pts = (
        pts
        / pts.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        * torch.rand(n_points, 1, generator=g) ** 0.3
        * 12
    )
    c2w = torch.eye(4)
    c2w[2, 3] = 4.0  # looking down -z from z = 4 (x10 -> 40)
    o, d = get_rays_papr(800, 800, torch.tensor([1111.0, 1111.0]), c2w, 10.0)
    s = slice(400 - side // 2, 400 - side // 2 + side)
    return pts, o[s, s].contiguous(), d[s, s].contiguous()


def worker(workload: str, method: str, threads: int, repeat: int) -> dict:
    import torch

    from smcl.scene.models.rmsa import RMSAConfig, perpendicular_distance
    from smcl.scene.models.scene_model import SceneModel, SceneModelConfig

    torch.set_num_threads(threads)
    if method != "official":  # as every script of this code base does at start-up (common.runtime)
        from common.runtime import keep_freed_memory

        keep_freed_memory()
    side, n_points, backward, full = WORKLOADS[workload]
    pts, o, d = _scene(side, n_points)
    torch.manual_seed(0)
    model = SceneModel(SceneModelConfig(rmsa=RMSAConfig(), select_k=20), pts, torch.randn(n_points, 64) * 0.1)
    with torch.no_grad():
        model.points_influ_scores.uniform_(0, 1)
    k = 20

    def official_features(ro, rd):
        with torch.no_grad():
            idx = perpendicular_distance(model.points.detach(), ro, rd).topk(k, dim=1, largest=False).indices
        return model.proximity_attn.forward_reference(
            model.points[idx], model.pc_feats[idx], model.points_influ_scores[idx, 0], ro, rd, 5.0
        )

    def run_once():
        ro, rd = o.reshape(-1, 3), d.reshape(-1, 3)
        amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=method == "ours_bf16")
        with torch.set_grad_enabled(backward), amp:
            if full:
                if method == "official":
                    raise SystemExit("the official form does not fit this workload (spec: ~21 GB top-k)")
                rgb = model(o, d)["rgb"]
                loss = (rgb - 0.5).square().mean()
            else:
                feat, a_bkg = (official_features if method == "official" else model.ray_features)(ro, rd)
                loss = feat.square().mean() + a_bkg.mean()
            if backward:
                model.zero_grad(set_to_none=True)
                loss.backward()

    # warm-up on a small slice (one-time allocator / oneDNN initialisation, not the workload)
    with torch.set_grad_enabled(backward):
        feat, _ = model.ray_features(o.reshape(-1, 3)[:64], d.reshape(-1, 3)[:64])
        if backward:
            feat.sum().backward()
    model.zero_grad(set_to_none=True)
    base = _rss_mb()
    times, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        run_once()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    extra = {}
    if method == "ours_bf16":  # accuracy of the bf16 features against fp32 on the first 1024 rays
        ro, rd = o.reshape(-1, 3)[:1024], d.reshape(-1, 3)[:1024]
        with torch.no_grad():
            f32, _ = model.ray_features(ro, rd)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                f16, _ = model.ray_features(ro, rd)
        extra["rel_dev"] = ((f16.float() - f32).abs().max() / f32.abs().max()).item()
    return {
        **extra,
        "seconds": min(times),
        "cpu_seconds": min(cpu),
        "all_seconds": times,
        "rays": side * side,
        "peak_mb": _rss_mb(),
        "base_mb": base,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument(
        "--methods",
        nargs="+",
        default=["official", "ours", "ours_bf16"],
        choices=["official", "ours", "ours_bf16"],
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2, help="timed runs per process (best reported)")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks_smcl_scene.md"))
    p.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "METHOD"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], a.worker[1], a.threads, a.repeat)))
        return
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    res: dict = {}
    for w in a.workloads:
        for m in a.methods:
            if m == "ours_bf16" and WORKLOADS[w][3]:
                continue  # the bf16 rows cover the attention workloads only
            if m == "official" and WORKLOADS[w][3]:
                res[(w, m)] = None  # does not fit (spec); not run
                continue
            cmd = [sys.executable, __file__, "--worker", w, m, "--threads", str(a.threads)]
            cmd += ["--repeat", str(1 if WORKLOADS[w][3] else a.repeat)]  # the patch step: one run
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                res[(w, m)] = {
                    "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
                }
            else:
                res[(w, m)] = json.loads(out.stdout.strip().splitlines()[-1])
            print(w, m, res[(w, m)], flush=True)
    total = time.perf_counter() - t0
    load1 = os.getloadavg()
    lines = [
        "# SMCL scene level: R-MSA top-k + attention benchmark",
        "",
        "Official workloads of `specs/performance.md` (K = 20, d_model 256, value MLP 8 layers, fp32, CPU), "
        f"torch threads {a.threads}, each (workload, method) in its own process, best of {a.repeat} timed runs "
        "after a small warm-up. `official` = our re-creation of the official form (dense rays x points x 3 "
        "distance tensors + topk, then the straightforward attention on the whole tile); `ours` = tiled "
        "running top-k (expanded form, candidates re-ranked with the direct form: same selection) + the "
        "fused blocked attention (same outputs and gradients to 1e-5, see tests/smcl_scene/test_rmsa.py), in a "
        "process with `common.runtime.keep_freed_memory()` as the scripts run (glibc then reuses freed "
        "buffers above 32 MB instead of unmapping them and page-faulting them in at the next block; the "
        "official form runs with glibc's default). "
        "Peak = process max RSS (includes the ~0.4 GB Python/torch baseline). The training patch is the "
        "full step (top-k, attention, UNet, MSE, backward; attention blocks checkpointed). CPU s = process "
        "CPU time (all threads): less sensitive than wall time to other jobs on a loaded machine, but it "
        "counts OpenMP spin-waiting.",
        "",
        "| workload | rays | official s | ours s | speed-up | official CPU s | ours CPU s | CPU speed-up | "
        "official peak MB | ours peak MB | spec (official, idle machine) | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in a.workloads:
        off, ours = res.get((w, "official")), res.get((w, "ours"))

        def cell(r, key, fmt):
            if r is None:
                return "not run (does not fit)"
            if "error" in r:
                return "error"
            return fmt.format(r[key])

        speed = (
            f"{off['seconds'] / ours['seconds']:.2f}x"
            if off and ours and "error" not in off and "error" not in ours
            else "-"
        )
        cpu_speed = (
            f"{off['cpu_seconds'] / ours['cpu_seconds']:.2f}x"
            if off and ours and "error" not in off and "error" not in ours
            else "-"
        )
        side = WORKLOADS[w][0]
        lines.append(
            f"| {w} | {side}x{side} | {cell(off, 'seconds', '{:.2f}')} | {cell(ours, 'seconds', '{:.2f}')} | "
            f"{speed} | {cell(off, 'cpu_seconds', '{:.2f}')} | {cell(ours, 'cpu_seconds', '{:.2f}')} | "
            f"{cpu_speed} | {cell(off, 'peak_mb', '{:.0f}')} | {cell(ours, 'peak_mb', '{:.0f}')} | "
            f"{OFFICIAL[w][0]} | {OFFICIAL[w][1]} |"
        )
    bf16 = [w for w in a.workloads if res.get((w, "ours_bf16"))]
    if bf16:
        lines += [
            "",
            "`ours` under `torch.autocast('cpu', dtype=torch.bfloat16)` (the engine's `train.precision: bf16`; "
            "the top-k distances stay fp32, so the selected points are the same); accuracy = max |bf16 - fp32| "
            "of the ray features over their max |fp32| on the first 1024 rays:",
            "",
            "| workload | ours bf16 s | speed-up vs official | speed-up vs ours fp32 | ours bf16 peak MB | "
            "feature deviation |",
            "|---|---|---|---|---|---|",
        ]
        for w in bf16:
            off, ours, b = res.get((w, "official")), res.get((w, "ours")), res[(w, "ours_bf16")]
            if "error" in b:
                lines.append(f"| {w} | error | | | | |")
                continue

            def ratio(r, b=b):
                return f"{r['seconds'] / b['seconds']:.2f}x" if r and "error" not in r else "-"

            lines.append(
                f"| {w} | {b['seconds']:.2f} | {ratio(off)} | {ratio(ours)} | {b['peak_mb']:.0f} | "
                f"{b['rel_dev']:.1e} |"
            )
    lines += [
        "",
        f"Conditions: {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average (1 min) "
        f"{load0[0]:.2f} before / {load1[0]:.2f} after, bench wall time {total:.0f} s. Command: "
        f"`python bench/smcl_scene.py{'' if a.threads == 2 else f' --threads {a.threads}'}`. "
        "Compare rows of one run only (shared machines are noisy). No GPU was used.",
        "",
        "On a machine shared with other jobs, run with `--threads 1`: with 2 OpenMP threads every parallel "
        "op waits for whichever thread was descheduled, and the tiled paths (more, smaller ops) suffer most "
        "(on the shared 2-core machine at load ~3.7, 4096 rays at 10k points: tiled top-k 0.52 s with one "
        "thread vs 1.4-3.3 s with two; fused attention 2.4 s vs 7.3 s; the straightforward attention "
        "4.2 s vs 5.6 s). The performance.md targets were measured on an idle machine with 2 threads.",
    ]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out} ({total:.0f} s)")


if __name__ == "__main__":
    main()
