"""SMMCL speed: inference img/s at 480x640 and 240x320 and a B=2 480x640 train step (MSCAN-B, K=14),
fp32 (and bf16 inference), writing docs/benchmarks_smmcl.md. Targets: the performance spec (official
SMMCL on this machine type: 1.64-1.76 s/img at 480x640, 0.376 s/img at 240x320, 10.4-11.2 s/train step)."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

# Run as `python bench/smmcl.py`, this file's folder comes first on sys.path and would shadow the `smmcl`
# package with this very file: drop it before importing the package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from smmcl.models import build_model  # noqa: E402

OFFICIAL = {"infer 480x640": 1.70, "infer 240x320": 0.376, "train B=2 480x640": 10.8}  # s, spec midpoints


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast inference")
    p.add_argument("--sizes", default="480x640,240x320", help="comma-separated HxW inference sizes")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks_smmcl.md"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    model = build_model(14).to(dev).eval()
    rows = []
    for h, w in (tuple(int(v) for v in hw.split("x")) for hw in a.sizes.split(",")):
        x = torch.randn(1, 3, h, w, device=dev)
        for dtype in (None, torch.bfloat16) if a.bf16 else (None,):

            def run(x=x, dtype=dtype):
                with (
                    torch.no_grad(),
                    torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None),
                ):
                    model(x, x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()

            s = _time(run, a.reps)
            name = f"infer {h}x{w}"
            prec = "bf16" if dtype else "fp32"
            ref = OFFICIAL.get(name) if dev.type == "cpu" and dtype is None else None
            rows.append((f"{name} {prec}", s, f"{ref / s:.2f}x" if ref else "-"))
            print(rows[-1], flush=True)
    if not a.skip_train:
        model.train()
        opt = torch.optim.AdamW(model.param_groups(), lr=6e-5, weight_decay=0.01)
        batch = {
            "rgb": torch.randn(2, 3, 480, 640, device=dev),
            "aux": torch.randn(2, 3, 480, 640, device=dev),
            "label": torch.randint(0, 14, (2, 480, 640), device=dev),
        }

        def step():
            loss = sum(model.training_step(batch).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        s = _time(step, max(1, a.reps - 1))
        rows.append(
            (
                "train B=2 480x640 fp32",
                s,
                f"{OFFICIAL['train B=2 480x640'] / s:.2f}x" if dev.type == "cpu" else "-",
            )
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lines = [
        "## SMMCL (MSCAN-B dual branch + LightHamHead, K = 14)",
        "",
        f"Device {dev} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"{a.threads} threads, best of {a.reps}, random weights, 1-min load average {os.getloadavg()[0]:.1f} at the end. Speed-up is against the official midpoints "
        "of the performance spec (measured there on an idle machine), NOT a side-by-side run: the official code "
        "is not part of the project. Peak RSS of the whole run: " + f"{rss:.1f} GB.",
        "",
        "| workload | s | speed-up vs official |",
        "|---|---|---|",
        *[f"| {n} | {s:.3f} | {r} |" for n, s, r in rows],
        "",
        "Removed waste: stage-1 fusion conv (unused by the decoder) is not computed; projectors are skipped at "
        "inference; NMF bases are drawn once per forward on CPU with no host syncs; no `.item()` in the loss.",
    ]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
