"""CPU demo of SMCL object level: synthetic mirror-symmetric objects -> Mir-180 -> encoder pretraining ->
view-synthesizer training -> PSNR/SSIM/LPIPS on held-out objects vs simple baselines, orbit GIF.

The data come from common.synthetic's NMR writer (rays through pixel centres), loaded with
``pixel_centers=True`` so that pixelNeRF's integer-pixel rays hit the pixels the writer rendered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from common.callbacks import Callback
from common.engine import TrainConfig, Trainer
from common.metrics.image import psnr
from common.schedules import ScheduleConfig, lr_at
from common.synthetic import write_nmr_dataset
from common.viz import save_gif, to_uint8
from smcl.object.data.mir180 import Mir180Dataset, build_mir180
from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig
from smcl.object.experiment import EncoderPretrainer, PretrainLossConfig, RaySampler, SynthDataConfig
from smcl.object.metrics import official_metrics
from smcl.object.models.ffc_encoder import DualDomainEncoderConfig
from smcl.object.models.view_synthesizer import ViewSynthesizer, ViewSynthesizerConfig
from smcl.object.render import render_views


@dataclass(frozen=True)
class DemoConfig:
    n_objects: int = 48
    image_size: int = 32
    # objects scaled about the origin in the writer: 1.8 covers ~22 % of a frame (bboxes about half the width,
    # two thirds of the height), nearer real NMR renders than the writer's default scale (~6 %)
    object_scale: float = 1.8
    split: tuple[float, float] = (0.8, 0.0)  # train / val fractions of the Mir-180 object split
    d_hidden: int = 64
    n_coarse: int = 12
    n_fine: int = 6
    n_fine_depth: int = 2
    # "bfloat16": the opt-in reduced-precision MLP GEMMs (~1.4x faster steps on CPUs with bf16 instructions);
    # "auto": bfloat16 where the CPU has avx512_bf16 / amx_bf16, else float32. A bf16 run also renders
    # the held-out views with fp32 GEMMs (same weights) and reports both.
    mlp_dtype: str = "auto"
    freeze_encoder: bool = False  # True: keep the pretrained FFC encoder fixed (its features are cached)
    objects_per_step: int = 4
    rays_per_object: int = 64
    # step budgets, each capped in time: pretraining gets pretrain_fraction of the training time left after
    # writing the data, the synthesizer the rest; None: the time cap alone. Schedules follow the progress
    # max(step / steps, elapsed / cap), so a slow machine runs the same schedule in fewer steps.
    pretrain_steps: int | None = 400
    synth_steps: int | None = 3000
    pretrain_fraction: float = 0.12
    lr: float = 2e-3  # synthesizer Adam lr, cosine-decayed to lr * lr_final
    lr_final: float = 0.05
    lr_warmup: float = 0.1  # linear warmup over this fraction of the progress (keeps densities alive)
    bbox_fraction: float = 0.7  # mixed bbox/uniform rays for this fraction of the progress, then uniform
    bbox_ray_fraction: float = 0.5  # share of rays drawn inside the mask bbox during that phase
    eval_views: tuple[int, ...] = (4, 9, 14, 20)
    lpips: bool = True
    seed: int = 0
    # torch threads during the stage (restored afterwards). The demo's per-step work is small (tiny MLP,
    # a few 32x32 encoder passes): one thread avoids the OpenMP barrier stalls that make such steps up to
    # 20x slower on a loaded 2-core machine; None keeps torch's setting.
    threads: int | None = 1


def cpu_has_bf16() -> bool:
    """Whether the CPU lists native bf16 instructions (Linux /proc/cpuinfo; False where unreadable)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


class ProgressSchedule(Callback):
    """The demo's time-capped schedule on the engine: before each step the lr follows common.schedules'
    warmup + cosine closed form at the run's progress max(step / steps, elapsed / seconds), so a slow
    machine runs the same schedule in fewer steps (the engine's train.max_seconds stops the run).
    Records the progress (for the ray sampler's bbox phase) and the summed loss of every step."""

    RESOLUTION = 1_000_000  # progress -> virtual step of the closed form

    def __init__(self, steps: int | None, seconds: float, lr: float, final: float = 1.0, warmup: float = 0.0):
        self.steps, self.seconds, self.lr = steps, seconds, lr
        n = self.RESOLUTION
        w = round(warmup * n)
        self.sched = ScheduleConfig(name="cosine" if final < 1.0 or w else "constant", warmup_steps=w,
                                    warmup_ratio=1e-3 / warmup if warmup else 1.0, min_lr=lr * final)  # fmt: skip
        self.progress, self.losses = 0.0, []
        self.t0 = time.monotonic()

    def lr_at(self, prog: float) -> float:
        return lr_at(
            self.sched, min(self.RESOLUTION, round(prog * self.RESOLUTION)), self.lr, self.RESOLUTION
        )

    def on_train_start(self, trainer) -> None:
        self.t0 = time.monotonic()

    def before_step(self, trainer, step: int) -> bool:
        prog = (time.monotonic() - self.t0) / self.seconds
        self.progress = min(max(prog, step / self.steps) if self.steps else prog, 1.0)
        factor = self.lr_at(self.progress) / self.lr
        for g in trainer.optimizer.param_groups:  # each group keeps its own base lr
            g["lr"] = g.get("initial_lr", self.lr) * factor
        return False

    def after_step(self, trainer, step: int, losses: dict[str, float]) -> None:
        self.losses.append(sum(losses.values()))


def _train(
    model,
    data,
    out_dir: Path,
    seconds: float,
    steps: int | None,
    lr: float,
    lr_final: float = 1.0,
    warmup: float = 0.0,
    seed: int = 0,
) -> tuple[int, list[float], bool]:
    """Adam on common.engine.Trainer until `steps` steps or `seconds` pass; `data(step, progress)` -> batch.
    Returns the steps done, the losses and whether time ran out before the step budget."""
    sched = ProgressSchedule(steps, seconds, lr, lr_final, warmup)
    cfg = TrainConfig(max_steps=steps or 10**9, lr=lr, optimizer="adam", max_seconds=seconds, log_every=10**9,
                      tensorboard=False, progress=False, out_dir=str(out_dir), seed=seed, keep_last=1)  # fmt: skip
    trainer = Trainer(cfg, model, lambda step: data(step, sched.progress), callbacks=[sched], overwrite=True)
    trainer.fit()
    return trainer.step, sched.losses, steps is None or trainer.step < steps


def _scores(pred: torch.Tensor, gt: torch.Tensor, metrics: dict) -> dict[str, float]:
    """Official protocol: 8-bit predictions (truncation), PSNR, uniform 7x7 SSIM, LPIPS-VGG; mean over views."""
    q = torch.from_numpy(np.stack([to_uint8(p, rounding="floor", chw=True) for p in pred]))
    q = q.permute(0, 3, 1, 2).double() / 255
    g = gt.double()
    names = {"psnr": "PSNR", "ssim": "SSIM (uniform 7)", "lpips": "LPIPS-VGG"}
    out = {}
    with torch.no_grad():
        for key, label in names.items():
            if key in metrics:
                m = metrics[key]
                step = m.chunk or len(q)
                s = torch.cat(
                    [m.per_view.scores(q[i : i + step], g[i : i + step]) for i in range(0, len(q), step)]
                )
                out[label] = s.mean().item()
    return out


def run_demo_stage(out_dir: Path, minutes: float = 3.0, cfg: DemoConfig = DemoConfig()) -> dict:
    """Run the whole stage; returns metrics rows, losses and counts (figures and data in out_dir)."""
    before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_stage(Path(out_dir), minutes, cfg)
    finally:
        torch.set_num_threads(before)


def _run_stage(out_dir: Path, minutes: float, cfg: DemoConfig) -> dict:
    torch.manual_seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    nmr = write_nmr_dataset(
        out_dir / "nmr", category="display", n_objects=cfg.n_objects, image_size=cfg.image_size, seed=cfg.seed,
        object_scale=cfg.object_scale,
    )  # fmt: skip
    synset = next(p.name for p in Path(nmr).iterdir() if p.is_dir())
    counts = build_mir180(nmr, synset, out_dir / "mir180", split_fractions=cfg.split, seed=cfg.seed)
    root = out_dir / "mir180" / "For_Synthesis"
    t_data = time.monotonic() - t_start
    left = max(20.0, minutes * 60 - t_data) * 0.85  # the rest: evaluation and the GIF

    # 1) contrastive pretraining of the dual-domain encoder on Mir-180 triplets
    trip = Mir180Dataset(root, "train")
    cache = [trip[i] for i in range(len(trip))]
    pre = EncoderPretrainer(DualDomainEncoderConfig(), PretrainLossConfig())

    def pre_batch(step: int, prog: float) -> dict:
        idx = torch.randint(len(cache), (8,)).tolist()
        return {k: torch.stack([cache[i][k] for i in idx]) for k in cache[0]}

    n_pre, pre_hist, pre_capped = _train(
        pre, pre_batch, out_dir / "runs" / "pretrain", cfg.pretrain_fraction * left, cfg.pretrain_steps, 5e-4,
        seed=cfg.seed,
    )  # fmt: skip

    # 2) view synthesizer with the pretrained encoder (one source view per object, as the paper)
    mlp_dtype = cfg.mlp_dtype
    if mlp_dtype == "auto":
        mlp_dtype = "bfloat16" if cpu_has_bf16() else "float32"
    mcfg = ViewSynthesizerConfig(
        image_size=cfg.image_size, d_hidden=cfg.d_hidden, n_coarse=cfg.n_coarse, n_fine=cfg.n_fine,
        n_fine_depth=cfg.n_fine_depth, chunk_points=60_000, mlp_dtype=mlp_dtype,
    )  # fmt: skip
    model = ViewSynthesizer(mcfg)
    model.encoder.model.load_state_dict(pre.encoder.state_dict())
    if cfg.freeze_encoder:
        model.encoder.model.requires_grad_(False)
    nmr_cfg = NMRDatasetConfig(root=str(root), split="train", pixel_centers=True)
    train_ds = NMRDataset(nmr_cfg)
    data_cfg = replace(
        SynthDataConfig(), objects_per_step=cfg.objects_per_step, rays_per_object=cfg.rays_per_object,
        pixel_centers=True, bbox_ray_fraction=cfg.bbox_ray_fraction,
    )  # fmt: skip
    sampler = RaySampler(train_ds, data_cfg)
    test_ds = NMRDataset(replace(nmr_cfg, split="test"))
    views = list(cfg.eval_views)
    untrained = [render_views(model, test_ds[i], [0], views) for i in range(len(test_ds))]
    # (the engine puts the model in train mode; with a frozen encoder the cached features below are all
    # the training reads of it, so its batch-norm statistics stay fixed)
    # pixelNeRF's schedule in miniature: rays concentrated on the object first (geometry), then uniform
    syn_seconds = max(1.0, left - (time.monotonic() - t_start - t_data))
    feats = None
    if cfg.freeze_encoder:  # the frozen encoder's output per training image is computed once
        with torch.no_grad():
            feats = torch.stack(
                [model.encoder.features(sampler._get(i)["images"]) for i in range(len(train_ds))]
            )

    def syn_batch(step: int, prog: float) -> dict:
        batch = sampler(step, bbox=prog < cfg.bbox_fraction)
        if feats is not None:
            batch["src_features"] = feats[batch["obj_index"][:, None], batch["src_views"]]
        return batch

    n_syn, syn_hist, syn_capped = _train(
        model, syn_batch, out_dir / "runs" / "synth", syn_seconds, cfg.synth_steps, cfg.lr, cfg.lr_final,
        cfg.lr_warmup, seed=cfg.seed + 1,
    )  # fmt: skip
    if cfg.freeze_encoder:
        model.encoder.model.eval()
    t_train = time.monotonic() - t_start - t_data

    # 3) held-out objects, source view 0 -> novel views
    lp = official_metrics(cfg.lpips)
    gts, srcs, means = [], [], []
    mean_img = torch.stack([train_ds[i]["images"].mean(0) for i in range(len(train_ds))]).mean(0)
    test_objs = [test_ds[i] for i in range(len(test_ds))]
    for obj in test_objs:
        gts.append(obj["images"][views])
        srcs.append(obj["images"][0].expand(len(views), -1, -1, -1))
        means.append(mean_img.expand(len(views), -1, -1, -1))
    gt = torch.cat(gts)

    def render_all() -> torch.Tensor:
        torch.manual_seed(cfg.seed + 1)  # same importance samples for both MLP precisions
        return torch.cat([render_views(model, obj, [0], views) for obj in test_objs])

    pred = render_all()
    rows = {"SMCL (ours, demo size)": _scores(pred, gt, lp)}
    bf16_gap = None
    if mlp_dtype == "bfloat16":  # the same weights rendered with fp32 GEMMs: the cost of the bf16 option
        model.set_mlp_impl("fast", dtype="float32")
        pred32 = render_all()
        rows["SMCL, same weights, fp32 MLP rendering"] = _scores(pred32, gt, lp)
        bf16_gap = psnr(pred.double(), pred32.double()).mean().item()
        model.set_mlp_impl("fast", dtype="bfloat16")
    rows |= {
        "source view copied": _scores(torch.cat(srcs), gt, lp),
        "mean training image": _scores(torch.cat(means), gt, lp),
        "same model before training": _scores(torch.cat(untrained), gt, lp),
    }
    orbit = render_views(model, test_ds[0], [0], list(range(0, 24, 2)))
    frames = [
        np.concatenate([to_uint8(o, rounding="floor", chw=True), to_uint8(g, rounding="floor", chw=True)], 1)
        for o, g in zip(orbit, test_ds[0]["images"][::2])
    ]
    gif = save_gif(frames, out_dir / "smcl_orbit.gif", fps=6)
    # renders for the demo's no-reference section (scripts/demo.py scores them with NVS-SQA): held-out
    # object 0's evaluation views in camera order (trained, before training, ground truth) and the orbit
    k = len(views)
    floor8 = lambda x: to_uint8(x, rounding="floor", chw=True)  # noqa: E731
    for name, seq in (("gt", gt[:k]), ("trained", pred[:k]), ("untrained", untrained[0])):
        _save_frames(out_dir / "renders" / name / "test", [floor8(x) for x in seq])
    _save_frames(out_dir / "renders" / "trained" / "trajectory", [floor8(o) for o in orbit])
    return {
        "rows": rows, "counts": counts, "n_pre": n_pre, "pre_hist": pre_hist, "n_syn": n_syn,
        "syn_hist": syn_hist, "gif": gif, "seconds": time.monotonic() - t_start, "data_seconds": t_data,
        "lpips": "lpips" in lp, "cfg": cfg, "threads": torch.get_num_threads(), "train_seconds": t_train,
        "pre_capped": pre_capped, "syn_capped": syn_capped, "mlp_dtype": mlp_dtype, "bf16_vs_fp32_psnr": bf16_gap,
    }  # fmt: skip


def _save_frames(folder: Path, frames) -> None:
    """uint8 H x W x 3 frames as folder/00000.png ... (the NVS-SQA frame-folder layout)."""
    from common.image_io import write_image

    for i, fr in enumerate(frames):
        write_image(folder / f"{i:05d}.png", fr)


def _steps(done: int, budget: int | None, capped: bool) -> str:
    if budget is None:
        return f"{done} steps (time budget)"
    return f"{done} of {budget} steps" + (" (time cap reached)" if capped else "")


def format_report(res: dict) -> str:
    cfg, rows, counts = res["cfg"], res["rows"], res["counts"]
    pre_hist, syn_hist = res["pre_hist"], res["syn_hist"]
    keys = list(rows["source view copied"])
    samples = f"{cfg.n_coarse} coarse + {cfg.n_coarse + cfg.n_fine + cfg.n_fine_depth} fine"
    lines = [
        "## SMCL object level (Mir-180, dual-domain encoder, view synthesizer)",
        "",
        f"Synthetic mirror-symmetric 'display' objects from common.synthetic ({cfg.image_size}x{cfg.image_size}, "
        f"24 views, object scale {cfg.object_scale:g}, written in {res['data_seconds']:.0f} s): {counts} objects "
        f"in train/val/test, {10 * counts['train']} Mir-180 training triplets. Encoder pretraining: "
        f"{_steps(res['n_pre'], cfg.pretrain_steps, res['pre_capped'])} of 8 triplets (loss {pre_hist[0]:.3f} -> "
        f"{np.mean(pre_hist[-5:]):.3f}); synthesizer (width {cfg.d_hidden}, {res['mlp_dtype']} MLP, {samples} "
        f"samples per ray, {'frozen' if cfg.freeze_encoder else 'trained'} encoder): "
        f"{_steps(res['n_syn'], cfg.synth_steps, res['syn_capped'])} of {cfg.objects_per_step}x"
        f"{cfg.rays_per_object} rays, Adam lr {cfg.lr:g} cosine to {cfg.lr * cfg.lr_final:g}, "
        f"{cfg.bbox_ray_fraction:.0%} of the rays in the mask bbox for the first {cfg.bbox_fraction:.0%} "
        f"(loss {syn_hist[0]:.4f} -> {np.mean(syn_hist[-20:]):.4f}). Training {res['train_seconds']:.0f} s, "
        f"wall time {res['seconds']:.0f} s on CPU ({res['threads']} torch thread(s)).",
        "",
        f"Held-out objects, source view 0, {len(cfg.eval_views)} novel views each "
        f"({', '.join(map(str, cfg.eval_views))}; 8-bit protocol"
        + ("" if res["lpips"] else "; LPIPS weights not fetched")
        + "):",
        "",
        "| method | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    lines += [f"| {n} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |" for n, r in rows.items()]
    if res["bf16_vs_fp32_psnr"] is not None:
        lines += ["", f"bf16 vs fp32 MLP rendering of the same weights: PSNR {res['bf16_vs_fp32_psnr']:.1f} dB "
                  "between the two renderings (before 8-bit quantisation)."]  # fmt: skip
    lines += ["", f"Orbit (left: rendered from view 0, right: ground truth): `{res['gif']}`", ""]
    return "\n".join(lines)


def run_demo(out_dir: Path, minutes: float = 3.0) -> str:
    """Run the stage in about `minutes` of wall time; returns a markdown section (figures in out_dir)."""
    return format_report(run_demo_stage(out_dir, minutes))
