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

from common.metrics.image import psnr, ssim
from common.synthetic import write_nmr_dataset
from common.viz import save_gif
from smcl.object.data.mir180 import Mir180Dataset, build_mir180
from smcl.object.data.nmr import NMRDataset, NMRDatasetConfig
from smcl.object.experiment import EncoderPretrainer, PretrainLossConfig, RaySampler, SynthDataConfig
from smcl.object.metrics import _load_lpips, render_views, to_uint8
from smcl.object.models.ffc_encoder import DualDomainEncoderConfig
from smcl.object.models.view_synthesizer import ViewSynthesizer, ViewSynthesizerConfig


@dataclass(frozen=True)
class DemoConfig:
    n_objects: int = 24
    image_size: int = 32
    split: tuple[float, float] = (0.8, 0.0)  # train / val fractions of the Mir-180 object split
    d_hidden: int = 64
    n_coarse: int = 12
    n_fine: int = 6
    n_fine_depth: int = 2
    freeze_encoder: bool = True  # keep the pretrained FFC encoder fixed (only its latent Linear trains)
    objects_per_step: int = 4
    rays_per_object: int = 128
    pretrain_fraction: float = 0.15  # of the training time left after writing the data
    pretrain_steps: int | None = None  # fixed step counts instead of the time budget (tests)
    synth_steps: int | None = None
    lr: float = 1e-3
    bbox_fraction: float = 0.6  # rays from the mask bbox for this fraction of training, then uniform
    eval_views: tuple[int, ...] = (4, 9, 14, 20)
    lpips: bool = True
    seed: int = 0
    # torch threads during the stage (restored afterwards). The demo's per-step work is small (tiny MLP,
    # a few 32x32 encoder passes): one thread avoids the OpenMP barrier stalls that make such steps up to
    # 20x slower on a loaded 2-core machine; None keeps torch's setting.
    threads: int | None = 1


def _train(step_fn, params, seconds: float, steps: int | None, lr: float) -> tuple[int, list[float]]:
    opt = torch.optim.Adam(params, lr=lr)
    t0, step, hist = time.monotonic(), 0, []
    while (step < steps) if steps is not None else (time.monotonic() - t0 < seconds):
        loss = sum(step_fn(step).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(loss.item())
        step += 1
    return step, hist


def _scores(pred: torch.Tensor, gt: torch.Tensor, lp) -> dict[str, float]:
    """Official protocol: 8-bit predictions (truncation), PSNR, uniform 7x7 SSIM, LPIPS-VGG; mean over views."""
    q = torch.from_numpy(np.stack([to_uint8(p) for p in pred])).permute(0, 3, 1, 2).double() / 255
    g = gt.double()
    out = {
        "PSNR": psnr(q, g).mean().item(),
        "SSIM (uniform 7)": ssim(q, g, window="uniform", win_size=7).mean().item(),
    }
    if lp is not None:
        with torch.no_grad():
            out["LPIPS-VGG"] = lp(q.float(), g.float()).mean().item()
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
        out_dir / "nmr", category="display", n_objects=cfg.n_objects, image_size=cfg.image_size, seed=cfg.seed
    )
    synset = next(p.name for p in Path(nmr).iterdir() if p.is_dir())
    counts = build_mir180(nmr, synset, out_dir / "mir180", split_fractions=cfg.split, seed=cfg.seed)
    root = out_dir / "mir180" / "For_Synthesis"
    t_data = time.monotonic() - t_start
    left = max(20.0, minutes * 60 - t_data) * 0.85  # the rest: evaluation and the GIF

    # 1) contrastive pretraining of the dual-domain encoder on Mir-180 triplets
    trip = Mir180Dataset(root, "train")
    cache = [trip[i] for i in range(len(trip))]
    pre = EncoderPretrainer(DualDomainEncoderConfig(), PretrainLossConfig())

    def pre_step(_: int) -> dict:
        idx = torch.randint(len(cache), (8,)).tolist()
        return pre.training_step({k: torch.stack([cache[i][k] for i in idx]) for k in cache[0]})

    n_pre, pre_hist = _train(
        pre_step, pre.parameters(), cfg.pretrain_fraction * left, cfg.pretrain_steps, 5e-4
    )

    # 2) view synthesizer with the pretrained encoder (one source view per object, as the paper)
    mcfg = ViewSynthesizerConfig(
        image_size=cfg.image_size, d_hidden=cfg.d_hidden, n_coarse=cfg.n_coarse, n_fine=cfg.n_fine,
        n_fine_depth=cfg.n_fine_depth, chunk_points=60_000,
    )  # fmt: skip
    model = ViewSynthesizer(mcfg)
    model.encoder.model.load_state_dict(pre.encoder.state_dict())
    if cfg.freeze_encoder:
        model.encoder.model.requires_grad_(False)
    nmr_cfg = NMRDatasetConfig(root=str(root), split="train", pixel_centers=True)
    train_ds = NMRDataset(nmr_cfg)
    data_cfg = replace(
        SynthDataConfig(), objects_per_step=cfg.objects_per_step, rays_per_object=cfg.rays_per_object,
        pixel_centers=True, no_bbox_step=1,
    )  # fmt: skip
    sampler = RaySampler(train_ds, data_cfg)
    test_ds = NMRDataset(replace(nmr_cfg, split="test"))
    views = list(cfg.eval_views)
    untrained = [render_views(model, test_ds[i], [0], views) for i in range(len(test_ds))]
    model.train()
    if cfg.freeze_encoder:
        model.encoder.model.eval()  # batch-norm statistics of the pretrained encoder stay fixed
    # pixelNeRF's schedule in miniature: bbox ray sampling first (geometry), then uniform (background)
    syn_seconds = (1 - cfg.pretrain_fraction) * left
    t_syn = time.monotonic()

    def bbox_phase(step: int) -> bool:
        if cfg.synth_steps is not None:
            return step < cfg.bbox_fraction * cfg.synth_steps
        return time.monotonic() - t_syn < cfg.bbox_fraction * syn_seconds

    n_syn, syn_hist = _train(
        lambda s: model.training_step(sampler(0 if bbox_phase(s) else 1)),
        [p for p in model.parameters() if p.requires_grad],
        syn_seconds,
        cfg.synth_steps,
        cfg.lr,
    )

    # 3) held-out objects, source view 0 -> novel views
    lp = _load_lpips(cfg.lpips)
    preds, gts, srcs, means = [], [], [], []
    mean_img = torch.stack([train_ds[i]["images"].mean(0) for i in range(len(train_ds))]).mean(0)
    for i in range(len(test_ds)):
        obj = test_ds[i]
        preds.append(render_views(model, obj, [0], views))
        gts.append(obj["images"][views])
        srcs.append(obj["images"][0].expand(len(views), -1, -1, -1))
        means.append(mean_img.expand(len(views), -1, -1, -1))
    gt = torch.cat(gts)
    rows = {
        "SMCL (ours, demo size)": _scores(torch.cat(preds), gt, lp),
        "source view copied": _scores(torch.cat(srcs), gt, lp),
        "mean training image": _scores(torch.cat(means), gt, lp),
        "same model before training": _scores(torch.cat(untrained), gt, lp),
    }
    orbit = render_views(model, test_ds[0], [0], list(range(0, 24, 2)))
    frames = [np.concatenate([to_uint8(o), to_uint8(g)], 1) for o, g in zip(orbit, test_ds[0]["images"][::2])]
    gif = save_gif(frames, out_dir / "smcl_orbit.gif", fps=6)
    return {
        "rows": rows, "counts": counts, "n_pre": n_pre, "pre_hist": pre_hist, "n_syn": n_syn,
        "syn_hist": syn_hist, "gif": gif, "seconds": time.monotonic() - t_start, "data_seconds": t_data,
        "lpips": lp is not None, "cfg": cfg, "threads": torch.get_num_threads(),
    }  # fmt: skip


def format_report(res: dict) -> str:
    cfg, rows, counts = res["cfg"], res["rows"], res["counts"]
    pre_hist, syn_hist = res["pre_hist"], res["syn_hist"]
    keys = list(rows["source view copied"])
    samples = f"{cfg.n_coarse} coarse + {cfg.n_coarse + cfg.n_fine + cfg.n_fine_depth} fine"
    lines = [
        "## SMCL object level (Mir-180, dual-domain encoder, view synthesizer)",
        "",
        f"Synthetic mirror-symmetric 'display' objects from common.synthetic ({cfg.image_size}x{cfg.image_size}, "
        f"24 views, written in {res['data_seconds']:.0f} s): {counts} objects in train/val/test, "
        f"{10 * counts['train']} Mir-180 training triplets. Encoder pretraining: {res['n_pre']} steps of 8 "
        f"triplets (loss {pre_hist[0]:.3f} -> {np.mean(pre_hist[-5:]):.3f}); synthesizer (width "
        f"{cfg.d_hidden}, {samples} samples per ray): {res['n_syn']} steps of {cfg.objects_per_step}x"
        f"{cfg.rays_per_object} rays (loss {syn_hist[0]:.4f} -> {np.mean(syn_hist[-20:]):.4f}). "
        f"Wall time {res['seconds']:.0f} s on CPU ({res['threads']} torch thread(s)).",
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
    lines += ["", f"Orbit (left: rendered from view 0, right: ground truth): `{res['gif']}`", ""]
    return "\n".join(lines)


def run_demo(out_dir: Path, minutes: float = 3.0) -> str:
    """Run the stage in about `minutes` of wall time; returns a markdown section (figures in out_dir)."""
    return format_report(run_demo_stage(out_dir, minutes))
