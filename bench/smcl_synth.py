"""Rays/s of the SMCL view synthesizer, ours vs the official-form computation, in one process.

Times, interleaved in the same run (same load): the training step (4 objects x 128 rays, coarse + fine,
backward, Adam) and chunked rendering, once with the official-form MLP (`mlp_impl=reference`: latent
expanded to every sample and pushed through lin_z, plain autograd) and once with ours (`fast`: per-object
latent, tiled fused ResnetFC, hand-written backward); optionally the opt-in bf16 GEMM mode. Writes
docs/benchmarks_smcl_synth.md with ratios to the official form and to the figures of performance.md.

python bench/smcl_synth.py [--device cpu|cuda] [--steps 2] [--render-rays 2048] [--no-bf16] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from smcl.object.models.view_synthesizer import ViewSynthesizer, ViewSynthesizerConfig, mlp_tile_rows

OFFICIAL_TRAIN_RPS = 512 / 16.7  # performance.md: 4 objects x 128 rays in 16.7 s (2 threads, idle machine)
OFFICIAL_RENDER_RPS = 4096 / 36.7  # performance.md: 4096 rays in 36.7 s


def _rays(sb: int, n: int, device: torch.device) -> torch.Tensor:
    o = torch.tensor([0.0, -2.7, 0.7], device=device).expand(sb, n, 3)
    d = torch.nn.functional.normalize(
        torch.tensor([0.0, 1.0, -0.25], device=device) + 0.2 * torch.randn(sb, n, 3, device=device), dim=-1
    )
    nf = torch.tensor([1.2, 4.0], device=device).expand(sb, n, 2)
    return torch.cat([o, d, nf], dim=-1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=int, default=512, help="ResnetFC width (official 512)")
    p.add_argument("--steps", type=int, default=2, help="timed repetitions of each measure")
    p.add_argument(
        "--render-rays", type=int, default=2048, help="rays per render call (rays/s does not depend on it)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-bf16", action="store_true", help="skip the opt-in bf16 rows")
    p.add_argument("--quick", action="store_true", help="smoke run: width 64, 1 step, 256 render rays")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks_smcl_synth.md"))
    a = p.parse_args()
    if a.quick:
        a.width, a.steps, a.render_rays = 64, 1, 256
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    load_before = _loadavg()
    torch.manual_seed(0)
    model = ViewSynthesizer(ViewSynthesizerConfig(d_hidden=a.width)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sb, n = 4, 128  # official: 4 objects x 128 rays, one source view each
    batch = {"src_images": torch.rand(sb, 1, 3, 64, 64, device=dev),
             "src_poses": torch.eye(4, device=dev).expand(sb, 1, 4, 4).contiguous(),
             "rays": _rays(sb, n, dev), "rgb": torch.rand(sb, n, 3, device=dev)}  # fmt: skip
    render_rays = _rays(1, a.render_rays, dev)
    modes = [("official form", "reference", "float32"), ("ours", "fast", "float32")]
    if not a.no_bf16 and dev.type == "cpu":
        modes.append(("ours, bf16 GEMMs (opt-in)", "fast", "bfloat16"))

    def train_step(small: bool = False) -> None:
        b = {k: (v[:1, :8] if k in ("rays", "rgb") else v[:1]) for k, v in batch.items()} if small else batch
        loss = sum(model.training_step(b).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_t: dict[str, list[float]] = {m[0]: [] for m in modes}
    render_t: dict[str, list[float]] = {m[0]: [] for m in modes}
    for _name, impl, dtype in modes:  # warm-up of every path
        model.set_mlp_impl(impl, dtype=dtype)
        model.train()
        train_step(small=True)
        model.eval()
        model.render_chunked(
            model.encode(batch["src_images"][:1], batch["src_poses"][:1]), render_rays[:, :16]
        )
    peak = {}
    for _ in range(a.steps):
        for name, impl, dtype in modes:  # interleaved: every mode sees the same load
            model.set_mlp_impl(impl, dtype=dtype)
            model.train()
            _sync(dev)
            t = time.perf_counter()
            train_step()
            _sync(dev)
            train_t[name].append(time.perf_counter() - t)
            model.eval()
            with torch.inference_mode():
                cond = model.encode(batch["src_images"][:1], batch["src_poses"][:1])
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(dev)
            t = time.perf_counter()
            model.render_chunked(cond, render_rays)
            _sync(dev)
            render_t[name].append(time.perf_counter() - t)
            if dev.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated() / 2**20
    load_after = _loadavg()

    ref = modes[0][0]
    train_rps = {k: sb * n / min(v) for k, v in train_t.items()}
    render_rps = {k: a.render_rays / min(v) for k, v in render_t.items()}
    cpu = torch.cuda.get_device_name() if dev.type == "cuda" else (platform.processor() or "cpu")
    rows = []
    for name, *_ in modes:
        rows.append(
            f"| {name} | {train_rps[name]:.1f} | {train_rps[name] / train_rps[ref]:.2f}x | "
            f"{train_rps[name] / OFFICIAL_TRAIN_RPS:.2f}x | {render_rps[name]:.1f} | "
            f"{render_rps[name] / render_rps[ref]:.2f}x | {render_rps[name] / OFFICIAL_RENDER_RPS:.2f}x |"
        )
    text = "\n".join(
        [
            "# SMCL view synthesizer throughput",
            "",
            f"Conditions: device {dev} ({cpu}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
            f"CPUs {os.cpu_count()}, 1-min/5-min/15-min load average {load_before} before and {load_after} "
            f"after; ResnetFC width {a.width}, 5 blocks, {model.cfg.n_coarse} coarse + "
            f"{model.cfg.n_coarse + model.cfg.n_fine + model.cfg.n_fine_depth} fine MLP samples per ray "
            f"(the official accounting), render chunk {model.cfg.chunk_points} points, MLP tile "
            f"{model.mlp_fine.tile or mlp_tile_rows(dev, a.width)} rows; best of {a.steps} interleaved repetitions per measure. "
            "`official form` is the official computation re-created in this code base (latent expanded to "
            "every sample, plain autograd, `mlp_impl=reference`); `ours` is the default fp32 path "
            "(identical results within fp32 rounding, tested). performance.md figures: training 30.7 rays/s, "
            "rendering 112 rays/s (2 threads, idle machine); the ratio to them is only meaningful on an idle "
            "machine of that type.",
            "",
            "| computation | train rays/s (4x128, coarse+fine, backward, Adam) | vs official form | "
            "vs performance.md | render rays/s | vs official form | vs performance.md |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "GPU peak memory while rendering: "
            + (", ".join(f"{k} {v:.0f} MiB" for k, v in peak.items()) if peak else "n/a (CPU)")
            + ".",
            "",
            "Where the time goes (torch.profiler, CPU): in the official form the MLP GEMMs take about 60-65 % "
            "of the time, the rest is ReLU, residual/latent adds and bias-broadcast copies over activations "
            "of up to 100k x 512 floats (far larger than the caches) plus the per-sample latent layers (7 % of "
            "the FLOPs). Ours computes the latent and bias terms once per object, runs the MLP over tiles of "
            "rows with in-place ReLU and the residual add fused into the GEMM, and is GEMM-bound (about 85 % "
            "of a training step, the same fraction of a pure GEMM benchmark). At fp32 the remaining ceiling "
            "is the GEMM rate, so the fp32 speed-up is bounded near 1/0.65 = 1.5x for rendering; the opt-in "
            "bf16 mode (AVX512-BF16 GEMMs, fp32 gradient accumulation, about 0.5 % relative deviation) is "
            "the way past 2x. Its quality cost, measured on the trained demo model (10 held-out objects, 1 thread): "
            "bf16 and fp32 renders of the same weights differ by 57-58 dB PSNR before 8-bit rounding, and the "
            "held-out PSNR / SSIM / LPIPS move by at most 0.002 dB / 0.0003 / 0.0001. On a machine shared with other busy processes, 2 OpenMP threads can stall at "
            "every barrier (a small 32x32 encoder pass measured 20x slower with 2 threads than with 1 at "
            "load average 7); compare rows only within one run and note the load average.",
            "",
        ]
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
