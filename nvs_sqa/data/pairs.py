"""Self-supervised pair construction (spec nvs_sqa.md §2.1-2.2) on `renders/<scene>__<method>/NNNNN.png`.

A sample: scene s, two different methods A, B, one shared crop box and flips, a segment of L frames of A
(sequence 1), sequence 2 = sequence 1 with int(r*L) frames (r ~ U(r_min, 1)) replaced by B's frame at the
same index; each sequence optionally distorted. Soft targets in [-1, 1] (1 = identical) are computed from
the pair: SSIM, PSNR, replacement ratio, LPIPS and FovVideoVDP (optional `pyfvvdp`) when their branch is used.

Two samplers: `OfficialPairSampler` (`data.official: true`, conf/nvs_sqa/train.yaml) reproduces the official
trainer draw for draw; `NSSPairSampler` is the improved one (conf/nvs_sqa/train_improved.yaml).
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from common.callbacks import Callback
from common.errors import TriVisionError
from common.metrics.image import psnr, ssim
from nvs_sqa.data.fvvdp_target import FovVideoVDPTarget
from nvs_sqa.distortions import N_KEYS, distort, distort_official
from nvs_sqa.frames import FrameError, list_frames, read_frame

log = logging.getLogger(__name__)
BRANCHES = ("ssim", "psnr", "rep", "lpips", "fvvdp")


@dataclass(frozen=True)
class PairConfig:
    root: str = "data/nss"  # folder that holds renders/
    crop: tuple[int, int] = (72, 72)  # (h, w); clipped to the frame size (encoder needs >= 69)
    seq_len: int = 4
    min_replace_ratio: float = 0.5
    distort: bool = True
    exclude_methods: tuple[str, ...] = ("gt",)  # the synthetic clean reference is not an NVS method
    scenes: tuple[str, ...] = ()  # empty = all scenes (sorted); the official sampler keeps this order
    # official sampler (OfficialPairSampler): one crop size per batch drawn from crop_range (capped by the
    # smallest frame - (5, 15) px), L = frame_budget // (crop_h * crop_w) frames, each scene scene_reps
    # times per epoch without replacement, official distortions on the full frame before cropping
    official: bool = False
    methods: tuple[str, ...] = ()  # order of the methods (the official draws depend on it); empty = sorted
    crop_range: tuple[int, int] = (150, 600)
    frame_budget: int = 200 * 200 * 60  # pixels x frames per sequence (official max_cache / batch_size)
    scene_reps: int = 2


def load_renders(
    root: Path, exclude: tuple[str, ...] = (), scenes: tuple[str, ...] = ()
) -> dict[str, dict[str, np.ndarray]]:
    """renders/<scene>__<method>/ -> {scene: {method: (N, H, W, 3) uint8}}; needs >= 2 methods per scene."""
    rdir = Path(root) / "renders"
    if not rdir.is_dir():
        raise FrameError(f"{rdir}: no renders/ folder (expected renders/<scene>__<method>/00000.png)")
    out: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for d in sorted(p for p in rdir.iterdir() if p.is_dir()):
        if "__" not in d.name:
            raise FrameError(f"{d}: folder name must be <scene>__<method>")
        scene, method = d.name.split("__", 1)
        if method in exclude or (scenes and scene not in scenes):
            continue
        frames = [read_frame(p) for p in list_frames(d)]
        if not frames:
            raise FrameError(f"{d}: no frames")
        out[scene][method] = np.stack(frames)
    for scene, methods in out.items():
        if len(methods) < 2:
            raise FrameError(f"{rdir}: scene {scene} has fewer than 2 methods")
        n = {m: v.shape for m, v in methods.items()}
        if len({s[1:] for s in n.values()}) != 1:
            raise FrameError(f"{rdir}: methods of scene {scene} have different frame sizes {n}")
    if not out:
        raise FrameError(f"{rdir}: no usable scenes")
    return dict(out)


def scale_ssim(s: Tensor) -> Tensor:
    """SSIM 1 -> 1, 0.6 -> 0, <= 0.2 -> -1 (official ssim_range (-4, 1))."""
    return (((s + 1) / 2) * 5 - 4).clamp(-1, 1)


def scale_psnr(p: Tensor) -> Tensor:
    """PSNR clamped to [10, 40] dB mapped linearly to [-1, 1]."""
    return ((p.clamp(10, 40) - 10) / 30) * 2 - 1


def ssim_zero_pad(x: Tensor, y: Tensor) -> Tensor:
    """The official training SSIM, (N, C, H, W) x2 -> (N,): 11x11 Gaussian (sigma 1.5) in float32 with zero
    padding, so the border windows (which see the black padding) are averaged in too (spec §2.2)."""
    c = x.shape[1]
    g = torch.exp(-((torch.arange(11, dtype=torch.float32, device=x.device) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    w = torch.outer(g, g).expand(c, 1, 11, 11).contiguous()
    x, y = x.float(), y.float()
    blur = lambda t: F.conv2d(t, w, padding=5, groups=c)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(1).mean(1).mean(1)


class SoftTargets:
    """Soft targets of a batch of pairs, computed on the batch's device (spec §2.2).

    Called by the training step on the tensors the engine already moved to the training device, so the
    SSIM/PSNR, LPIPS and FovVideoVDP run there (GPU on a GPU run), never per pair in the main process.
    x1, x2 (B, L, 3, h, w) in [0, 1], r (B,) -> (B, K) float32 in [-1, 1], K = len(branches).
    `official_ssim`: the official zero-padded float32 SSIM (borders included); False: float64 SSIM over the
    windows fully inside the image (0.03-0.04 higher targets on typical crops).
    """

    def __init__(
        self, branches: tuple[str, ...] = ("ssim", "psnr", "rep"), official_ssim: bool = False
    ) -> None:
        unknown = set(branches) - set(BRANCHES)
        if unknown:
            raise ValueError(f"unknown target branches {sorted(unknown)}; known {BRANCHES}")
        self.branches, self.official_ssim = tuple(branches), official_ssim
        self._lpips = None
        if "lpips" in branches:
            from common.metrics.lpips import LPIPSMetric

            self._lpips = LPIPSMetric(net="vgg").eval()
        self._fvvdp = FovVideoVDPTarget() if "fvvdp" in branches else None

    @torch.no_grad()
    def __call__(self, x1: Tensor, x2: Tensor, r: Tensor) -> Tensor:
        b, L = x1.shape[:2]
        f1, f2 = x1.flatten(0, 1), x2.flatten(0, 1)
        cols = []
        for name in self.branches:
            if name == "ssim":
                s = ssim_zero_pad(f1, f2) if self.official_ssim else ssim(f2, f1)
                cols.append(scale_ssim(s).view(b, L).mean(1))
            elif name == "psnr":
                p = torch.nan_to_num(psnr(f2, f1), posinf=100.0)
                cols.append(scale_psnr(p).view(b, L).mean(1))
            elif name == "rep":
                cols.append(1 - 2 * r)
            elif name == "lpips":
                self._lpips.to(x1.device)
                cols.append((2 * self._lpips(f2, f1).view(b, L).mean(1) - 1).neg())
            elif name == "fvvdp":
                cols.append(self._fvvdp(x1, x2))
        return torch.stack([c.to(x1.device, torch.float32) for c in cols], 1)


class NSSPairSampler:
    """Callable train_data(step) -> batch for common.engine: randomness from torch's global RNG.

    Batch: seq1, seq2 (B, L, 3, h, w) float in [0, 1]; ratio (B,) replaced fraction. The soft targets are
    computed from these by `SoftTargets` on the training device.
    """

    def __init__(self, cfg: PairConfig, batch_size: int) -> None:
        self.cfg, self.batch_size = cfg, batch_size
        self.data = load_renders(Path(cfg.root), cfg.exclude_methods, cfg.scenes)
        self.scenes = sorted(self.data)

    def sample_pair(self, gen_seed: int) -> tuple[np.ndarray, np.ndarray, float]:
        """One pair (L, h, w, 3) uint8 x2 and the replacement ratio r."""
        rng = np.random.default_rng(gen_seed)
        scene = self.scenes[int(rng.integers(len(self.scenes)))]
        methods = sorted(self.data[scene])
        a, b = rng.choice(len(methods), size=2, replace=False)
        fa, fb = self.data[scene][methods[a]], self.data[scene][methods[b]]
        n = min(len(fa), len(fb))
        L = min(self.cfg.seq_len, n)
        H, W = fa.shape[1:3]
        h, w = min(self.cfg.crop[0], H), min(self.cfg.crop[1], W)
        y0, x0 = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
        t0 = int(rng.integers(n - L + 1))
        sl = (slice(t0, t0 + L), slice(y0, y0 + h), slice(x0, x0 + w))
        s1, s2src = fa[sl].copy(), fb[sl]
        if rng.random() < 0.5:
            s1, s2src = s1[:, :, ::-1], s2src[:, :, ::-1]
        if rng.random() < 0.5:
            s1, s2src = s1[:, ::-1], s2src[:, ::-1]
        r = float(rng.uniform(self.cfg.min_replace_ratio, 1.0))
        idx = rng.choice(L, size=int(r * L), replace=False)
        k1, k2 = (
            (int(rng.integers(N_KEYS)), int(rng.integers(N_KEYS))) if self.cfg.distort else (N_KEYS - 1,) * 2
        )
        s1 = np.stack([distort(np.ascontiguousarray(f), k1, rng) for f in s1])
        s2 = s1.copy()
        for i in idx:
            s2[i] = distort(np.ascontiguousarray(s2src[i]), k2, rng)
        return s1, s2, r

    def __call__(self, step: int) -> dict[str, Tensor]:
        seeds = torch.randint(0, 2**31 - 1, (self.batch_size,)).tolist()
        pairs = [self.sample_pair(s) for s in seeds]
        to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 1, 4, 2, 3).float() / 255.0  # noqa: E731
        x1, x2 = to_t([p[0] for p in pairs]), to_t([p[1] for p in pairs])
        r = torch.tensor([p[2] for p in pairs], dtype=torch.float32)
        return {"seq1": x1, "seq2": x2, "ratio": r}  # soft targets: SoftTargets in the training step


class OfficialPairSampler(Callback):
    """The official batch sampler, draw for draw, from the global python / numpy RNGs (seeded and saved in
    checkpoints by common.engine); train_data(step) -> batch like NSSPairSampler.

    Per epoch every scene is listed `scene_reps` times and shuffled; each batch draws its scenes from that
    list without replacement (len // batch_size batches, the rest is dropped). One crop size per batch, frame
    count from `frame_budget`, official distortions on the full frame before the crop and flips. As in the
    official loader, sequence 2 takes method B's frames either everywhere (when frame 0 is among the int(r*L)
    drawn indices) or nowhere (an identical copy), while the REP target stays 1 - 2r. The epoch's remaining
    scene list is a Callback state, so a resumed run continues the uninterrupted one bit for bit.
    Single process only: under DDP every rank would draw its own batches from its own RNG stream.
    """

    def __init__(self, cfg: PairConfig, batch_size: int) -> None:
        self.cfg, self.batch_size = cfg, batch_size
        self.data = load_renders(Path(cfg.root), cfg.exclude_methods, cfg.scenes)
        self.scenes = [s for s in cfg.scenes if s in self.data] if cfg.scenes else sorted(self.data)
        missing = sorted(set(cfg.scenes) - set(self.data))
        if missing:
            raise TriVisionError(f"{cfg.root}/renders: scenes {missing} of data.scenes are missing")
        self.methods = list(cfg.methods) or sorted({m for v in self.data.values() for m in v})
        for s in self.scenes:
            lack = sorted(set(self.methods) - set(self.data[s]))
            if lack:
                raise TriVisionError(f"{cfg.root}/renders: scene {s} lacks methods {lack}")
        if len(self.scenes) * cfg.scene_reps < batch_size:
            raise TriVisionError(
                f"{cfg.root}: {len(self.scenes)} scenes x scene_reps {cfg.scene_reps} give no batch of {batch_size}"
            )
        self.remain: list[str] = []
        self.left = 0  # batches left in the epoch

    def on_train_start(self, trainer: Any) -> None:
        if trainer.info.world_size > 1:
            log.warning(
                "data.official: each of the %d processes draws its own batches and only rank 0's epoch state "
                "is checkpointed; the official recipe is one process",
                trainer.info.world_size,
            )

    def on_save_checkpoint(self, state: dict[str, Any]) -> None:
        state.update(remain=list(self.remain), left=self.left)

    def on_load_checkpoint(self, state: dict[str, Any]) -> None:
        self.remain, self.left = list(state["remain"]), int(state["left"])

    def _frame(self, scene: str, method: str, t: int, key: int, box: tuple[int, ...]) -> Tensor:
        """Distort the full frame, then crop (y, x, h, w) and flip (h_flip, v_flip) as the official loader."""
        img = distort_official(self.data[scene][method][t], key)
        y, x, h, w, hf, vf = box
        out = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float() / 255.0
        out = out[:, y : y + h, x : x + w]
        if hf:
            out = out.flip(-1)
        return out.flip(-2) if vf else out

    def __call__(self, step: int) -> dict[str, Tensor]:
        cfg, bs = self.cfg, self.batch_size
        if self.left == 0:  # a new epoch
            self.remain = list(self.scenes) * cfg.scene_reps
            random.shuffle(self.remain)
            self.left = len(self.remain) // bs
        chosen = []
        for _ in range(bs):
            chosen.append(random.choice(self.remain))
            self.remain.remove(chosen[-1])
        first = [self.data[s][self.methods[0]] for s in chosen]
        n_min = min(len(f) for f in first)
        h_max, w_max = min(f.shape[1] for f in first) - 5, min(f.shape[2] for f in first) - 15
        w = min(random.randint(*cfg.crop_range), w_max)
        h = min(random.randint(*cfg.crop_range), h_max)
        L = min(cfg.frame_budget // (w * h), n_min)
        if L < 1 or h < 1 or w < 1:
            raise TriVisionError(
                f"{cfg.root}: crop {h}x{w} leaves no frame under frame_budget {cfg.frame_budget}"
            )
        r_min = cfg.min_replace_ratio
        ratios = [r_min + random.random() * (1 - r_min) for _ in range(bs)]
        seq1, seq2 = [], []
        for scene, r in zip(chosen, ratios):
            m1, m2 = random.sample(self.methods, 2)
            frames = self.data[scene][m1]
            x0, y0 = random.randint(0, frames.shape[2] - w), random.randint(0, frames.shape[1] - h)
            box = (y0, x0, h, w, random.choice([True, False]), random.choice([True, False]))
            distorted = random.random() < float(cfg.distort)
            keys = (random.randint(0, N_KEYS - 1), random.randint(0, N_KEYS - 1)) if distorted else (11, 11)
            t0 = random.randint(0, len(frames) - L)
            replaced = 0 in random.sample(range(L), int(r * L))
            a, b = [], []
            for t in range(t0, t0 + L):
                a.append(self._frame(scene, m1, t, keys[0], box))
                b.append(self._frame(scene, m2, t, keys[1], box) if replaced else a[-1])
            seq1.append(torch.stack(a))
            seq2.append(torch.stack(b))
        self.left -= 1
        return {"seq1": torch.stack(seq1), "seq2": torch.stack(seq2), "ratio": torch.tensor(ratios)}
