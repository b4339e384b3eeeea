"""Scene-level experiment: config schema; model, optimiser, schedules, data and the point
pruning/growth callback for common.engine; evaluation of a split through common.evaluation with the
spec 5.2 metrics (official-compat and standard); rebuilding a run from its checkpoint alone."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from common.callbacks import Callback
from common.config import ConfigError
from common.engine import TrainConfig
from smcl.scene.data import (
    SceneData,
    get_rays_papr,
    load_blender,
    load_colmap,
    load_llff,
    load_nerfstudio,
    load_nsvf,
)
from smcl.scene.losses import PhotometricLoss
from smcl.scene.models.point_gcl import PointGCL, PointGCLConfig, compat_last_chunk_tiled_features
from smcl.scene.models.scene_model import SceneModel, SceneModelConfig, init_points, lr_lambda, param_groups
from smcl.scene.points import read_points

log = logging.getLogger(__name__)

TASK = "smcl.scene"
SCENE_FORMATS = ("blender", "nsvf", "llff", "colmap", "nerfstudio")


@dataclass(frozen=True)
class SceneDataConfig:
    format: str = "blender"  # blender | nsvf | llff | colmap (sparse/0) | nerfstudio (transforms.json)
    root: str = ""
    factor: int = 1  # every format: the native size divided by factor (llff: images_<factor> if present)
    target_size: tuple[int, int] | None = None  # nsvf (W, H) before factor (official T&T: 2176x1280)
    image_dir: str | None = None  # llff: image folder (default images_<factor>, else images / factor)
    llff_hold: int = 8  # llff, colmap, nerfstudio: every llff_hold-th view is the test split
    patch: tuple[int, int] = (160, 160)
    train_split: str = "train"
    test_split: str = "test"
    eval_image: int = 0
    use_principal_point: bool = False  # official: image centre


@dataclass(frozen=True)
class PointsConfig:
    # prepared cloud (.npy/.pcd/.ply) in unscaled scene units (the loader's frame: prepare_points.py
    # --llff puts a COLMAP cloud into LLFF's); "scene": the capture's own cloud (colmap points3D,
    # nerfstudio ply_file_path), already in the cameras' frame
    path: str | None = None
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
    eval_lpips: tuple[str, ...] = ("alex", "vgg")  # LPIPS nets of the test report (standard + compat)
    # Optional no-reference check while training (scripts/train_smcl_scene.py wires NVS-SQA through
    # common.callbacks.NoReferenceQuality): every nvs_sqa_every steps a closed novel trajectory of
    # nvs_sqa_frames views through the test cameras is rendered at test resolution and scored. Off (0)
    # by default. Cost per event: nvs_sqa_frames full-view renders (800x800 lego: 640k rays each) plus
    # one NVS-SQA pass over the frames; views must be at least 69 px on each side.
    nvs_sqa_every: int = 0
    nvs_sqa_frames: int = 16


def load_scene(cfg: SceneDataConfig, split: str) -> SceneData:
    """Dispatch on the data format (explicit, no registry)."""
    if cfg.format == "blender":
        return load_blender(cfg.root, split, cfg.factor)
    if cfg.format == "nsvf":
        return load_nsvf(cfg.root, split, cfg.factor, tuple(cfg.target_size) if cfg.target_size else None)
    if cfg.format == "llff":
        return load_llff(cfg.root, split, cfg.factor, cfg.image_dir, cfg.llff_hold)
    if cfg.format == "colmap":
        return load_colmap(cfg.root, split, cfg.factor, cfg.image_dir, cfg.llff_hold)
    if cfg.format == "nerfstudio":
        return load_nerfstudio(cfg.root, split, cfg.factor, cfg.llff_hold)
    raise ConfigError(f"data.format must be one of {', '.join(SCENE_FORMATS)}, got {cfg.format!r}")


def view_rays(scene: SceneData, i: int, cfg: SceneDataConfig, coord_scale: float) -> tuple[Tensor, Tensor]:
    h, w = scene.hw
    pp = scene.principal[i] if cfg.use_principal_point else None
    return get_rays_papr(h, w, scene.focal[i], scene.c2w[i], coord_scale, pp)


class PatchSampler:
    """train_data(step): one view, one random patch, as the official loader (shuffling, batch 1): each
    view once per epoch, in a permutation that is a function of (seed, epoch) alone (resume is exact
    without sampler state); patch offsets from torch's global RNG (checkpointed by the engine) in
    [0, H - h), never reaching H - h (the official `randint(0, H - h)`)."""

    def __init__(self, scene: SceneData, cfg: SceneDataConfig, coord_scale: float, seed: int = 0) -> None:
        self.scene, self.cfg, self.scale, self.seed = scene, cfg, coord_scale, seed

    def view(self, step: int) -> int:
        """The view of `step`: position step % N of epoch step // N's permutation."""
        n = len(self.scene.names)
        epoch, k = divmod(step, n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return int(torch.randperm(n, generator=g)[k])

    def __call__(self, step: int) -> dict[str, Tensor]:
        h, w = self.scene.hw
        ph, pw = min(self.cfg.patch[0], h), min(self.cfg.patch[1], w)
        i = self.view(step)
        y = int(torch.randint(max(h - ph, 1), (1,)))  # the official crashes at h == H; 0 here
        x = int(torch.randint(max(w - pw, 1), (1,)))
        o, d = view_rays(self.scene, i, self.cfg, self.scale)
        sl = (slice(y, y + ph), slice(x, x + pw))
        return {"rays_o": o[sl], "rays_d": d[sl], "rgb": self.scene.images[i][sl], "step": torch.tensor(step)}


class SceneViews(Dataset):
    """Whole views of a split for common.evaluation: {"id": view name, "rays_o", "rays_d", "rgb" (H, W, 3)}."""

    def __init__(self, scene: SceneData, cfg: SceneDataConfig, coord_scale: float, views=None) -> None:
        self.scene, self.cfg, self.scale = scene, cfg, coord_scale
        self.views = list(range(len(scene.names))) if views is None else list(views)

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, j: int) -> dict:
        i = self.views[j]
        o, d = view_rays(self.scene, i, self.cfg, self.scale)
        return {"id": self.scene.names[i], "rays_o": o, "rays_d": d, "rgb": self.scene.images[i]}


def scene_cloud(cfg: ExperimentConfig, scene: SceneData | None) -> Tensor | None:
    """The initial cloud in unscaled scene units: the prepared file, or with points.path "scene" the
    capture's own cloud down-sampled to model.init_num (official uniform stride + random deletion)."""
    from smcl.scene.points import downsample_uniform_random

    if cfg.points.path != "scene":
        return torch.from_numpy(read_points(cfg.points.path)).float() if cfg.points.path else None
    if scene is None or scene.points is None:
        raise ConfigError(
            f"points.path 'scene' needs a capture with its own cloud (colmap, nerfstudio with ply_file_path); "
            f"{cfg.data.format} {cfg.data.root} has none"
        )
    pts = scene.points.double().numpy()
    n = min(cfg.model.init_num, len(pts))
    return torch.from_numpy(downsample_uniform_random(pts, n, cfg.train.seed)).float()


def check_init_outside_cameras(cfg: ExperimentConfig, scene: SceneData, pts: Tensor) -> None:
    """Warn when the initial points' box contains every camera (a cube around the origin of a
    forward-facing LLFF scene surrounds the cameras: most points start behind them)."""
    lo, hi = pts.min(0).values / cfg.model.coord_scale, pts.max(0).values / cfg.model.coord_scale
    centres = scene.c2w[:, :3, 3]
    if bool(((centres >= lo) & (centres <= hi)).all()):
        log.warning(
            "every camera of %s lies inside the initial points' box %s..%s: for a forward-facing capture "
            "use the capture's cloud (points.path) or move the cube in front of the cameras "
            "(model.init_center, e.g. conf/smcl/llff/fern.yaml)",
            cfg.data.root, [round(v, 3) for v in lo.tolist()], [round(v, 3) for v in hi.tolist()],
        )  # fmt: skip


def build_model(
    cfg: ExperimentConfig, state: dict[str, Tensor] | None = None, scene: SceneData | None = None
) -> SceneModel:
    """Points from the prepared cloud (or cube/sphere), features from the GCL encoder aligned with them.

    `state`: a trained model's state dict (a checkpoint's "model"): the model is built with its point
    count directly (no cloud, no GCL encoder read); load the state into it afterwards. `scene`: the
    training split (its own cloud for points.path "scene"; a camera check of the initial points)."""
    if state is not None:
        model = SceneModel(cfg.model, state["points"].detach().float(), state["pc_feats"].detach().float())
        model.render_tile = cfg.test_tile
        return model
    cloud = scene_cloud(cfg, scene)
    pts = init_points(cfg.model, cloud, seed=cfg.train.seed)
    if scene is not None:
        check_init_outside_cameras(cfg, scene, pts)
    feats = None
    if cfg.points.gcl_weights:
        from common.weights import load_weights
        from smcl.scene.models import WEIGHTS

        gcl = PointGCL(cfg.points.gcl)
        load_weights(gcl, WEIGHTS["smcl_point_gcl"]["official"], cfg.points.gcl_weights)
        if cfg.points.feature_mode == "aligned":
            feats = gcl.point_features(pts / cfg.model.coord_scale)
        elif cfg.points.feature_mode == "compat_last_chunk_tiled":  # official: the cloud file, any init
            src = cloud if cloud is not None else pts / cfg.model.coord_scale
            feats = compat_last_chunk_tiled_features(gcl, src, n_out=pts.shape[0])
        else:
            raise ValueError(
                f"points.feature_mode must be 'aligned' or 'compat_last_chunk_tiled', got {cfg.points.feature_mode!r}"
            )
    model = SceneModel(cfg.model, pts, feats)
    model.render_tile = cfg.test_tile
    return model


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
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambdas)


class PointScheduleCallback(Callback):
    """Point pruning and growth (spec 2.8) as an engine callback: before each step the model prunes /
    grows on its schedule and the trainer's optimizer follows (references and per-point Adam moments);
    the engine then re-wraps DDP. The schedule depends on the step only, so resuming needs no state."""

    def before_step(self, trainer, step: int) -> bool:
        model: SceneModel = trainer.model
        n = model.points.shape[0]
        changed = model.update_points(step, trainer.optimizer)
        if changed:
            log.info("step %d: %d -> %d points", step, n, model.points.shape[0])
        return changed

    def after_step(self, trainer, step: int, losses: dict[str, float]) -> None:
        """Point count and training PSNR (from the unweighted patch MSE) beside the engine's log rows."""
        every = trainer.cfg.log_every
        if every and (step % every == 0 or step == trainer.cfg.max_steps):
            psnr = -10.0 * math.log10(max(losses["mse"], 1e-12))
            trainer.log({"train/points": float(trainer.model.points.shape[0]), "train/psnr": psnr})


def scene_metrics(lpips: tuple[str, ...] = ()) -> dict:
    """The spec 5.2 metrics as common.metrics classes: PSNR (MSE floor 1e-12), SSIM Gaussian sigma 1.5
    (standard) and uniform 11x11 (official compat); per LPIPS net the standard ([0, 1] mapped to
    [-1, 1]) and the official-compat form ([0, 1] fed unscaled)."""
    from common.metrics import PSNR, SSIM

    out = {
        "psnr": PSNR(min_mse=1e-12),
        "ssim": SSIM(protocol="gaussian", win_size=11, sigma=1.5),
        "ssim_compat": SSIM(protocol="uniform", win_size=11),
    }
    if lpips:
        from common.metrics import LPIPS

        for net in lpips:
            out[f"lpips_{net}"] = LPIPS(net=net)
            out[f"lpips_{net}_compat"] = LPIPS(net=net, scale_inputs=False)
    return out


def build(cfg: ExperimentConfig, resume: str | Path | None = None) -> dict:
    """Keyword arguments for common.engine.Trainer (model, data, optimizer, schedules, the point
    callback and a periodic evaluator of the `eval_image` test view).

    `resume` (a checkpoint path or "auto", as given to the Trainer): the model is built with the
    checkpoint's point count, so that the optimizer built here holds the Parameters the Trainer loads
    the checkpoint into."""
    from common.checkpoint import load_checkpoint
    from common.evaluation import Evaluator
    from common.runs import resume_path

    train_scene = load_scene(cfg.data, cfg.data.train_split)
    test_scene = load_scene(cfg.data, cfg.data.test_split)
    path = resume_path(cfg.train.out_dir, resume, cfg.train.ckpt_name)
    model = build_model(
        cfg, state=load_checkpoint(path, mmap=True)["model"] if path else None, scene=train_scene
    )
    model.set_loss(PhotometricLoss(cfg.lpips_weight))
    opt, sched = build_optim(model, cfg)
    idx = min(cfg.data.eval_image, len(test_scene.names) - 1)
    return {
        "model": model,
        "train_data": PatchSampler(train_scene, cfg.data, cfg.model.coord_scale, cfg.train.seed),
        "optimizer": opt,
        "scheduler": sched,
        "callbacks": [PointScheduleCallback()],
        "evaluator": Evaluator(scene_metrics(), task=TASK, progress=False, settings="training view check"),
        "val_data": SceneViews(test_scene, cfg.data, cfg.model.coord_scale, [idx]),
    }


def train(
    cfg: ExperimentConfig,
    *,
    devices: str = "cpu",
    resume: str | Path | None = None,
    overwrite: bool = False,
    allow_config_change: bool = False,
    callbacks: tuple = (),
) -> SceneModel:
    """What scripts/train_smcl_scene.py runs: seed (and join the process group) before anything random
    is built, build, train through common.engine. Returns the trained model."""
    from common.engine import Trainer, prepare_run
    from common.io import check_outputs_outside_inputs

    inputs = [p for p in (cfg.data.root, cfg.points.path, cfg.points.gcl_weights) if p and p != "scene"]
    check_outputs_outside_inputs([cfg.train.out_dir], inputs)  # the run folder never inside the data
    opts = dict(resume=resume, overwrite=overwrite, allow_config_change=allow_config_change)
    prepare_run(cfg, devices, **opts)
    kw = build(cfg, resume=resume)
    kw["callbacks"] = [*kw["callbacks"], *callbacks]
    return Trainer(cfg.train, **kw, devices=devices, config=cfg, **opts).fit()


def from_checkpoint(
    path: str | Path, config_path: str | Path | None = None, overrides=()
) -> tuple[SceneModel, ExperimentConfig]:
    """Model and config from an engine checkpoint alone (its stored config; `config_path` / overrides
    are optional changes on top, logged). The model is built with the checkpoint's point count."""
    from common.checkpoint import CheckpointError, load_checkpoint, load_state_dict_strict
    from common.config import config_from_checkpoint

    cfg, _ = config_from_checkpoint(path, ExperimentConfig, config_path, overrides)
    state = load_checkpoint(path)
    if "model" not in state or "points" not in state["model"]:
        raise CheckpointError(f"checkpoint {path} holds no scene model state")
    model = build_model(cfg, state=state["model"])
    load_state_dict_strict(model, state["model"], source=str(path))
    return model.eval(), cfg


class _RenderAndSave(torch.nn.Module):
    """Evaluator wrapper: the scene model's validation_step, writing each render as <out_dir>/<id>.png."""

    def __init__(self, model: SceneModel, out_dir: Path) -> None:
        super().__init__()
        self.model, self.out_dir = model, out_dir

    def validation_step(self, batch: dict, metrics) -> list[dict]:
        from common.image_io import write_image
        from common.viz import to_uint8

        def save(name: str, pred: Tensor) -> None:
            write_image(self.out_dir / f"{name}.png", to_uint8(pred.float().cpu(), rounding="half_up"))

        return self.model.validation_step(batch, metrics, on_render=save)


def novel_trajectory(scene: SceneData, n: int = 60) -> Tensor:
    """A closed camera path through the split's cameras (slerp + linear translation), (n, 4, 4)."""
    from common.trajectories import interpolate

    return interpolate(scene.c2w, n, closed=True)


def trajectory_render_fn(cfg: ExperimentConfig, n: int):
    """`render_fn(model, step) -> (n, 3, H, W)` in [0, 1]: the novel trajectory of `novel_trajectory`
    through the test cameras at test resolution (for common.callbacks.NoReferenceQuality)."""
    from common.cameras import intrinsics_matrix
    from smcl.scene.render import render_trajectory

    scene = load_scene(cfg.data, cfg.data.test_split)
    h, w = scene.hw
    fx, fy = (float(v) for v in scene.focal[0])
    cx, cy = (float(v) for v in scene.principal[0]) if cfg.data.use_principal_point else (w / 2, h / 2)
    K, path = intrinsics_matrix(fx, fy, cx, cy), novel_trajectory(scene, n)

    def render(model: SceneModel, step: int) -> Tensor:
        frames = render_trajectory(model, path, h, w, K, tile=cfg.test_tile)
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0

    return render


def evaluate_split(
    model: SceneModel,
    cfg: ExperimentConfig,
    out_dir: Path,
    *,
    lpips: bool = True,
    report_path: Path | None = None,
    model_info: dict | None = None,
    no_reference=None,
    trajectory_frames: int = 60,
) -> dict:
    """Render the test split through common.evaluation: per-view PNGs, a fly-through GIF, and the
    tri-vision.eval/1 report (JSON + CSV of the per-view items) when `report_path` is given.

    `no_reference`: optional `frames (T, H, W, 3) uint8 -> float` no-reference score (e.g. NVS-SQA,
    higher is better) of the rendered test views in camera order ("<name>_test_views") and of a
    rendered novel trajectory through the test cameras ("<name>_trajectory"), added to the aggregate
    (`no_reference.name`, default "no_reference"). Returns the aggregate (mean over views)."""
    from common.distributed import barrier, get_rank
    from common.evaluation import Evaluator, write_report
    from common.image_io import read_image
    from common.viz import save_gif

    scene = load_scene(cfg.data, cfg.data.test_split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.render_tile = cfg.test_tile
    d = cfg.data
    settings = (
        f"split {d.test_split} of {d.format} {d.root} (factor {d.factor}), whole views clamped to [0, 1], "
        f"principal point {'from the cameras' if d.use_principal_point else 'image centre'}; "
        "ssim: Gaussian (standard), ssim_compat: uniform 11x11 (official); lpips_<net>: [0,1] mapped to "
        "[-1,1], lpips_<net>_compat: [0,1] fed unscaled (official)"
    )
    evaluator = Evaluator(scene_metrics(tuple(cfg.eval_lpips) if lpips else ()), task=TASK, settings=settings)
    views = SceneViews(scene, cfg.data, cfg.model.coord_scale)
    result = evaluator.run(_RenderAndSave(model, out_dir), views, model_info=model_info)
    aggregate = dict(result.aggregate)
    barrier()  # every rank's PNGs are written
    if get_rank() == 0:
        frames = np.stack([read_image(out_dir / f"{n}.png", dtype="uint8") for n in scene.names])
        save_gif(frames, out_dir / "flythrough.gif", fps=10)
        if no_reference is not None:
            name = getattr(no_reference, "name", "no_reference")
            aggregate[f"{name}_test_views"] = float(no_reference(frames))
            traj = trajectory_render_fn(cfg, trajectory_frames)(model, 0)
            traj = (traj.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
            save_gif(traj, out_dir / "trajectory.gif", fps=10)
            aggregate[f"{name}_trajectory"] = float(no_reference(traj))
        if report_path is not None:
            write_report(
                report_path,
                task=TASK,
                model=result.report["model"],
                settings=result.report["settings"],
                aggregate=aggregate,
                items=result.items,
                extra=result.extra or None,
            )
    return aggregate
