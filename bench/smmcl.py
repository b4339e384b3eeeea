"""SMMCL speed and memory benchmark (MSCAN-B dual branch + LightHamHead, K = 14, random weights).

Measures, each configuration in its own subprocess (so peak RSS is per configuration):
  * inference, 1 image, at 240x320 and 480x640 (eval, no_grad);
  * one training step, B=2 at 480x640 (forward + CE + contrast + backward + AdamW);
for the `reference` path (our model with every optimisation off: the straightforward, official form, run
side by side in the same invocation) and the `fast` path (channels_last, GEMM 1x1 convs, NHWC NMF2D;
training also with activation checkpointing), in fp32 and bf16 autocast. It also checks that the fast path
gives the reference logits (max abs difference) and writes docs/benchmarks_smmcl.md with the speed-up against
the reference row and the ratio to the official figures of the performance spec.

Quick check (240x320 only, one round; a minute or two on an idle 2-core machine):
    python bench/smmcl.py --quick --rounds 1
Full run (the figures in docs/benchmarks_smmcl.md; a few minutes on an idle 2-core machine):
    python bench/smmcl.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

# Run as `python bench/smmcl.py`, this file's folder comes first on sys.path and would shadow the `smmcl`
# package with this very file: drop it before importing the package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import torch  # noqa: E402

# Official SMMCL on the project's machine type, 2 threads, fp32, idle (performance spec): s, GB
OFFICIAL = {
    "infer 240x320": (0.376, None),
    "infer 480x640": (1.70, None),  # 1.64-1.76
    "train B=2 480x640": (10.8, 9.3),  # 10.4-11.2 s, 9.3 GB peak RSS
}


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _model(path: str, checkpoint_stages: tuple[int, ...] = ()):
    from smmcl.models import SegNeXtRGBXConfig, build_segnext_rgbx

    torch.manual_seed(0)
    cfg = SegNeXtRGBXConfig(num_classes=14, fast=path == "fast", checkpoint_stages=checkpoint_stages)
    return build_segnext_rgbx(cfg)


def _autocast(dev: torch.device, precision: str):
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def worker(job: dict) -> dict:
    """Run one configuration in this process and return its measurements."""
    torch.set_num_threads(job["threads"])
    if job.get("reuse"):
        from common.runtime import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("keep_freed_memory() is not available on this platform")
    dev = torch.device(job["device"])
    if job["kind"] == "check":
        return _check(job, dev)
    if job["kind"] == "ab":
        return _interleaved(job, dev)
    model = _model(job["path"], tuple(job.get("ckpt", ()))).to(dev)
    gen = torch.Generator().manual_seed(1)
    h, w = job["size"]
    times = []
    if job["kind"] == "infer":
        model.eval()
        rgb = torch.randn(1, 3, h, w, generator=gen).to(dev)
        aux = torch.randn(1, 3, h, w, generator=gen).to(dev)

        def run() -> None:
            with torch.no_grad(), _autocast(dev, job["precision"]):
                model(rgb, aux)
            _sync(dev)

    else:
        model.train()
        b = job["batch"]
        opt = torch.optim.AdamW(model.param_groups(), lr=6e-5, weight_decay=0.01)
        coarse = torch.randint(0, 14, (b, 1, h // 32, w // 32), generator=gen).float()
        batch = {
            "rgb": torch.randn(b, 3, h, w, generator=gen).to(dev),
            "aux": torch.randn(b, 3, h, w, generator=gen).to(dev),
            "label": torch.nn.functional.interpolate(coarse, size=(h, w))[:, 0].long().to(dev),
        }

        def run() -> None:
            opt.zero_grad(set_to_none=True)  # before the forward: old gradients do not add to the peak
            with _autocast(dev, job["precision"]):
                loss = sum(model.training_step(batch).values())
            loss.backward()
            opt.step()
            _sync(dev)

    for i in range(job["warmup"] + job["reps"]):
        t = time.perf_counter()
        run()
        if i >= job["warmup"]:
            times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else _peak_rss_gb()
    return {"s": min(times), "all": times, "peak_gb": peak}


def _check(job: dict, dev: torch.device) -> dict:
    """Fast vs reference logits on the same weights and inputs (eval, seeded NMF bases)."""
    model = _model("reference").to(dev).eval()
    gen = torch.Generator().manual_seed(1)
    h, w = job["size"]
    rgb = torch.randn(1, 3, h, w, generator=gen).to(dev)
    aux = torch.randn(1, 3, h, w, generator=gen).to(dev)
    out = {}
    for name, fast, precision in (("ref", False, "fp32"), ("fast", True, "fp32"), ("bf16", True, "bf16")):
        model.set_fast(fast)
        torch.manual_seed(7)
        with torch.no_grad(), _autocast(dev, precision):
            out[name] = model(rgb, aux).float()
    ref = out["ref"]
    model.set_fast(False)  # noise floor: the reference itself with another thread count (other GEMM blocking)
    torch.set_num_threads(1 if job["threads"] > 1 else 2)
    torch.manual_seed(7)
    with torch.no_grad():
        floor = (model(rgb, aux) - ref).abs().max().item()
    torch.set_num_threads(job["threads"])
    return {
        "reference_threads_floor": floor,
        "max_abs_logit": ref.abs().max().item(),
        "fast_fp32": (out["fast"] - ref).abs().max().item(),
        "fast_bf16": (out["bf16"] - ref).abs().max().item(),
        "bf16_argmax_agree": (out["bf16"].argmax(1) == ref.argmax(1)).float().mean().item(),
    }


def _interleaved(job: dict, dev: torch.device) -> dict:
    """Inference of reference fp32, fast fp32 and fast bf16 alternating in ONE process on one model, so that
    load changes on a shared machine hit all three alike; best time of each."""
    model = _model("reference").to(dev).eval()
    gen = torch.Generator().manual_seed(1)
    h, w = job["size"]
    rgb = torch.randn(1, 3, h, w, generator=gen).to(dev)
    aux = torch.randn(1, 3, h, w, generator=gen).to(dev)
    configs = {"reference fp32": (False, "fp32"), "fast fp32": (True, "fp32"), "fast bf16": (True, "bf16")}
    best = dict.fromkeys(configs, float("inf"))
    for rep in range(job["reps"] + 1):
        for name, (fast, precision) in configs.items():
            model.set_fast(fast)
            t = time.perf_counter()
            with torch.no_grad(), _autocast(dev, precision):
                model(rgb, aux)
            _sync(dev)
            if rep:  # the first round is the warm-up
                best[name] = min(best[name], time.perf_counter() - t)
    return best


def _spawn(job: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]))
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(a: argparse.Namespace) -> list[dict]:
    base = {"threads": a.threads, "device": a.device, "warmup": 1}
    jobs = []
    sizes = [(240, 320)] if a.quick else [(240, 320), (480, 640)]
    for h, w in sizes:
        for path, precision, reuse in (
            ("reference", "fp32", False),
            ("reference", "fp32", True),
            ("fast", "fp32", False),
            ("fast", "fp32", True),
            ("fast", "bf16", True),
        ):
            jobs.append(
                {
                    **base,
                    "kind": "infer",
                    "size": [h, w],
                    "path": path,
                    "precision": precision,
                    "reuse": reuse,
                    "reps": a.reps,
                }
            )
    if not a.skip_train:
        th, tw = (240, 320) if a.quick else (480, 640)
        for path, precision, ckpt, reuse in (
            ("reference", "fp32", [], False),
            ("fast", "fp32", [], False),
            ("fast", "fp32", [], True),
            ("fast", "fp32", a.ckpt, True),
            ("fast", "bf16", a.ckpt, True),
        ):
            jobs.append(
                {
                    **base,
                    "kind": "train",
                    "size": [th, tw],
                    "batch": 2,
                    "path": path,
                    "precision": precision,
                    "ckpt": ckpt,
                    "reuse": reuse,
                    "reps": a.train_reps,
                }
            )
    return jobs


def _label(job: dict) -> str:
    h, w = job["size"]
    return f"infer {h}x{w}" if job["kind"] == "infer" else f"train B={job['batch']} {h}x{w}"


def report(jobs: list[dict], results: list[dict], check: dict, a: argparse.Namespace, wall: float) -> str:
    ref_s, ref_mem = {}, {}
    for job, res in zip(jobs, results):
        if job["path"] == "reference" and not job.get("reuse") and "s" in res:
            ref_s[_label(job)], ref_mem[_label(job)] = res["s"], res["peak_gb"]
    rows = []
    for job, res in zip(jobs, results):
        name = _label(job)
        path = job["path"] + (f" + checkpoint stages {job['ckpt']}" if job.get("ckpt") else "")
        path += " + freed-memory reuse" if job.get("reuse") else ""
        if "error" in res:
            rows.append(f"| {name} | {path} | {job['precision']} | {res['error']} | | | | |")
            continue
        official = OFFICIAL.get(name, (None, None)) if a.device == "cpu" else (None, None)
        speed = f"{ref_s[name] / res['s']:.2f}x" if name in ref_s else "-"
        vs_off = f"{official[0] / res['s']:.2f}x" if official[0] else "-"
        mem_ratio = f"{res['peak_gb'] / ref_mem[name]:.2f}" if name in ref_mem else "-"
        rows.append(
            f"| {name} | {path} | {job['precision']} | {res['s']:.3f} | {speed} | {vs_off} | "
            f"{res['peak_gb']:.2f} | {mem_ratio} |"
        )
    mem_kind = "peak CUDA memory allocated" if a.device != "cpu" else "peak RSS of the process"
    chk = (
        f"Logit check at {check.get('size')} (same weights and inputs, seeded NMF bases): max |fast fp32 - "
        f"reference| = {check['fast_fp32']:.2e}, max |fast bf16 - reference| = {check['fast_bf16']:.2e} "
        f"(max |logit| {check['max_abs_logit']:.2f}; bf16 argmax agreement {100 * check['bf16_argmax_agree']:.2f} %). "
        f"Float32 noise floor: the reference path itself with a different thread count differs by "
        f"{check['reference_threads_floor']:.2e}."
        if "fast_fp32" in check
        else f"Logit check failed: {check.get('error')}"
    )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "## SMMCL (MSCAN-B dual branch + LightHamHead, K = 14)",
            "",
            f"`python bench/smmcl.py{' --quick' if a.quick else ''}` on {platform.node() or 'this machine'} "
            f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}), device {a.device}, "
            f"torch {torch.__version__}, {a.threads} threads, {when}; random weights; each row in its own "
            f"process, {a.rounds} alternating rounds, best of {a.rounds} x {a.reps} (inference) / "
            f"{a.rounds} x {a.train_reps} (training) timed runs, each process after 1 warm-up. "
            f"1-min load average {a.load_start:.1f} at the start and {a.load_end:.1f} at the end "
            f"(total {wall:.0f} s). `reference` is our own model with every optimisation off (the "
            "straightforward form of the official code, `SegNeXtRGBXConfig(fast=False)`), run side by side in "
            "this invocation; `vs official` divides the official figures of the performance spec (idle machine, "
            "2 threads, fp32: 0.376 s, 1.64-1.76 s, 10.4-11.2 s and 9.3 GB) by ours and is only meaningful "
            f"on an idle machine. Memory: {mem_kind}.",
            "",
            "| workload | path | precision | s | speed-up vs reference | vs official | peak GB | memory vs reference |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Inference with the three variants alternating in one process with glibc's default allocator "
            "(same model, same load; best of "
            f"{a.reps} after a warm-up round); this is the robust comparison on a shared machine:",
            "",
            "| size | reference fp32 s | fast fp32 s | fast bf16 s | fast fp32 speed-up | fast bf16 speed-up |",
            "|---|---|---|---|---|---|",
            *[
                f"| {size} | {r['reference fp32']:.3f} | {r['fast fp32']:.3f} | {r['fast bf16']:.3f} | "
                f"{r['reference fp32'] / r['fast fp32']:.2f}x | {r['reference fp32'] / r['fast bf16']:.2f}x |"
                if "fast fp32" in r
                else f"| {size} | {r.get('error')} | | | | |"
                for size, r in a.interleaved.items()
            ],
            "",
            chk,
            "",
            "`freed-memory reuse` = `common.runtime.keep_freed_memory()`, which every script of this code base "
            "calls at start-up: glibc otherwise unmaps each freed buffer above 32 MB and the next forward "
            "page-faults it in again (about 280k minor faults per 480x640 forward); the official code runs with "
            "glibc's default, as the `reference` rows without it do. "
            "Optimisations of the fast path (state_dict unchanged, so official checkpoints load): channels_last "
            "execution (oneDNN's NHWC depthwise kernels; the 1x21 strip convs lose their 4x penalty against the "
            "21x1 twins and give bit-identical results), 1x1 convs as GEMMs on the NHWC view, a custom backward for "
            "the 1xk strip and 5x5 depthwise convs (oneDNN's depthwise backward is several times slower there), "
            "NMF2D on the NHWC "
            "token view in fp32 (also under autocast), projectors skipped at inference, the unused stage-1 fusion "
            "conv not computed, no host syncs in the loss; training: optional activation checkpointing of the "
            "MSCAN blocks (`model.checkpoint_stages`), gradients set to None; bf16 = `torch.autocast` "
            "(`train.precision: bf16`, `eval.precision: bf16`).",
            "",
            "Why fp32 stops near 1.3x (torch.profiler, fast path, inference 240x320, 1 thread, 2026-11-23): the "
            "1x1 GEMMs (`addmm`) take 55 % of the time, the depthwise and strided convs 19 %, GELU 8 %, copies 3 %, "
            "bmm (NMF2D) 3 %, adds/muls/BatchNorm 4 %. The GEMMs already run at the machine's fp32 rate, so even "
            "with every other op free the fast path could gain only about 1.25x more. Tried and left out: "
            "torch.compile of backbone + decoder for inference (1.49x vs reference against 1.39x for the fast "
            "path in the same process, but logits off by 2.2e-5 and 2.5 min of compiling per input size) and for "
            "training (17 min to compile at 240x320, then no faster than eager).",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="240x320 only (inference and a B=2 training step)")
    p.add_argument("--reps", type=int, default=3, help="timed inference runs per configuration")
    p.add_argument("--train-reps", type=int, default=1, help="timed training steps per configuration")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds over all configurations")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument(
        "--ckpt",
        type=lambda s: [int(v) for v in s.split(",") if v],
        default=[1, 2, 3],
        help="MSCAN stages to checkpoint in the memory-saving training rows (default 1,2,3)",
    )
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds allowed per configuration")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks_smmcl.md"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return
    start, a.load_start = time.perf_counter(), os.getloadavg()[0]
    jobs = plan(a)
    rounds: list[list[dict]] = [[] for _ in jobs]
    for r in range(a.rounds):  # alternate the configurations, so load changes hit all of them alike
        for job, got in zip(jobs, rounds):
            got.append(_spawn(job, a.timeout))
            print(f"round {r + 1}:", _label(job), job["path"], job["precision"], job.get("ckpt", ""), got[-1])
    results = []
    for got in rounds:
        ok = [g for g in got if "s" in g]
        if not ok:
            results.append(got[-1])
            continue
        best = min(ok, key=lambda g: g["s"])
        results.append({**best, "peak_gb": max(g["peak_gb"] for g in ok), "runs": [g["s"] for g in ok]})
    interleaved = {}
    for h, w in [(240, 320)] if a.quick else [(240, 320), (480, 640)]:
        ab = {"kind": "ab", "threads": a.threads, "device": a.device, "size": [h, w], "reps": a.reps}
        interleaved[f"{h}x{w}"] = _spawn(ab, a.timeout)
        print("interleaved", h, w, interleaved[f"{h}x{w}"], flush=True)
    a.interleaved = interleaved
    check_job = {"kind": "check", "threads": a.threads, "device": a.device, "size": [240, 320]}
    check = _spawn(check_job, a.timeout)
    check["size"] = "240x320"
    print("check", check, flush=True)
    a.load_end = os.getloadavg()[0]
    text = report(jobs, results, check, a, time.perf_counter() - start)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
