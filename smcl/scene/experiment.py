"""Scene-level experiment: config schema, building model/optimiser/schedules/data for common.engine,
rendering a split and computing the spec 5.2 metrics (official-compat and standard)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.engine import TrainConfig
from smcl.scene.data import SceneData, get_rays_papr, load_blender, load_llff, load_nsvf
from smcl.scene.losses import PhotometricLoss
from smcl.scene.models.point_gcl import PointGCL, PointGCLConfig, compat_last_chunk_tiled_features
from smcl.scene.models.scene_model import SceneModel, SceneModelConfig, init_points, lr_lambda, param_groups
from smcl.scene.points import read_points


@dataclass(frozen=True)
class SceneDataConfig:
    format: str = "blender"  # blender | nsvf | llff
    root: str = ""
    factor: int = 1  # blender/llff: integer down-scale; nsvf: target_size / factor (T&T: 2 -> 1088x640)
    target_size: tuple[int, int] = (2176, 1280)
    patch: tuple[int, int] = (160, 160)
    train_split: str = "train"
    test_split: str = "test"
    eval_image: int = 0
    use_principal_point: bool = False  # official: image centre


@dataclass(frozen=True)
class PointsConfig:
    path: str | None = None  # prepared cloud (.npy/.pcd/.ply), unscaled scene units
    gcl_weights: str | None = None  # PointGCL state dict; None -> zero features
    gcl: PointGCLConfig = field(default_factory=PointGCLConfig)
    # aligned: one feature per point, in point order (the paper's intent); compat_last_chunk_tiled: the
    # official initialisation (last file-order chunk's 20 node embeddings tiled over all points)
    feature_mode: str = "aligned"


@dataclass(frozen=True)
class GroupLRConfig:
    points: float = 2e-3
    attn: float = 3e-4
    influ: float = 1e-3
    feats: float = 1e-3
    unet: float = 1e-4
    warmup: int = 10000
    points_schedule: str = "cosine"
    schedule: str = "cosine_half"  # the other groups (Ignatius: cosine)


@dataclass(frozen=True)
class ExperimentConfig:
    data: SceneDataConfig = field(default_factory=SceneDataConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    model: SceneModelConfig = field(default_factory=SceneModelConfig)
    lr: GroupLRConfig = field(default_factory=GroupLRConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lpips_weight: float = 0.01
    test_tile: int = 10000  # rays per attention tile at test time (official 100 x 100)


def load_scene(cfg: SceneDataConfig, split: str) -> SceneData:
    """Dispatch on the data format (explicit, no registry)."""
    if cfg.format == "blender":
        return load_blender(cfg.root, split, cfg.factor)
    if cfg.format == "nsvf":
        return load_nsvf(cfg.root, split, cfg.factor, tuple(cfg.target_size))
    if cfg.format == "llff":
        return load_llff(cfg.root, split)
    raise ValueError(f"data.format must be blender | nsvf | llff, got {cfg.format!r}")


def view_rays(scene: SceneData, i: int, cfg: SceneDataConfig, coord_scale: float) -> tuple[Tensor, Tensor]:
    h, w = scene.hw
    pp = scene.principal[i] if cfg.use_principal_point else None
    return get_rays_papr(h, w, scene.focal[i], scene.c2w[i], coord_scale, pp)


class PatchSampler:
    """train_data(step): one random view, one random patch; randomness from torch's global RNG."""

    def __init__(self, scene: SceneData, cfg: SceneDataConfig, coord_scale: float) -> None:
        self.scene, self.cfg, self.scale = scene, cfg, coord_scale

    def __call__(self, step: int) -> dict[str, Tensor]:
        h, w = self.scene.hw
        ph, pw = min(self.cfg.patch[0], h), min(self.cfg.patch[1], w)
        i = int(torch.randint(len(self.scene.names), (1,)))
        y = int(torch.randint(h - ph + 1, (1,)))
        x = int(torch.randint(w - pw + 1, (1,)))
        o, d = view_rays(self.scene, i, self.cfg, self.scale)
        sl = (slice(y, y + ph), slice(x, x + pw))
        return {"rays_o": o[sl], "rays_d": d[sl], "rgb": self.scene.images[i][sl], "step": torch.tensor(step)}


def build_model(cfg: ExperimentConfig) -> SceneModel:
    """Points from the prepared cloud (or cube/sphere), features from the GCL encoder aligned with them."""
    cloud = torch.from_numpy(read_points(cfg.points.path)).float() if cfg.points.path else None
    pts = init_points(cfg.model, cloud, seed=cfg.train.seed)
    feats = None
    if cfg.points.gcl_weights:
        gcl = PointGCL(cfg.points.gcl)
        from common.checkpoint import load_checkpoint, load_state_dict_strict

        load_state_dict_strict(gcl, load_checkpoint(cfg.points.gcl_weights), source=cfg.points.gcl_weights)
        if cfg.points.feature_mode == "aligned":
            feats = gcl.point_features(pts / cfg.model.coord_scale)
        elif cfg.points.feature_mode == "compat_last_chunk_tiled":
            feats = compat_last_chunk_tiled_features(gcl, pts / cfg.model.coord_scale)
        else:
            raise ValueError(
                f"points.feature_mode must be 'aligned' or 'compat_last_chunk_tiled', got {cfg.points.feature_mode!r}"
            )
    return SceneModel(cfg.model, pts, feats)


def build_optim(model: SceneModel, cfg: ExperimentConfig):
    """One Adam group per parameter family and one LambdaLR schedule per group (spec 3.4)."""
    lr = cfg.lr
    groups = param_groups(
        model, {"points": lr.points, "attn": lr.attn, "influ": lr.influ, "feats": lr.feats, "unet": lr.unet}
    )
    opt = torch.optim.Adam(groups)
    total = cfg.train.max_steps
    lambdas = [
        lr_lambda(lr.points_schedule, 0, total)
        if g["name"] == "points"
        else lr_lambda(lr.schedule, lr.warmup, total)
        for g in groups
    ]
    model.optimizer = opt
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambdas)


@torch.no_grad()
def render_view(model: SceneModel, scene: SceneData, i: int, cfg: ExperimentConfig) -> Tensor:
    """(H, W, 3) in [0, 1] (clamped, as at test time)."""
    o, d = view_rays(scene, i, cfg.data, cfg.model.coord_scale)
    dev = model.points.device
    return model(o.to(dev), d.to(dev), tile=cfg.test_tile)["rgb"].clamp(0, 1).cpu()


def image_metrics(pred: Tensor, gt: Tensor, lpips_nets: dict | None = None) -> dict[str, float]:
    """PSNR; SSIM uniform 11x11 (compat) and Gaussian sigma 1.5 (standard); LPIPS compat/standard if given."""
    from skimage.metrics import structural_similarity

    p, g = pred.numpy().astype(np.float64), gt.numpy().astype(np.float64)
    out = {
        "psnr": float(-10 * np.log10(max(np.mean((p - g) ** 2), 1e-12))),
        "ssim_compat": float(structural_similarity(p, g, win_size=11, channel_axis=2, data_range=1.0)),
        "ssim": float(
            structural_similarity(
                p,
                g,
                channel_axis=2,
                data_range=1.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
        ),
    }
    for name, net in (lpips_nets or {}).items():
        a, b = pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None]
        out[f"lpips_{name}"] = float(net(a, b))
        out[f"lpips_{name}_compat"] = float(net((a + 1) / 2, (b + 1) / 2))  # official: [0,1] fed as [-1,1]
    return out


def make_lpips(names: tuple[str, ...] = ("alex", "vgg")) -> dict:
    from common.metrics.lpips import LPIPSMetric

    return {n: LPIPSMetric(net=n).eval() for n in names}


def build(cfg: ExperimentConfig, devices: str = "cpu") -> dict:
    """Keyword arguments for common.engine.Trainer."""
    train_scene = load_scene(cfg.data, cfg.data.train_split)
    test_scene = load_scene(cfg.data, cfg.data.test_split)
    model = build_model(cfg)
    model.set_loss(PhotometricLoss(cfg.lpips_weight))
    opt, sched = build_optim(model, cfg)
    idx = min(cfg.data.eval_image, len(test_scene.names) - 1)

    def evaluate(m: SceneModel, step: int) -> dict[str, float]:
        return {
            **image_metrics(render_view(m, test_scene, idx, cfg), test_scene.images[idx]),
            "num_points": float(m.points.shape[0]),
        }

    return {
        "model": model,
        "train_data": PatchSampler(train_scene, cfg.data, cfg.model.coord_scale),
        "optimizer": opt,
        "scheduler": sched,
        "evaluate": evaluate,
    }


def evaluate_split(
    model: SceneModel, cfg: ExperimentConfig, out_dir: Path, lpips: bool = True
) -> dict[str, float]:
    """Render the test split, write PNGs and a fly-through GIF, return mean metrics."""
    from PIL import Image

    scene = load_scene(cfg.data, cfg.data.test_split)
    nets = make_lpips() if lpips else None
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, frames = [], []
    for i, name in enumerate(scene.names):
        pred = render_view(model, scene, i, cfg)
        rows.append(image_metrics(pred, scene.images[i], nets))
        frame = (pred.numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(frame).save(out_dir / f"{name}.png")
        frames.append(Image.fromarray(frame))
    frames[0].save(out_dir / "flythrough.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def load_trained(cfg: ExperimentConfig, checkpoint: str | Path) -> SceneModel:
    """Model from an engine checkpoint (resized to its point count); a missing file is an error."""
    from common.checkpoint import load_checkpoint

    model = SceneModel(
        cfg.model, init_points(SceneModelConfig(init_type="cube", init_num=cfg.model.select_k))
    )
    state = load_checkpoint(checkpoint)
    model.load_state_dict(state["model"] if "model" in state else state)
    return model.eval()
