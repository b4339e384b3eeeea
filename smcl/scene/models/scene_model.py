"""Per-scene point renderer (spec smcl.md 2.6-2.8, 3.4): learnable points, influence scores, point
features, R-MSA proximity attention, SmallUNet, pruning and growth with in-place optimiser surgery."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from common.distributed import broadcast_from_rank0
from smcl.scene.losses import PhotometricLoss
from smcl.scene.models.rmsa import ProximityAttention, RMSAConfig, topk_points_per_ray
from smcl.scene.models.unet import SmallUNet


@dataclass(frozen=True)
class SceneModelConfig:
    rmsa: RMSAConfig = field(default_factory=RMSAConfig)
    select_k: int = 20
    bkg_score: float = 5.0
    bkg_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    init_type: str = "cloud"  # cloud (the prepared point file) | cube (official) | sphere
    init_num: int = 10000
    init_scale: float = 1.2  # cube half-size in unscaled scene units
    coord_scale: float = 10.0
    max_num_pts: int = 30000
    prune_every: int = 500
    prune_start: int = 10000
    prune_stop: int = 150000
    prune_steps: tuple[int, ...] = ()  # threshold i used while step < prune_steps[i] (bisect), last after
    prune_thresholds: tuple[float, ...] = (0.0,)
    add_every: int = 1000
    add_start: int = 10000
    add_stop: int = 70000
    add_num: int = 1000
    add_knn: int = 10
    add_mix: int = 3
    compat_uncapped_add: bool = False  # official bug: ignore max_num_pts when adding
    ray_chunk: int = 256
    point_chunk: int = 8192
    topk_form: str = "expanded"  # "direct": the official distance on every pair (same selection, slower)
    unet_width: int = 128


def init_points(cfg: SceneModelConfig, cloud: Tensor | None = None, seed: int = 0) -> Tensor:
    """Initial positions in the scaled scene. cube: floor(n^(1/3))^3 grid + random rest (9261 + 739)."""
    g = torch.Generator().manual_seed(seed)
    s = cfg.init_scale * cfg.coord_scale
    if cfg.init_type == "cloud":
        if cloud is None or cloud.shape[0] < cfg.select_k:
            raise ValueError("init_type 'cloud' needs a point cloud with at least select_k points")
        return cloud.float() * cfg.coord_scale
    if cfg.init_type == "cube":
        n = int(math.floor(cfg.init_num ** (1 / 3) + 1e-9))
        lin = torch.linspace(-s, s, n)
        grid = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
        rest = (torch.rand(cfg.init_num - grid.shape[0], 3, generator=g) * 2 - 1) * s
        return torch.cat([grid, rest])
    if cfg.init_type == "sphere":  # Fibonacci lattice
        i = torch.arange(cfg.init_num, dtype=torch.float64) + 0.5
        phi = torch.acos(1 - 2 * i / cfg.init_num)
        theta = math.pi * (1 + 5**0.5) * i
        return (torch.stack([phi.sin() * theta.cos(), phi.sin() * theta.sin(), phi.cos()], -1) * s).float()
    raise ValueError(f"init_type must be cloud | cube | sphere, got {cfg.init_type!r}")


class SceneModel(nn.Module):
    """State dict keys follow the official/PAPR layout (spec 7.4)."""

    def __init__(self, cfg: SceneModelConfig, points: Tensor, feats: Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        m = points.shape[0]
        if feats is None:
            feats = torch.zeros(m, cfg.rmsa.d_feat)
        if feats.shape != (m, cfg.rmsa.d_feat):
            raise ValueError(f"point features must be ({m}, {cfg.rmsa.d_feat}), got {tuple(feats.shape)}")
        self.register_buffer("select_k", torch.tensor(cfg.select_k, dtype=torch.int32))
        self.points = nn.Parameter(points.clone().float())
        self.points_influ_scores = nn.Parameter(torch.zeros(m, 1))
        self.pc_feats = nn.Parameter(feats.clone().float())
        self.register_buffer("bkg_feats", torch.tensor([cfg.bkg_color], dtype=torch.float32))
        self.proximity_attn = ProximityAttention(cfg.rmsa)
        self.renderer = SmallUNet(cfg.rmsa.d_value, 3, cfg.unet_width)
        self.optimizer: torch.optim.Optimizer | None = None
        self.pruned_once = False
        self._points_step = -1  # last step update_points ran for (the engine hook and training_step share it)
        # kept out of the module tree so the state dict keeps the official layout
        object.__setattr__(self, "loss_fn", PhotometricLoss(0.0))

    # ---------------------------------------------------------------- rendering
    def ray_features(self, rays_o: Tensor, rays_d: Tensor) -> tuple[Tensor, Tensor]:
        """Rays (R, 3) -> features (R, d_value), background weight (R, 1)."""
        c = self.cfg
        idx, _ = topk_points_per_ray(
            self.points.detach(),
            rays_o,
            rays_d,
            c.select_k,
            ray_chunk=c.ray_chunk,
            point_chunk=c.point_chunk,
            form=c.topk_form,
        )
        return self.proximity_attn(
            self.points[idx],
            self.pc_feats[idx],
            self.points_influ_scores[idx, 0],
            rays_o,
            rays_d,
            c.bkg_score,
        )

    def forward(self, rays_o: Tensor, rays_d: Tensor, tile: int | None = None) -> dict[str, Tensor]:
        """Rays (H, W, 3) -> rgb (H, W, 3) (unclamped), a_bkg (H, W, 1). Attention in ray tiles."""
        h, w, _ = rays_o.shape
        o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
        tile = tile or o.shape[0]
        parts = [self.ray_features(o[i : i + tile], d[i : i + tile]) for i in range(0, o.shape[0], tile)]
        feat = torch.cat([p[0] for p in parts]).view(h, w, -1)
        a_bkg = torch.cat([p[1] for p in parts]).view(h, w, 1)
        fg = self.renderer(feat.permute(2, 0, 1)[None])[0].permute(1, 2, 0)
        rgb = fg * (1 - a_bkg) + self.bkg_feats[0] * a_bkg
        return {"rgb": rgb, "a_bkg": a_bkg}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Resize the per-point Parameters to the checkpoint's point count first (it changes in training)."""
        m = state_dict["points"].shape[0] if "points" in state_dict else self.points.shape[0]
        if m != self.points.shape[0]:
            keep = torch.zeros(0, dtype=torch.long, device=self.points.device)
            rows = tuple(
                torch.zeros(m, *getattr(self, k).shape[1:], device=self.points.device)
                for k in ("points", "points_influ_scores", "pc_feats")
            )
            self._edit_points(keep_idx=keep, new_rows=rows)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict) -> dict[str, Tensor]:
        """batch: rays_o, rays_d, rgb (H, W, 3) patch and step (scalar) -> weighted loss terms."""
        self.update_points(int(batch["step"]))
        pred = self(batch["rays_o"], batch["rays_d"])["rgb"]
        return self.loss_fn.to(pred.device)(pred, batch["rgb"])

    def set_loss(self, loss_fn: PhotometricLoss) -> None:
        """Use MSE + LPIPS-VGG (not registered as a submodule: its weights are not scene state)."""
        object.__setattr__(self, "loss_fn", loss_fn)

    def prune_threshold(self, step: int) -> float:
        import bisect

        i = bisect.bisect_left(list(self.cfg.prune_steps), step)
        return self.cfg.prune_thresholds[min(i, len(self.cfg.prune_thresholds) - 1)]

    def before_step(self, step: int) -> bool:
        """common.engine hook, run outside the DDP forward: True when the per-point Parameters were
        replaced, so that the engine re-wraps DDP around the new ones."""
        return self.update_points(step)

    def update_points(self, step: int) -> bool:
        """Prune / add on the spec 2.8 schedule at the start of step `step` (once per step: the engine's
        before_step and training_step both call it); True when the per-point Parameters were replaced."""
        if step == self._points_step:
            return False
        self._points_step = step
        c = self.cfg
        changed = False
        if c.prune_every > 0 and c.prune_start <= step < c.prune_stop and step % c.prune_every == 0:
            changed |= self.prune(self.prune_threshold(step)) > 0
            self.pruned_once = True
        if (
            self.pruned_once
            and c.add_every > 0
            and c.add_start <= step < c.add_stop
            and step % c.add_every == 0
        ):
            changed |= self.add_points(c.add_num) > 0
        return changed

    @torch.no_grad()
    def prune(self, threshold: float) -> int:
        """Keep points with influence score > threshold (never fewer than select_k); returns #removed.

        Under torch.distributed the decision is rank 0's, broadcast to every rank (DDP-safe: replicas
        that drifted by rounding still edit the same rows)."""
        keep = self.points_influ_scores[:, 0] > threshold
        if int(keep.sum()) < self.cfg.select_k:
            keep = torch.zeros_like(keep)
            keep[self.points_influ_scores[:, 0].topk(self.cfg.select_k).indices] = True
        keep = broadcast_from_rank0(keep.to(torch.uint8)).bool()
        removed = int((~keep).sum())
        if removed:
            self._edit_points(keep_idx=keep.nonzero()[:, 0], new_rows=None)
        return removed

    @torch.no_grad()
    def add_points(self, n: int, seed: int | None = None) -> int:
        """'top-knn-std' + random convex combination of 3 neighbours; capped at max_num_pts."""
        c = self.cfg
        m = self.points.shape[0]
        if not c.compat_uncapped_add:
            n = min(n, c.max_num_pts - m)
        n = min(n, m)
        if n <= 0:
            return 0
        g = torch.Generator(device=self.points.device)
        g.manual_seed(int(torch.randint(2**31, (1,))) if seed is None else seed)
        p = self.points.detach()
        kk = min(c.add_knn + 1, m)
        nn_d, nn_i = [], []
        for i in range(0, m, 4096):
            d = torch.cdist(p[i : i + 4096], p)
            v, j = d.topk(kk, dim=1, largest=False)
            nn_d.append(v[:, 1:])
            nn_i.append(j[:, 1:])
        nn_d, nn_i = torch.cat(nn_d), torch.cat(nn_i)
        chosen = nn_d.std(dim=1).topk(n).indices
        nbrs = nn_i[chosen, : c.add_mix]  # the 3 nearest other points
        wts = torch.rand(n, nbrs.shape[1], generator=g, device=p.device)
        wts = wts / wts.sum(1, keepdim=True)
        mix = lambda t: (wts[..., None] * t[nbrs]).sum(1)  # noqa: E731
        new = (mix(p), mix(self.points_influ_scores.detach()), mix(self.pc_feats.detach()))
        new = tuple(broadcast_from_rank0(t) for t in new)  # rank 0's new points on every rank (DDP-safe)
        self._edit_points(keep_idx=None, new_rows=new)
        return n

    def _edit_points(self, keep_idx: Tensor | None, new_rows: tuple[Tensor, Tensor, Tensor] | None) -> None:
        """Replace the per-point Parameters (new objects: autograd caches leaf shapes) and apply the same
        edit to their Adam state, so moments of surviving points are kept (spec 9.1.14: state surgery)."""
        for i, name in enumerate(("points", "points_influ_scores", "pc_feats")):
            old = getattr(self, name)

            def edit(t: Tensor, fill: Tensor | None, keep: Tensor | None = keep_idx) -> Tensor:
                t = t[keep] if keep is not None else t
                return torch.cat([t, fill]) if fill is not None else t

            new = nn.Parameter(edit(old.detach(), new_rows[i] if new_rows is not None else None))
            setattr(self, name, new)
            if self.optimizer is None:
                continue
            for group in self.optimizer.param_groups:
                group["params"] = [new if q is old else q for q in group["params"]]
            state = self.optimizer.state.pop(old, None)
            if state is not None:
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        zeros = torch.zeros_like(new_rows[i]) if new_rows is not None else None
                        state[key] = edit(state[key], zeros)
                self.optimizer.state[new] = state


PARAM_GROUPS = ("points", "attn", "influ", "feats", "unet")


def param_groups(model: SceneModel, lrs: dict[str, float]) -> list[dict]:
    """One Adam group per spec 3.4 parameter group (background colour is not learnable)."""
    parts = {
        "points": [model.points],
        "attn": list(model.proximity_attn.parameters()),
        "influ": [model.points_influ_scores],
        "feats": [model.pc_feats],
        "unet": list(model.renderer.parameters()),
    }
    return [{"params": parts[k], "lr": lrs[k], "name": k} for k in PARAM_GROUPS]


def lr_lambda(schedule: str, warmup: int, total: int):
    """Linear warmup from 1e-16 then 'cosine' (to 0 at total) or 'cosine_half' (ends near 0.5)."""
    if schedule not in ("cosine", "cosine_half", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}")

    def f(step: int) -> float:
        if step < warmup:
            return 1e-16 + (1 - 1e-16) * step / warmup
        if schedule == "constant":
            return 1.0
        t_max = max(total - warmup, 1) * (2 if schedule == "cosine_half" else 1)
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup, t_max) / t_max))

    return f
