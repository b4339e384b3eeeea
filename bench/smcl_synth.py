"""Rays/s of the SMCL view synthesizer (training step and chunked rendering); writes docs/benchmarks_smcl_synth.md.

python bench/smcl_synth.py [--device cpu|cuda] [--width 512] [--steps 3] [--out docs/benchmarks_smcl_synth.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from smcl.object.models.view_synthesizer import ViewSynthesizer, ViewSynthesizerConfig


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=int, default=512, help="ResnetFC width (official 512)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--render-rays", type=int, default=4096, help="rays per render call (one 64x64 image)")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks_smcl_synth.md"))
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = ViewSynthesizer(ViewSynthesizerConfig(d_hidden=a.width)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sb, n = 4, 128  # official: 4 objects x 128 rays
    batch = {"src_images": torch.rand(sb, 1, 3, 64, 64, device=dev),
             "src_poses": torch.eye(4, device=dev).expand(sb, 1, 4, 4).contiguous(),
             "rays": _rays(sb, n, dev), "rgb": torch.rand(sb, n, 3, device=dev)}  # fmt: skip
    model.train()
    sum(model.training_step(batch).values()).backward()  # warm-up
    _sync(dev)
    t = time.perf_counter()
    for _ in range(a.steps):
        loss = sum(model.training_step(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(dev)
    train_rps = a.steps * sb * n / (time.perf_counter() - t)
    model.eval()
    cond = model.encode(batch["src_images"][:1], batch["src_poses"][:1])
    rays = _rays(1, a.render_rays, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(dev)
    t = time.perf_counter()
    for _ in range(a.steps):
        model.render_chunked(cond, rays)
    _sync(dev)
    render_rps = a.steps * a.render_rays / (time.perf_counter() - t)
    mem = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB peak" if dev.type == "cuda" else "n/a (CPU)"
    text = (
        "# SMCL view synthesizer throughput\n\n"
        f"Conditions: device {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else platform.processor() or 'cpu'}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, width {a.width}, "
        f"64 coarse + 112 fine + 16 depth samples, chunk {model.cfg.chunk_points} points, {a.steps} timed iterations. "
        "Shared machines give noisy timings.\n\n"
        "| measure | rays/s |\n|---|---|\n"
        f"| training step (4 objects x 128 rays, coarse+fine, backward, Adam) | {train_rps:.1f} |\n"
        f"| chunked rendering ({a.render_rays} rays) | {render_rps:.1f} |\n\n"
        f"Rendering memory: {mem}.\n"
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
