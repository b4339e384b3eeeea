"""Self-supervised pair construction (spec nvs_sqa.md §2.1-2.2) on `renders/<scene>__<method>/NNNNN.png`.

A sample: scene s, two different methods A, B, one shared crop box and flips, a segment of L frames of A
(sequence 1), sequence 2 = sequence 1 with int(r*L) frames (r ~ U(r_min, 1)) replaced by B's frame at the
same index; each sequence optionally distorted. Soft targets in [-1, 1] (1 = identical) are computed from
the pair: SSIM, PSNR, replacement ratio, LPIPS and FovVideoVDP (optional `pyfvvdp`) when their branch is used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.metrics.image import psnr, ssim
from nvs_sqa.data.fvvdp_target import FovVideoVDPTarget
from nvs_sqa.distortions import N_KEYS, distort
from nvs_sqa.frames import FrameError, list_frames, read_frame

BRANCHES = ("ssim", "psnr", "rep", "lpips", "fvvdp")


@dataclass(frozen=True)
class PairConfig:
    root: str = "data/nss"  # folder that holds renders/
    crop: tuple[int, int] = (72, 72)  # (h, w); clipped to the frame size (encoder needs >= 69)
    seq_len: int = 4
    min_replace_ratio: float = 0.5
    distort: bool = True
    compat_distortions: bool = False  # True: the official (buggy) distortion parameters
    exclude_methods: tuple[str, ...] = ("gt",)  # the synthetic clean reference is not an NVS method
    scenes: tuple[str, ...] = ()  # empty = all scenes


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


class SoftTargets:
    """Soft targets of a batch of pairs, computed on the batch's device (spec §2.2).

    Called by the training step on the tensors the engine already moved to the training device, so the
    float64 SSIM/PSNR, LPIPS and FovVideoVDP run there (GPU on a GPU run), never per pair in the main
    process. x1, x2 (B, L, 3, h, w) in [0, 1], r (B,) -> (B, K) float32 in [-1, 1], K = len(branches).
    """

    def __init__(self, branches: tuple[str, ...] = ("ssim", "psnr", "rep")) -> None:
        unknown = set(branches) - set(BRANCHES)
        if unknown:
            raise ValueError(f"unknown target branches {sorted(unknown)}; known {BRANCHES}")
        self.branches = tuple(branches)
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
                cols.append(scale_ssim(ssim(f2, f1)).view(b, L).mean(1))
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
        s1 = np.stack([distort(np.ascontiguousarray(f), k1, rng, self.cfg.compat_distortions) for f in s1])
        s2 = s1.copy()
        for i in idx:
            s2[i] = distort(np.ascontiguousarray(s2src[i]), k2, rng, self.cfg.compat_distortions)
        return s1, s2, r

    def __call__(self, step: int) -> dict[str, Tensor]:
        seeds = torch.randint(0, 2**31 - 1, (self.batch_size,)).tolist()
        pairs = [self.sample_pair(s) for s in seeds]
        to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 1, 4, 2, 3).float() / 255.0  # noqa: E731
        x1, x2 = to_t([p[0] for p in pairs]), to_t([p[1] for p in pairs])
        r = torch.tensor([p[2] for p in pairs], dtype=torch.float32)
        return {"seq1": x1, "seq2": x2, "ratio": r}  # soft targets: SoftTargets in the training step
