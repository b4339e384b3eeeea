"""The prepared GPU check: every CUDA path of the project on one GPU, in a few minutes.

For each paper a training step and an inference in fp32, bf16 and fp16 (fp16 only on CUDA), the fast
path against the reference (official) form on the same weights (outputs and gradients, tolerances
relative to the tensor's norm), GPU against CPU outputs on the same weights, throughput beside the
reference form with peak memory; then resume on the device through the engine, a one-rank process
group exercising every collective the code uses (NCCL on CUDA, gloo on CPU), two DDP ranks over gloo
on one device, and a CLI smoke of the training scripts with `-d`.

    python bench/gpu_check.py                       # on a GPU machine: docs/benchmarks_gpu.md + .json
    python bench/gpu_check.py --device cpu --quick  # the same code on CPU at tiny sizes (run in CI)

Every check is independent: a failure is recorded (with its error) and the others still run; the exit
status is 1 when any check failed. Tolerances: fp32 paths must agree to 1e-4 relative to the reference
norm (TF32 is switched off for the fp32 comparisons); bf16/fp16 outputs to 5e-2 of the fp32 output.
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
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

# Run as `python bench/gpu_check.py`, this folder comes first on sys.path; the packages live one up.
ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

FP32_TOL = 1e-4
LOWP_TOL = 5e-2


# ----------------------------------------------------------------------------------------------- helpers
def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (robust to magnitude; never per element)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def grads_rel(m1: torch.nn.Module, m2: torch.nn.Module) -> float:
    """Largest norm-relative difference between the gradients of two models with the same parameters."""
    worst = 0.0
    for (name, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        if p1.grad is None and p2.grad is None:
            continue
        if (p1.grad is None) != (p2.grad is None):
            raise AssertionError(f"gradient of {name} exists in only one form")
        if p2.grad.norm() > 0:
            worst = max(worst, rel(p1.grad, p2.grad))
    return worst


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], object], dev: torch.device, repeat: int) -> float:
    """Best wall time of `repeat` calls after one warm-up call."""
    fn()
    sync(dev)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - t)
    return best


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_mb(dev: torch.device) -> float | None:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return None


def precisions(dev: torch.device) -> list[str]:
    return ["fp32", "bf16", "fp16"] if dev.type == "cuda" else ["fp32", "bf16"]


def autocast(dev: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


class Ctx:
    def __init__(self, device: torch.device, quick: bool, repeat: int) -> None:
        self.dev, self.quick, self.repeat = device, quick, repeat
        self.cuda = device.type == "cuda"
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check-"))


CHECKS: list[tuple[str, Callable[[Ctx], dict]]] = []


def check(name: str) -> Callable:
    def deco(fn: Callable[[Ctx], dict]) -> Callable[[Ctx], dict]:
        CHECKS.append((name, fn))
        return fn

    return deco


# ------------------------------------------------------------------------------------------------ SMMCL
def _smmcl(fast: bool, ctx: Ctx, num_classes: int = 14):
    from smmcl.models import SegNeXtRGBXConfig, build_segnext_rgbx

    torch.manual_seed(0)
    arch = "mscan_t" if ctx.quick else "mscan_b"
    return build_segnext_rgbx(SegNeXtRGBXConfig(arch=arch, num_classes=num_classes, fast=fast)).to(ctx.dev)


@check("smmcl: fast vs reference, every precision")
def smmcl_parity(ctx: Ctx) -> dict:
    """One model switched between the two forms; NMF2D draws its bases per forward, so every forward
    is seeded alike."""
    hw = (64, 96) if ctx.quick else (240, 320)
    m = _smmcl(False, ctx)
    g = torch.Generator().manual_seed(1)
    rgb, aux = torch.rand(2, 3, *hw, generator=g).to(ctx.dev), torch.rand(2, 3, *hw, generator=g).to(ctx.dev)
    target = torch.randint(0, 14, (2, *hw), generator=g).to(ctx.dev)

    def logits(fast: bool, prec: str = "fp32") -> torch.Tensor:
        m.set_fast(fast)
        torch.manual_seed(7)
        with autocast(ctx.dev, prec):
            return m(rgb, aux).float()

    def grads(fast: bool, prec: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
        m.train()
        m.zero_grad(set_to_none=True)
        y = torch.nn.functional.interpolate(logits(fast, prec), size=hw, mode="bilinear")
        loss = torch.nn.functional.cross_entropy(y, target)
        loss.backward()
        flat = torch.cat([p.grad.flatten().float() for p in m.parameters() if p.grad is not None])
        return loss.detach(), flat

    out: dict = {}
    m.eval()
    with torch.no_grad():
        base = logits(False)
        out["logits_rel_fp32"] = rel(logits(True), base)
        for prec in precisions(ctx.dev)[1:]:
            y = logits(True, prec)
            expect(math_finite(y), f"non-finite {prec} logits")
            out[f"logits_rel_{prec}"] = rel(y, base)
    _, g_ref = grads(False)
    _, g_fast = grads(True)
    out["grads_rel_fp32"] = rel(g_fast, g_ref)
    for prec in precisions(ctx.dev)[1:]:
        loss, _ = grads(True, prec)
        expect(math_finite(loss), f"{prec} training loss is not finite")
        out[f"train_loss_{prec}"] = float(loss)
    expect(out["logits_rel_fp32"] < FP32_TOL, f"fast logits differ: {out['logits_rel_fp32']:.2e}")
    expect(out["grads_rel_fp32"] < 1e-3, f"fast gradients differ: {out['grads_rel_fp32']:.2e}")
    for prec in precisions(ctx.dev)[1:]:
        expect(out[f"logits_rel_{prec}"] < LOWP_TOL, f"{prec} logits off by {out[f'logits_rel_{prec}']:.2e}")
    return out


def math_finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t.detach()).all())


@check("smmcl: GPU vs CPU logits")
def smmcl_cpu_gpu(ctx: Ctx) -> dict:
    if not ctx.cuda:
        return {"status": "skip", "detail": "needs CUDA"}
    hw = (64, 96) if ctx.quick else (240, 320)
    m = _smmcl(True, ctx).eval()
    g = torch.Generator().manual_seed(2)
    rgb, aux = torch.rand(1, 3, *hw, generator=g), torch.rand(1, 3, *hw, generator=g)
    with torch.no_grad():
        torch.manual_seed(7)
        y_gpu = m(rgb.to(ctx.dev), aux.to(ctx.dev)).cpu()
        torch.manual_seed(7)
        y_cpu = m.cpu()(rgb, aux)
    out = {"logits_rel": rel(y_gpu, y_cpu)}
    expect(out["logits_rel"] < FP32_TOL, f"GPU logits differ from CPU: {out['logits_rel']:.2e}")
    return out


@check("smmcl: throughput 480x640 (inference, training B=2)")
def smmcl_speed(ctx: Ctx) -> dict:
    hw = (96, 128) if ctx.quick else (480, 640)
    out: dict = {"size": f"{hw[0]}x{hw[1]}"}
    for form, fast in (("reference", False), ("fast", True)):
        m = _smmcl(fast, ctx)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-5)
        x = torch.rand(1, 3, *hw, device=ctx.dev)
        xb = torch.rand(2, 3, *hw, device=ctx.dev)
        tb = torch.randint(0, 14, (2, *hw), device=ctx.dev)

        def infer(m=m, x=x, prec="fp32") -> None:
            with torch.no_grad(), autocast(ctx.dev, prec):
                m(x, x)

        def train(m=m, opt=opt, xb=xb, tb=tb, prec="fp32") -> None:
            opt.zero_grad(set_to_none=True)
            with autocast(ctx.dev, prec):
                y = torch.nn.functional.interpolate(m(xb, xb), size=hw, mode="bilinear").float()
            torch.nn.functional.cross_entropy(y, tb).backward()
            opt.step()

        for prec in precisions(ctx.dev):
            m.eval()
            reset_peak(ctx.dev)
            t = timed(lambda prec=prec: infer(prec=prec), ctx.dev, ctx.repeat)
            out[f"infer_{form}_{prec}_img_s"] = 1.0 / t
            out[f"infer_{form}_{prec}_peak_mb"] = peak_mb(ctx.dev)
            m.train()
            reset_peak(ctx.dev)
            t = timed(lambda prec=prec: train(prec=prec), ctx.dev, ctx.repeat)
            out[f"train_{form}_{prec}_img_s"] = 2.0 / t
            out[f"train_{form}_{prec}_peak_mb"] = peak_mb(ctx.dev)
    return out


# ------------------------------------------------------------------------------------------ SMCL object
def _synth(ctx: Ctx):
    from smcl.object.models.view_synthesizer import ViewSynthesizer, ViewSynthesizerConfig

    torch.manual_seed(0)
    width = 64 if ctx.quick else 512
    return ViewSynthesizer(ViewSynthesizerConfig(d_hidden=width)).to(ctx.dev)


def _synth_batch(ctx: Ctx, sb: int, n: int) -> dict:
    g = torch.Generator().manual_seed(3)
    o = torch.tensor([0.0, -2.7, 0.7]).expand(sb, n, 3)
    d = torch.nn.functional.normalize(
        torch.tensor([0.0, 1.0, -0.25]) + 0.2 * torch.randn(sb, n, 3, generator=g), dim=-1
    )
    nf = torch.tensor([1.2, 4.0]).expand(sb, n, 2)
    size = 64  # the encoder's input size
    batch = {
        "src_images": torch.rand(sb, 1, 3, size, size, generator=g),
        "src_poses": torch.eye(4).expand(sb, 1, 4, 4).contiguous(),
        "rays": torch.cat([o, d, nf], -1),
        "rgb": torch.rand(sb, n, 3, generator=g),
    }
    return {k: v.to(ctx.dev) for k, v in batch.items()}


@check("smcl object: fast vs reference MLP, autocast, GPU vs CPU, rays/s")
def smcl_object(ctx: Ctx) -> dict:
    model = _synth(ctx)
    sb, n = (2, 32) if ctx.quick else (4, 128)
    batch = _synth_batch(ctx, sb, n)
    out: dict = {}
    losses, grads = {}, {}
    for impl in ("reference", "fast"):
        model.set_mlp_impl(impl, dtype="float32")
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(5)  # the same stratified samples for both forms
        loss = sum(model.training_step(batch).values())
        loss.backward()
        losses[impl] = loss.detach()
        grads[impl] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    out["loss_rel_fast_vs_ref"] = rel(losses["fast"], losses["reference"])
    out["grads_rel_fast_vs_ref"] = rel(grads["fast"], grads["reference"])
    expect(
        out["grads_rel_fast_vs_ref"] < 1e-3, f"fast MLP gradients differ: {out['grads_rel_fast_vs_ref']:.2e}"
    )
    for prec in precisions(ctx.dev)[1:]:  # issue 15 #2: the fused MLP under autocast
        model.zero_grad(set_to_none=True)
        with autocast(ctx.dev, prec):
            loss = sum(model.training_step(batch).values())
        loss.float().backward()
        expect(math_finite(loss), f"{prec} loss not finite")
        out[f"train_loss_{prec}"] = float(loss)
    model.eval()
    rays = batch["rays"][:1]
    with torch.inference_mode():
        cond = model.encode(batch["src_images"][:1], batch["src_poses"][:1])
        out_dev = model.render_chunked(cond, rays)
    key = "rgb" if "rgb" in out_dev else sorted(out_dev)[0]
    rgb_dev = out_dev[key].float().cpu()
    if ctx.cuda:
        cpu_model = _synth(Ctx(torch.device("cpu"), ctx.quick, 1))
        cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        cpu_model.eval()
        with torch.inference_mode():
            c2 = cpu_model.encode(batch["src_images"][:1].cpu(), batch["src_poses"][:1].cpu())
            rgb_cpu = cpu_model.render_chunked(c2, rays.cpu())[key]
        out["render_rel_gpu_vs_cpu"] = rel(rgb_dev, rgb_cpu)
        expect(out["render_rel_gpu_vs_cpu"] < 1e-3, "GPU render differs from CPU")
    render_rays = _synth_batch(ctx, 1, 256 if ctx.quick else 4096)["rays"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    for impl in ("reference", "fast"):
        model.set_mlp_impl(impl, dtype="float32")

        def step() -> None:
            model.train()
            opt.zero_grad(set_to_none=True)
            sum(model.training_step(batch).values()).backward()
            opt.step()

        reset_peak(ctx.dev)
        out[f"train_{impl}_rays_s"] = sb * n / timed(step, ctx.dev, ctx.repeat)
        out[f"train_{impl}_peak_mb"] = peak_mb(ctx.dev)
        model.eval()

        def render() -> None:
            with torch.inference_mode():
                model.render_chunked(
                    model.encode(batch["src_images"][:1], batch["src_poses"][:1]), render_rays
                )

        reset_peak(ctx.dev)
        out[f"render_{impl}_rays_s"] = render_rays.shape[1] / timed(render, ctx.dev, ctx.repeat)
        out[f"render_{impl}_peak_mb"] = peak_mb(ctx.dev)
    return out


# ------------------------------------------------------------------------------------------- SMCL scene
def _scene(ctx: Ctx, n_points: int, side: int):
    from smcl.scene.data import get_rays_papr
    from smcl.scene.models.rmsa import RMSAConfig
    from smcl.scene.models.scene_model import SceneModel, SceneModelConfig

    g = torch.Generator().manual_seed(0)
    pts = torch.randn(n_points, 3, generator=g)
    pts = (
        pts
        / pts.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        * torch.rand(n_points, 1, generator=g) ** 0.3
        * 12
    )
    torch.manual_seed(0)
    model = SceneModel(SceneModelConfig(rmsa=RMSAConfig(), select_k=20), pts, torch.randn(n_points, 64) * 0.1)
    with torch.no_grad():
        model.points_influ_scores.uniform_(0, 1)
    c2w = torch.eye(4)
    c2w[2, 3] = 4.0
    o, d = get_rays_papr(800, 800, torch.tensor([1111.0, 1111.0]), c2w, 10.0)
    s = slice(400 - side // 2, 400 - side // 2 + side)
    return model.to(ctx.dev), o[s, s].reshape(-1, 3).to(ctx.dev), d[s, s].reshape(-1, 3).to(ctx.dev)


def _scene_reference(model, ro: torch.Tensor, rd: torch.Tensor):
    from smcl.scene.models.rmsa import perpendicular_distance

    with torch.no_grad():
        idx = perpendicular_distance(model.points.detach(), ro, rd).topk(20, dim=1, largest=False).indices
    return model.proximity_attn.forward_reference(
        model.points[idx], model.pc_feats[idx], model.points_influ_scores[idx, 0], ro, rd, 5.0
    )


@check("smcl scene: R-MSA fast vs reference, autocast top-k, GPU vs CPU, rays/s at 30k points")
def smcl_scene(ctx: Ctx) -> dict:
    n_points, side = (2000, 24) if ctx.quick else (30000, 100)
    model, ro, rd = _scene(ctx, n_points, side)
    out: dict = {"points": n_points, "rays": side * side}
    sub = slice(0, 256)
    feat, _ = model.ray_features(ro[sub], rd[sub])
    ref, _ = _scene_reference(model, ro[sub], rd[sub])
    out["features_rel_fast_vs_ref"] = rel(feat, ref)
    expect(out["features_rel_fast_vs_ref"] < FP32_TOL, "R-MSA fast features differ from the reference")
    model.zero_grad(set_to_none=True)
    feat.square().mean().backward()
    g_fast = model.pc_feats.grad.clone()
    model.zero_grad(set_to_none=True)
    ref.square().mean().backward()
    out["grads_rel_fast_vs_ref"] = rel(g_fast, model.pc_feats.grad)
    expect(out["grads_rel_fast_vs_ref"] < 1e-3, "R-MSA fast gradients differ")
    for prec in precisions(ctx.dev)[1:]:
        with torch.no_grad(), autocast(ctx.dev, prec):
            f_lp, _ = model.ray_features(ro[sub], rd[sub])
        out[f"features_rel_{prec}"] = rel(f_lp.float(), ref)
        expect(
            out[f"features_rel_{prec}"] < LOWP_TOL,
            f"{prec} features off by {out[f'features_rel_{prec}']:.2e}",
        )
    if ctx.cuda:
        cpu_model, cro, crd = _scene(Ctx(torch.device("cpu"), ctx.quick, 1), n_points, side)
        with torch.no_grad():
            f_cpu, _ = cpu_model.ray_features(cro[sub], crd[sub])
            f_gpu, _ = model.ray_features(ro[sub], rd[sub])
        out["features_rel_gpu_vs_cpu"] = rel(f_gpu, f_cpu)
        expect(out["features_rel_gpu_vs_cpu"] < 1e-3, "GPU features differ from CPU")
    for prec in precisions(ctx.dev):  # a training forward/backward of the renderer core per precision
        model.zero_grad(set_to_none=True)
        with autocast(ctx.dev, prec):
            f, a_bkg = model.ray_features(ro[sub], rd[sub])
            loss = f.float().square().mean() + a_bkg.float().mean()
        loss.backward()
        expect(math_finite(loss) and math_finite(model.pc_feats.grad), f"{prec} scene step not finite")
        out[f"train_loss_{prec}"] = float(loss)
    for form in ("reference", "fast"):
        fn = _scene_reference if form == "reference" else (lambda m, o, d: m.ray_features(o, d))

        def fwd(fn=fn) -> None:
            with torch.no_grad():
                fn(model, ro, rd)

        reset_peak(ctx.dev)
        out[f"forward_{form}_rays_s"] = ro.shape[0] / timed(fwd, ctx.dev, ctx.repeat)
        out[f"forward_{form}_peak_mb"] = peak_mb(ctx.dev)
    return out


# --------------------------------------------------------------------------------------------- NVS-SQA
@check("nvs_sqa: features GPU vs CPU, NSS/min")
def nvs_sqa(ctx: Ctx) -> dict:
    import numpy as np

    from nvs_sqa.assessor import QualityAssessor
    from nvs_sqa.models import SequenceModel, SequenceModelConfig
    from nvs_sqa.ridge import RidgeReadout

    torch.manual_seed(0)
    try:
        from nvs_sqa.models import build_model

        model, weights = build_model("nvs_sqa", weights="official"), "official"
    except Exception:  # weights not fetched on this machine: random weights test the same code paths
        model, weights = SequenceModel(SequenceModelConfig()), "random"
    model.eval()
    ridge = RidgeReadout(coef=np.zeros(384, np.float32), intercept=0.0)
    n, h, w = (6, 128, 192) if ctx.quick else (120, 540, 960)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    out: dict = {"weights": weights, "frames": f"{n}x{h}x{w}"}
    qa = QualityAssessor(device=ctx.dev, model=model, ridge=ridge)
    feat = qa.features_from_stream(iter(frames))
    if ctx.cuda:
        import copy

        qa_cpu = QualityAssessor(device="cpu", model=copy.deepcopy(model).cpu(), ridge=ridge)
        out["features_rel_gpu_vs_cpu"] = rel(
            torch.from_numpy(feat), torch.from_numpy(qa_cpu.features_from_stream(iter(frames[:n])))
        )
        expect(out["features_rel_gpu_vs_cpu"] < 1e-3, "GPU features differ from CPU")
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255).to(ctx.dev)

    def reference() -> torch.Tensor:  # the official form: unfolded BatchNorm, NCHW, all frames at once
        with torch.no_grad():
            return model.forward_tokens(model.encode_views(x).unsqueeze(1))[0]

    out["features_rel_fast_vs_ref"] = rel(torch.from_numpy(feat), reference())
    expect(out["features_rel_fast_vs_ref"] < FP32_TOL, "folded/chunked features differ from the reference")
    for form, fn in (("reference", reference), ("fast", lambda: qa.features_from_stream(iter(frames)))):
        reset_peak(ctx.dev)
        out[f"{form}_nss_per_min"] = 60.0 / timed(fn, ctx.dev, max(1, ctx.repeat - 1))
        out[f"{form}_peak_mb"] = peak_mb(ctx.dev)
    seq = x[: min(n, 4)].unsqueeze(0)  # one training forward/backward per precision (B=1, 4 frames)
    model.train()
    for prec in precisions(ctx.dev):
        model.zero_grad(set_to_none=True)
        with autocast(ctx.dev, prec):
            loss = model(seq).float().square().mean()
        loss.backward()
        expect(math_finite(loss), f"{prec} NVS-SQA training loss not finite")
        out[f"train_loss_{prec}"] = float(loss)
    model.eval()
    return out


# ------------------------------------------------------------------------------------- engine and DDP
class _Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))

    def training_step(self, batch: dict) -> dict:
        x = batch["x"]
        noise = torch.randn_like(x) * 0.01  # RNG inside the step: resume must restore it
        return {"mse": (self.net(x + noise) - batch["y"]).square().mean()}


def _toy_data(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(16, 8, generator=g)
    return {"x": x, "y": x.sum(1, keepdim=True)}


@check("engine: resume on the device is exact")
def resume(ctx: Ctx) -> dict:
    from common.engine import TrainConfig, Trainer

    devices = "cpu" if not ctx.cuda else str(ctx.dev.index or 0)
    out: dict = {}

    def run(out_dir: Path, max_steps: int, resume: str | None, precision: str) -> torch.nn.Module:
        torch.manual_seed(0)
        cfg = TrainConfig(
            max_steps=max_steps, lr=1e-2, out_dir=str(out_dir), precision=precision, ckpt_every=2,
            keep_last=0, log_every=0, tensorboard=False, progress=False,
        )  # fmt: skip
        return Trainer(cfg, _Toy(), _toy_data, devices=devices, resume=resume).fit()

    for prec in precisions(ctx.dev):
        a = run(ctx.tmp / f"full-{prec}", 4, None, prec)
        run(ctx.tmp / f"part-{prec}", 2, None, prec)
        b = run(
            ctx.tmp / f"part-{prec}",
            4,
            str(ctx.tmp / f"part-{prec}" / "checkpoints" / "step-00000002.pth"),
            prec,
        )
        diff = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))
        out[f"max_param_diff_{prec}"] = diff
        expect(diff == 0.0, f"{prec} resume not bit-exact (max diff {diff:.3e})")
    return out


WORKER_COLLECTIVES = r"""
import os, sys, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[1])
from common.distributed import init_distributed, barrier, broadcast_from_rank0, cleanup_distributed
info = init_distributed(sys.argv[2])
if not dist.is_initialized():  # the code skips the group for one process; the check wants one anyway
    if info.device.type == "cuda":
        torch.cuda.set_device(info.device)
    dist.init_process_group("nccl" if info.device.type == "cuda" else "gloo")
t = torch.arange(4.0, device=info.device) + info.rank
dist.all_reduce(t)
b = broadcast_from_rank0(torch.full((3,), float(info.rank), device=info.device))
objs = [None] * info.world_size
dist.all_gather_object(objs, {"rank": info.rank})
gathered = [torch.zeros(2, device=info.device) for _ in range(info.world_size)]
dist.all_gather(gathered, torch.full((2,), float(info.rank), device=info.device))
barrier()
ws = info.world_size
ok = (torch.allclose(t.cpu(), torch.arange(4.0) * ws + sum(range(ws))) and float(b.sum()) == 0.0
      and [o["rank"] for o in objs] == list(range(ws)) and [float(g[0]) for g in gathered] == list(map(float, range(ws))))
print("COLLECTIVES_OK" if ok else "COLLECTIVES_BAD", dist.get_backend(), flush=True)
cleanup_distributed()
"""

WORKER_DDP = r"""
import os, sys, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
dist.init_process_group("gloo")
rank = dist.get_rank()
dev = torch.device(sys.argv[1])
torch.manual_seed(0)
model = torch.nn.Linear(4, 2).to(dev)
ddp = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
x = torch.full((3, 4), float(rank + 1), device=dev)
ddp(x).sum().backward()
g = model.weight.grad.detach().cpu().clone()
# hand-derived: d/dW sum(Wx+b) = sum over rows of x = 3 * (rank + 1) per entry; DDP averages ranks 1 and 2
ok = torch.allclose(g, torch.full_like(g, 3 * 1.5))
print("DDP_OK" if ok else f"DDP_BAD {g}", flush=True)
dist.barrier()  # neither rank tears gloo down while the other still uses it (SIGABRT seen under load)
dist.destroy_process_group()
"""


def _torchrun(ctx: Ctx, code: str, nproc: int, args: list[str]) -> str:
    script = ctx.tmp / f"worker_{abs(hash(code))}.py"
    script.write_text(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(script), *args]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    if res.returncode != 0:
        raise AssertionError(f"torchrun failed (rc {res.returncode}): {res.stderr[-800:]}")
    return res.stdout


@check("distributed: one-rank group with every collective (NCCL on CUDA)")
def collectives(ctx: Ctx) -> dict:
    spec = "0" if ctx.cuda else "cpu"
    text = _torchrun(ctx, WORKER_COLLECTIVES, 1, [str(ROOT), spec])
    expect("COLLECTIVES_OK" in text, f"collectives gave wrong results: {text[-300:]}")
    return {
        "backend": text.split("COLLECTIVES_OK")[-1].strip().split()[0] if "COLLECTIVES_OK" in text else "?"
    }


@check("distributed: two DDP ranks on one device over gloo")
def ddp_two_ranks(ctx: Ctx) -> dict:
    text = _torchrun(ctx, WORKER_DDP, 2, [str(ctx.dev) if ctx.cuda else "cpu"])
    expect(text.count("DDP_OK") == 2, f"DDP gradients wrong: {text[-300:]}")
    return {"ranks": 2}


@check("scripts: CLI smoke of train_*/eval_* with -d")
def cli_smoke(ctx: Ctx) -> dict:
    """Each paper's tiny config trained for 2 steps with -d, then evaluated from the checkpoint alone."""
    from common.synthetic import write_nerf_synthetic, write_nmr_dataset, write_nss_renders, write_rgbx_scenes

    data = ctx.tmp / "data"
    write_rgbx_scenes(data / "synthetic_rgbx", seed=0)
    nmr = write_nmr_dataset(data / "nmr", n_objects=5, image_size=64, seed=0)
    scene = write_nerf_synthetic(data / "scene", n_train=4, n_val=1, n_test=2, size=16)
    write_nss_renders(data / "nss", size=(96, 128), seed=0)  # NVS-SQA frames: >= 69 px
    dev = str(ctx.dev.index or 0) if ctx.cuda else "cpu"
    env = {**os.environ, "DATA_ROOT": str(data), "OMP_NUM_THREADS": "2"}
    runs = ctx.tmp / "runs"
    scene_sets = [
        "data.factor=1",
        "data.patch=[16,16]",
        "train.max_steps=2",
        "lr.warmup=1",
        "model.init_num=500",
    ]
    jobs = [
        ("train_smmcl", ["scripts/train_smmcl.py", "-c", "conf/smmcl/tiny.yaml", "-o", str(runs / "smmcl")]),
        ("eval_smmcl", ["scripts/eval_smmcl.py", "--checkpoint", "LAST:smmcl", "--report", str(runs / "smmcl.json")]),
        ("train_smcl", ["scripts/train_smcl.py", "-c", "conf/smcl/object_tiny.yaml", "-D", str(nmr),
                        "-o", str(runs / "object"), "--set", "data.pixel_centers=true"]),
        ("eval_smcl", ["scripts/eval_smcl.py", "--checkpoint", "LAST:object", "-O", str(runs / "object_eval")]),
        ("train_smcl_scene", ["scripts/train_smcl_scene.py", "-c", "conf/smcl/scene_tiny.yaml", "-o",
                              str(runs / "scene"), "--set", f"data.root={scene}",
                              *[x for s in scene_sets for x in ("--set", s)]]),
        ("test_smcl_scene", ["scripts/test_smcl_scene.py", "--checkpoint", "LAST:scene", "--report",
                             str(runs / "scene.json"), "--set", "eval_lpips=[]"]),  # 16 px: too small for LPIPS
        ("train_nvs_sqa", ["scripts/train_nvs_sqa.py", "-c", "conf/nvs_sqa/tiny.yaml", "-o", str(runs / "nvs")]),
    ]  # fmt: skip
    out: dict = {}
    for name, argv in jobs:
        argv = [a if not a.startswith("LAST:") else str(_last_checkpoint(runs / a[5:])) for a in argv]
        t = time.perf_counter()
        res = subprocess.run(
            [sys.executable, *argv, "-d", dev], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        out[f"{name}_s"] = time.perf_counter() - t
        expect(res.returncode == 0, f"{name} failed (rc {res.returncode}): {res.stderr[-600:]}")
    for report in ("smmcl.json", "scene.json", "object_eval/eval.json"):
        expect(
            json.loads((runs / report).read_text())["schema"] == "tri-vision.eval/1",
            f"{report}: not a report",
        )
    return out


def _last_checkpoint(run: Path) -> Path:
    found = sorted((run / "checkpoints").glob("*.pth"), key=lambda p: p.stat().st_mtime)
    expect(bool(found), f"no checkpoint in {run}")
    return found[-1]


# ------------------------------------------------------------------------------------------------ main
def write_markdown(path: Path, meta: dict, results: dict) -> None:
    lines = [
        "# GPU check",
        "",
        f"Written by `python bench/gpu_check.py` on {meta['created']}: device {meta['device']} ({meta['device_name']}), "
        f"torch {meta['torch']}, CUDA {meta['cuda']}, quick={meta['quick']}, repeat={meta['repeat']}. "
        "Relative differences are ||a - b|| / ||b|| (float64); throughput is the best of the timed repeats "
        "after a warm-up; peak memory is torch's max allocated (CUDA only).",
        "",
        "| check | status | seconds | figures |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        figs = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in r.items()
            if k not in ("status", "seconds", "detail", "error") and v is not None
        )
        why = r.get("error") or r.get("detail") or ""
        lines.append(f"| {name} | {r['status']} {why[:200]} | {r['seconds']:.1f} | {figs} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (for CPU/CI): the same code paths")
    p.add_argument("--repeat", type=int, default=None, help="timed repeats per measure (default 3, quick 1)")
    p.add_argument("--only", default="", help="comma-separated substrings: run only the matching checks")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_gpu.md", help="markdown report")
    p.add_argument("--json", type=Path, default=None, help="JSON results (default: beside --out)")
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(
            "error: --device cuda asked but CUDA is not available (use --device cpu --quick)", file=sys.stderr
        )
        return 2
    # TF32 off: the fp32 comparisons above are against fp32 references (the project's policy).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ctx = Ctx(dev, a.quick, a.repeat or (1 if a.quick else 3))
    meta = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else (platform.processor() or "cpu"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "quick": a.quick,
        "repeat": ctx.repeat,
    }
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    results: dict[str, dict] = {}
    for name, fn in CHECKS:
        if only and not any(s in name for s in only):
            continue
        t = time.perf_counter()
        try:
            r = fn(ctx) or {}
            r.setdefault("status", "ok")
        except Exception as err:  # recorded; the other checks still run
            r = {"status": "FAIL", "error": f"{type(err).__name__}: {err}".replace("\n", " ")}
            traceback.print_exc()
        r["seconds"] = time.perf_counter() - t
        results[name] = r
        print(f"[{r['status']:>4}] {name} ({r['seconds']:.1f} s)", flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    write_markdown(a.out, meta, results)
    json_path = a.json or a.out.with_suffix(".json")
    json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str) + "\n")
    print(f"wrote {a.out} and {json_path}")
    return 1 if any(r["status"] == "FAIL" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
