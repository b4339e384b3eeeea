"""Per-scene point renderer (spec smcl.md 2.6-2.8, 3.4): learnable points, influence scores, point
features, R-MSA proximity attention, SmallUNet, pruning and growth with in-place optimiser surgery."""

from __future__ import annotations

import dataclasses
import functools
import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal

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
    init_type: Literal["cloud", "cube", "sphere"] = "cloud"  # cloud: the prepared point file; cube: official
    init_num: int = 10000
    init_scale: float = 1.2  # cube half-size in unscaled scene units
    init_center: tuple[float, float, float] = (0.0, 0.0, 0.0)  # cube / sphere centre, unscaled units
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
    compat_uncapped_add: bool = False  # official: add add_num whenever below max_num_pts (may overshoot)
    # official: every prune step and every growth step rebuilds all Adam optimizers (moments and step
    # counts of every group restart); False keeps the moments of surviving points and the other groups
    compat_reset_optimizer: bool = False
    ray_chunk: int | None = None  # top-k distance tile; None: per device (CPU 256 x 8192, CUDA 2048 x 16384)
    point_chunk: int | None = None
    topk_form: str = "expanded"  # "direct": the official distance on every pair (same selection, slower)
    unet_width: int = 128


def init_points(cfg: SceneModelConfig, cloud: Tensor | None = None, seed: int = 0) -> Tensor:
    """Initial positions in the scaled scene. cube: floor(n^(1/3))^3 grid + random rest (9261 + 739)."""
    g = torch.Generator().manual_seed(seed)
    s = cfg.init_scale * cfg.coord_scale
    c = torch.tensor(cfg.init_center, dtype=torch.float32) * cfg.coord_scale
    if cfg.init_type == "cloud":
        if cloud is None or cloud.shape[0] < cfg.select_k:
            raise ValueError("init_type 'cloud' needs a point cloud with at least select_k points")
        return cloud.float() * cfg.coord_scale
    if cfg.init_type == "cube":
        n = int(math.floor(cfg.init_num ** (1 / 3) + 1e-9))
        lin = torch.linspace(-s, s, n)
        grid = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
        rest = (torch.rand(cfg.init_num - grid.shape[0], 3, generator=g) * 2 - 1) * s
        return torch.cat([grid, rest]) + c
    if cfg.init_type == "sphere":  # Fibonacci lattice
        i = torch.arange(cfg.init_num, dtype=torch.float64) + 0.5
        phi = torch.acos(1 - 2 * i / cfg.init_num)
        theta = math.pi * (1 + 5**0.5) * i
        return (
            torch.stack([phi.sin() * theta.cos(), phi.sin() * theta.sin(), phi.cos()], -1) * s
        ).float() + c
    raise ValueError(f"init_type must be cloud | cube | sphere, got {cfg.init_type!r}")


POINT_PARAMS = ("points", "points_influ_scores", "pc_feats")  # one row per point, edited together


class SceneModel(nn.Module):
    """State dict keys follow the official/PAPR layout (spec 7.4).

    The point count changes in training (pruning, growth): loading a state dict first resizes the
    per-point Parameters to the state dict's rows (a load_state_dict pre-hook), so a checkpoint taken at
    any step loads into a model built with any point count. Pruning and growth replace the per-point
    Parameters; `update_points(step, optimizer)` moves the optimizer's references and Adam moments of
    the surviving points (run by `smcl.scene.experiment.PointScheduleCallback` in training).

    AMP as the official trainer: common.engine leaves autocast to the model (`amp_scope`), which opens it
    around the attention and the UNet only (compositing and the loss in fp32), and an inf gradient skips
    only its own Adam group (`amp_skip`: the official runs one GradScaler step per optimizer).
    """

    amp_scope = "model"
    amp_skip = "group"
    amp_dtype: torch.dtype | None = None  # set by common.engine.Trainer

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
        self.register_load_state_dict_pre_hook(_resize_points_to_state_dict)
        self.render_tile = 10000  # rays per attention tile when rendering whole views (official 100 x 100)
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
        with self._amp():
            feat, a_bkg = self.proximity_attn(
                self.points[idx],
                self.pc_feats[idx],
                self.points_influ_scores[idx, 0],
                rays_o,
                rays_d,
                c.bkg_score,
            )
        return feat.float(), a_bkg.float()

    def _amp(self):
        """Autocast region of the official trainer (attention, UNet) when the Trainer runs fp16/bf16."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.points.device.type, dtype=self.amp_dtype)

    def forward(self, rays_o: Tensor, rays_d: Tensor, tile: int | None = None) -> dict[str, Tensor]:
        """Rays (H, W, 3) -> rgb (H, W, 3) (unclamped), a_bkg (H, W, 1). Attention in ray tiles."""
        h, w, _ = rays_o.shape
        o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
        tile = tile or o.shape[0]
        parts = [self.ray_features(o[i : i + tile], d[i : i + tile]) for i in range(0, o.shape[0], tile)]
        feat = torch.cat([p[0] for p in parts]).view(h, w, -1)
        a_bkg = torch.cat([p[1] for p in parts]).view(h, w, 1)
        with self._amp():
            fg = self.renderer(feat.permute(2, 0, 1)[None])[0].permute(1, 2, 0).float()
        rgb = fg * (1 - a_bkg) + self.bkg_feats[0] * a_bkg
        return {"rgb": rgb, "a_bkg": a_bkg}

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict) -> dict[str, Tensor]:
        """batch: rays_o, rays_d, rgb (H, W, 3) patch -> weighted loss terms."""
        pred = self(batch["rays_o"], batch["rays_d"])["rgb"]
        return self.loss_fn.to(pred.device)(pred, batch["rgb"])

    @torch.no_grad()
    def validation_step(self, batch: dict, metrics, on_render=None) -> list[dict]:
        """common.evaluation contract. batch: id (B,), rays_o, rays_d, rgb (B, H, W, 3) whole views.
        Renders each view (clamped to [0, 1]), updates every metric with (1, 3, H, W) pred/target and
        returns one row per view; `on_render(id, pred (H, W, 3))` receives each render (e.g. to save it)."""
        rows = []
        for i, name in enumerate(batch["id"]):
            pred = self(batch["rays_o"][i], batch["rays_d"][i], tile=self.render_tile)["rgb"].clamp(0, 1)
            p, g = pred.permute(2, 0, 1)[None].float(), batch["rgb"][i].permute(2, 0, 1)[None].float()
            rows.append({"id": name, **{k: float(m.update_items(p, g)[0]) for k, m in metrics.items()}})
            if on_render is not None:
                on_render(name, pred)
        return rows

    def set_loss(self, loss_fn: PhotometricLoss) -> None:
        """Use MSE + LPIPS-VGG (not registered as a submodule: its weights are not scene state)."""
        object.__setattr__(self, "loss_fn", loss_fn)

    def prune_threshold(self, step: int) -> float:
        import bisect

        i = bisect.bisect_left(list(self.cfg.prune_steps), step)
        return self.cfg.prune_thresholds[min(i, len(self.cfg.prune_thresholds) - 1)]

    def is_prune_step(self, step: int) -> bool:
        c = self.cfg
        return c.prune_every > 0 and c.prune_start <= step < c.prune_stop and step % c.prune_every == 0

    def pruned_before(self, step: int) -> bool:
        """True when a prune step of the schedule is <= `step` (growth starts only after the first
        prune, spec 2.8). A function of the step alone, so a resumed run needs no extra state."""
        c = self.cfg
        if c.prune_every <= 0:
            return False
        first = -(-c.prune_start // c.prune_every) * c.prune_every  # smallest multiple >= prune_start
        return first < c.prune_stop and first <= step

    def update_points(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Prune / add on the spec 2.8 schedule at the start of step `step` (0-based: steps done); True
        when the per-point Parameters were replaced. `optimizer`: its references and moments follow;
        with `compat_reset_optimizer` its whole state is cleared at every prune step and every growth
        that adds points (the official trainer rebuilds its optimizers then, even if nothing was pruned)."""
        c = self.cfg
        changed = event = False
        if self.is_prune_step(step):
            changed |= self.prune(self.prune_threshold(step), optimizer) > 0
            event = True
        if self.pruned_before(step) and c.add_every > 0 and c.add_start <= step < c.add_stop:
            if step % c.add_every == 0:
                added = self.add_points(c.add_num, optimizer=optimizer) > 0
                changed |= added
                event |= added
        if event and c.compat_reset_optimizer and optimizer is not None:
            optimizer.state.clear()  # fresh Adam: moments and step counts of every group restart
        return changed

    @torch.no_grad()
    def prune(self, threshold: float, optimizer: torch.optim.Optimizer | None = None) -> int:
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
            self._edit_points(keep.nonzero()[:, 0], None, optimizer)
        return removed

    @torch.no_grad()
    def add_points(
        self, n: int, seed: int | None = None, optimizer: torch.optim.Optimizer | None = None
    ) -> int:
        """'top-knn-std' + random convex combination of 3 neighbours; capped at max_num_pts. Sparsity is
        the std of the distances to the add_knn nearest points including the point itself (distance 0),
        as the official KD-tree query; the mixed neighbours are the add_mix nearest other points.

        The weights' generator is seeded from torch's global RNG (checkpointed by the engine) unless
        `seed` is given. New points get zero Adam moments."""
        c = self.cfg
        m = self.points.shape[0]
        if c.compat_uncapped_add:  # official: the cap only gates the growth, the full count is added
            n = n if c.max_num_pts > m else 0
        else:
            n = min(n, c.max_num_pts - m)
        n = min(n, m)
        if n <= 0:
            return 0
        g = torch.Generator(device=self.points.device)
        g.manual_seed(int(torch.randint(2**31, (1,))) if seed is None else seed)
        p = self.points.detach()
        nbrs = sparsest_points(p, n, c.add_knn, c.add_mix)[1]
        wts = torch.rand(n, nbrs.shape[1], generator=g, device=p.device)
        wts = wts / wts.sum(1, keepdim=True)
        new = {  # rank 0's new points on every rank (DDP-safe)
            name: broadcast_from_rank0((wts[..., None] * getattr(self, name).detach()[nbrs]).sum(1))
            for name in POINT_PARAMS
        }
        self._edit_points(None, new, optimizer)
        return n

    def _edit_points(
        self,
        keep_idx: Tensor | None,
        new_rows: dict[str, Tensor] | None,
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        """Replace the per-point Parameters by edited copies (rows `keep_idx` kept, `new_rows` appended;
        new objects, since autograd caches leaf shapes). With an optimizer its references move to the new
        Parameters and its per-point state tensors get the same edit: moments of surviving points are
        kept, appended rows start at zero (spec 9.1.14: state surgery, not a reset)."""
        from common.engine import swap_parameter

        def edit(t: Tensor, fill: Tensor | None) -> Tensor:
            t = t[keep_idx] if keep_idx is not None else t
            return torch.cat([t, fill]) if fill is not None else t

        for name in POINT_PARAMS:
            old = getattr(self, name)
            fill = new_rows[name] if new_rows is not None else None
            new = nn.Parameter(edit(old.detach(), fill))
            setattr(self, name, new)
            if optimizer is not None:
                zeros = torch.zeros_like(fill) if fill is not None else None
                swap_parameter(optimizer, old, new, lambda t, z=zeros: edit(t, z if z is None else z.to(t)))


def sparsest_points(p: Tensor, n: int, knn: int = 10, mix: int = 3) -> tuple[Tensor, Tensor]:
    """The official 'top-knn-std' choice: the n points whose distances to their `knn` nearest points
    (the point itself, at distance 0, included: the official KD-tree query) have the largest std, and
    for each the `mix` nearest other points. Returns (chosen (n,), neighbours (n, mix)), chosen in the
    official order (ascending std, as the tail of an argsort), which pairs them with the random weights."""
    m = p.shape[0]
    kk = min(max(knn, mix + 1), m)
    nn_d, nn_i = [], []
    for i in range(0, m, 4096):
        v, j = torch.cdist(p[i : i + 4096], p).topk(kk, dim=1, largest=False)
        nn_d.append(v[:, :knn])  # self (distance 0) first
        nn_i.append(j[:, 1 : mix + 1])
    chosen = torch.cat(nn_d).std(dim=1).topk(n).indices.flip(0)
    return chosen, torch.cat(nn_i)[chosen]


def _resize_points_to_state_dict(module: SceneModel, state_dict: dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: give the per-point Parameters the state dict's row count (values are
    then copied in by the load); other shape differences are left for the load to report."""
    for name in POINT_PARAMS:
        t = state_dict.get(prefix + name)
        own = getattr(module, name)
        if (
            torch.is_tensor(t)
            and t.ndim == own.ndim
            and t.shape[1:] == own.shape[1:]
            and t.shape != own.shape
        ):
            setattr(module, name, nn.Parameter(own.new_zeros(t.shape)))


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
    """LR factor per step (for LambdaLR): linear warmup from 1e-16, then 'cosine' (to 0 at total),
    'cosine_half' (ends near 0.5) or 'constant' -- common.schedules.lr_at with base 1."""
    from common.schedules import ScheduleConfig, lr_at

    cfg = ScheduleConfig(name=schedule, warmup_steps=warmup, warmup_ratio=1e-16)
    if schedule not in ("cosine", "cosine_half", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}")
    return functools.partial(lr_at, cfg, base=1.0, total=total)


# ---------------------------------------------------------------- official weights (spec 7.4)
def remap_official_model_pth(state: dict) -> dict[str, Tensor]:
    """Official `model.pth` = {"<step>": state_dict} (one entry) -> the state_dict. Key names are ours
    already (the module keeps the official/PAPR attribute names); no key is dropped."""
    from common.weights import WeightsError

    (key, value), *rest = state.items() if state else ((None, None),)
    if rest or not str(key).isdigit() or not isinstance(value, dict):
        raise WeightsError(
            f"an official model.pth holds one entry {{'<step>': state_dict}}, this file has keys "
            f"{list(state)[:5]} (a plain state_dict, model_<step>.pth, is the weights tag 'official_step')"
        )
    return dict(value)


def remap_official_model_step_pth(state: dict) -> dict[str, Tensor]:
    """Official `model_<step>.pth` = the plain state_dict: identical key names, none dropped."""
    return dict(state)


def remap_papr(state: dict) -> dict[str, Tensor]:
    """A PAPR state_dict: our keys, but no per-point features; PAPR's values have none, so an empty
    (M, 0) `pc_feats` is inserted (the model is built with d_feat = 0); nothing is dropped."""
    out = dict(state)
    if "pc_feats" not in out and "points" in out:
        out["pc_feats"] = out["points"].new_zeros(out["points"].shape[0], 0)
    return out


def build_rmsa_renderer(
    cfg: SceneModelConfig | None = None,
    *,
    points: Tensor | None = None,
    feats: Tensor | None = None,
    **overrides,
) -> SceneModel:
    """The per-scene R-MSA point renderer. `overrides` replace SceneModelConfig fields.

    `points` (M, 3) in the scaled scene (and `feats` (M, d_feat)); without them the points follow
    `init_type` cube / sphere, and "cloud" (which needs a prepared cloud) falls back to the official
    cube. Loading a state dict (e.g. `build_model("smcl_rmsa_renderer", weights="official",
    weights_path=...)`) resizes the per-point Parameters to the file's point count.
    """
    cfg = cfg or SceneModelConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    if points is None:
        init = cfg if cfg.init_type != "cloud" else dataclasses.replace(cfg, init_type="cube")
        points = init_points(init)
    return SceneModel(cfg, points, feats)
